"""A detector's boxes as the anomaly stage's result: regions with defect type and confidence,
kept only where they lie on the product; for an image type decided by the detector alone,
also the score (its best box's confidence), threshold (its deployed confidence) and a heatmap
painted from the boxes."""

from collections.abc import Sequence

import numpy as np

from lineinspect.schemas import AnomalyResult, Region
from lineinspect.services.anomaly.heatmap import HEATMAP_SCALE, heatmap_png
from lineinspect.shared.models.detector.inference import Detector
from lineinspect.shared.models.detector.metrics import Box

# A box counts when at least this share of it lies on the product mask: clutter beside the
# product cannot raise a defect, a scratch running over the product's edge still does.
MIN_SHARE_ON_PRODUCT = 0.25


def on_product(boxes: Sequence[Box], mask: np.ndarray | None, height: int, width: int) -> list[tuple[Box, int, int, int, int]]:
    """Boxes with integer pixel bounds inside the frame (x2, y2 exclusive) that lie on the product."""
    kept = []
    for box in boxes:
        x1, y1 = max(0, int(np.floor(box.x1))), max(0, int(np.floor(box.y1)))
        x2, y2 = min(width, int(np.ceil(box.x2))), min(height, int(np.ceil(box.y2)))
        if x2 <= x1 or y2 <= y1:
            continue
        if mask is not None and mask[y1:y2, x1:x2].mean() < MIN_SHARE_ON_PRODUCT:
            continue
        kept.append((box, x1, y1, x2, y2))
    return kept


def detector_regions(boxes: Sequence[Box], detector: Detector, mask: np.ndarray | None, image_shape: tuple[int, ...]) -> list[Region]:
    """Regions of the boxes at or above the detector's deployed confidence, best first."""
    return _regions(on_product(boxes, mask, *image_shape[:2]), detector.confidence)


def _regions(kept: list[tuple[Box, int, int, int, int]], confidence: float) -> list[Region]:
    return [
        Region(x1=x1, y1=y1, x2=x2, y2=y2, score=float(box.score or 0.0), area_px=(x2 - x1) * (y2 - y1),
               defect_type=box.defect_type, type_confidence=float(box.score or 0.0))
        for box, x1, y1, x2, y2 in kept
        if (box.score or 0.0) >= confidence
    ]


def detector_only_result(
    boxes: Sequence[Box], detector: Detector, mask: np.ndarray | None, image_shape: tuple[int, ...], latency_ms: float
) -> AnomalyResult:
    """The anomaly result of an image type served by a detector alone: anomalous when a box on
    the product reaches the deployed confidence. The score is the best box's confidence even
    below it, so a near miss falls in the verdict's review band."""
    height, width = image_shape[:2]
    candidates = on_product(boxes, mask, height, width)
    score = max((float(box.score or 0.0) for box, *_ in candidates), default=0.0)
    threshold = detector.confidence
    heatmap = np.zeros((height, width), np.float32)
    for box, x1, y1, x2, y2 in candidates:
        heatmap[y1:y2, x1:x2] = np.maximum(heatmap[y1:y2, x1:x2], float(box.score or 0.0) / threshold)
    if mask is not None:
        heatmap[~mask] = 0.0
    return AnomalyResult(
        score=score,
        threshold=threshold,
        normalised_score=score / threshold,
        decision="anomalous" if score >= threshold else "normal",
        heatmap=heatmap_png(heatmap),
        heatmap_scale=HEATMAP_SCALE,
        regions=_regions(candidates, threshold),
        model_version=detector.version,
        detector_version=detector.version,
        latency_ms=latency_ms,
    )
