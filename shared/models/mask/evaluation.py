"""Evaluating a mask finder on labelled frames of one or more manifests: IoU per image type
(so a new model is judged on every older image type before it ships), speed, and an HTML
report that shows the worst masks first."""

import base64
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from jinja2 import Environment, FileSystemLoader, select_autoescape
from tqdm import tqdm

from lineinspect.shared.datasets.manifest import ManifestRow
from lineinspect.shared.images import read_image, read_mask
from lineinspect.shared.models.mask.inference import MaskFinder, WholeFrame

THUMBNAIL_SIDE = 256


@dataclass(frozen=True)
class MaskResult:
    row: ManifestRow
    iou: float
    confidence: float
    mask: np.ndarray | None = None  # the predicted mask, kept for the report


def iou_table(per_type: dict[str, list[float]]) -> dict[str, dict[str, float | int]]:
    """{image type: {iou_mean, iou_min, n}}, sorted by image type."""
    return {
        name: {"iou_mean": float(np.mean(v)), "iou_min": float(np.min(v)), "n": len(v)} for name, v in sorted(per_type.items())
    }


def mask_iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    union = int((predicted | truth).sum())
    return 1.0 if union == 0 else int((predicted & truth).sum()) / union


def evaluate_masks(
    finder: MaskFinder | WholeFrame, rows: Sequence[ManifestRow], progress: bool = True, keep_masks: bool = False
) -> tuple[dict[str, object], list[MaskResult]]:
    """IoU of the finder's mask against each row's product mask; rows without one are skipped.
    `keep_masks` keeps each predicted mask for the HTML report."""
    rows = [row for row in rows if row.product_mask]
    results: list[MaskResult] = []
    seconds = 0.0
    batch_size = getattr(finder, "batch_size", 16)
    for start in tqdm(range(0, len(rows), batch_size), desc="evaluating", unit="batch", disable=not progress, leave=False):
        batch = rows[start : start + batch_size]
        images = [read_image(row.path) for row in batch]
        began = time.perf_counter()
        predictions = finder.predict(images)
        seconds += time.perf_counter() - began
        for row, prediction in zip(batch, predictions):
            iou = mask_iou(prediction.mask, read_mask(row.product_mask))
            results.append(MaskResult(row, iou, prediction.confidence, prediction.mask if keep_masks else None))
    per_type: dict[str, list[float]] = defaultdict(list)
    for result in results:
        per_type[result.row.image_type].append(result.iou)
    figures: dict[str, object] = {
        "iou_mean": float(np.mean([r.iou for r in results])) if results else None,
        "per_image_type": iou_table(per_type),
        "n_images": len(results),
        "images_per_second": len(results) / seconds if seconds > 0 else None,
        "model_version": finder.version,
    }
    return figures, results


def _thumbnail(result: MaskResult, finder: MaskFinder | WholeFrame) -> str:
    image = read_image(result.row.path)
    predicted = result.mask if result.mask is not None else finder.predict([image])[0].mask
    truth = read_mask(result.row.product_mask)
    picture = image.copy()
    width = max(1, image.shape[1] // 150)
    for mask, colour in ((truth, (0, 255, 0)), (predicted, (0, 0, 255))):
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(picture, contours, -1, colour, width)
    scale = THUMBNAIL_SIDE / max(picture.shape[:2])
    if scale < 1:
        picture = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def render_mask_report(
    figures: dict[str, object], results: list[MaskResult], finder: MaskFinder | WholeFrame, out_path: str | Path, title: str
) -> Path:
    environment = Environment(loader=FileSystemLoader(Path(__file__).parent), autoescape=select_autoescape(["j2"]))
    cards = [
        {"name": Path(r.row.path).name, "path": r.row.path, "image_type": r.row.image_type, "iou": r.iou,
         "confidence": r.confidence, "image": _thumbnail(r, finder)}
        for r in sorted(results, key=lambda r: r.iou)
    ]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(
        environment.get_template("report.html.j2").render(title=title, figures=figures, cards=cards), encoding="utf-8"
    )
    return out_path
