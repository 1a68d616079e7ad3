"""Evaluating an anomaly model on a labelled split: the figures of `evaluate anomaly --json`
and one record per image for the HTML report."""

import time
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from tqdm import tqdm

from lineinspect.shared.datasets.manifest import ManifestRow
from lineinspect.shared.images import read_mask
from lineinspect.shared.models.anomaly.inference import AnomalyModel, AnomalyPrediction
from lineinspect.shared.models.anomaly.metrics import PixelAuroc, ScoredImage, image_figures, per_defect_type
from lineinspect.shared.models.anomaly.training import load_row

# Pixel AUROC is computed on maps no larger than this on their long side (nearest-neighbour
# for the truth), as MVTec-style evaluations do: big frames would otherwise need gigabytes.
PIXEL_EVAL_MAX_SIDE = 512


@dataclass(frozen=True)
class EvaluatedImage:
    row: ManifestRow
    prediction: AnomalyPrediction
    truth_mask: np.ndarray | None  # the defect mask, when labelled

    @property
    def is_anomaly(self) -> bool:
        return self.row.label == "anomaly"

    @property
    def outcome(self) -> str:
        """tp, tn, fp or fn."""
        predicted = self.prediction.is_anomalous
        return ("t" if predicted == self.is_anomaly else "f") + ("p" if predicted else "n")


@dataclass(frozen=True)
class Evaluation:
    figures: dict[str, object]
    images: list[EvaluatedImage]
    scored: list[ScoredImage]


def _pixel_scale(height: int, width: int) -> tuple[int, int]:
    scale = min(1.0, PIXEL_EVAL_MAX_SIDE / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def evaluate_anomaly(
    model: AnomalyModel,
    rows: Sequence[ManifestRow],
    *,
    progress: bool = True,
    keep_images: bool = True,
) -> Evaluation:
    """Score every labelled row (normal or anomaly); `images_per_second` counts model time
    (prediction, heatmap and regions), not image decoding."""
    labelled = [row for row in rows if row.label in ("normal", "anomaly")]
    scored: list[ScoredImage] = []
    kept: list[EvaluatedImage] = []
    pixel = PixelAuroc()
    any_defect_mask = any(row.defect_mask for row in labelled if row.label == "anomaly")
    model_seconds = 0.0
    batch_size = model.config.batch_size
    for start in tqdm(range(0, len(labelled), batch_size), desc="evaluating", unit="batch", disable=not progress, leave=False):
        batch_rows = labelled[start : start + batch_size]
        loaded = [load_row(row) for row in batch_rows]
        began = time.perf_counter()
        predictions = model.predict([image for image, _ in loaded], [mask for _, mask in loaded])
        model_seconds += time.perf_counter() - began
        for row, (image, _), prediction in zip(batch_rows, loaded, predictions):
            truth = read_mask(row.defect_mask) if row.defect_mask else None
            if any_defect_mask and (truth is not None or row.label == "normal"):
                h, w = _pixel_scale(*image.shape[:2])
                small_truth = np.zeros((h, w), bool) if truth is None else cv2.resize(
                    truth.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
                pixel.add(cv2.resize(prediction.heatmap, (w, h), interpolation=cv2.INTER_AREA), small_truth)
            strongest = prediction.regions[0].defect_type if prediction.regions else None
            scored.append(ScoredImage(row.path, row.label == "anomaly", row.defect_type, prediction.score,
                                      prediction.is_anomalous, strongest))
            if keep_images:
                kept.append(EvaluatedImage(row, prediction, truth))
    figures = image_figures(scored, model.threshold) if scored else {"n_images": 0}
    figures["pixel_auroc"] = pixel.value()
    figures["per_defect_type"] = per_defect_type(scored)
    figures["images_per_second"] = len(scored) / model_seconds if model_seconds > 0 else None
    figures["model_version"] = model.version
    return Evaluation(figures, kept, scored)
