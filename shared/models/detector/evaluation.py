"""Evaluating a detector package on labelled frames: COCO mAP (pycocotools), AP per defect
type, speed, and an HTML report of predictions against truth, worst images first."""

import base64
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from jinja2 import Environment, FileSystemLoader, select_autoescape
from tqdm import tqdm

from lineinspect.shared.datasets.manifest import ManifestRow
from lineinspect.shared.errors import DatasetError
from lineinspect.shared.images import read_image
from lineinspect.shared.models.detector.inference import Detector
from lineinspect.shared.models.detector.metrics import Box, coco_metrics, image_errors

THUMBNAIL_SIDE = 256
TRUTH_COLOUR = (0, 200, 0)
PREDICTION_COLOUR = (0, 0, 255)


@dataclass(frozen=True)
class DetectionResult:
    row: ManifestRow
    truth: list[Box]
    predicted: list[Box]  # every box down to the config's score threshold, best first
    errors: dict[str, int]  # found / missed / false at the deployed confidence


def truth_boxes(row: ManifestRow) -> list[Box]:
    return [Box(b.x1, b.y1, b.x2, b.y2, b.defect_type) for b in row.boxes]


def evaluate_detector(
    detector: Detector, rows: Sequence[ManifestRow], progress: bool = True
) -> tuple[dict[str, object], list[DetectionResult]]:
    """mAP@0.5 and @0.5:0.95 over the rows (COCO definitions), AP per defect type, the box
    counts at the deployed confidence, and inference speed (frames already decoded)."""
    unknown = sorted({b.defect_type for r in rows for b in r.boxes} - set(detector.class_names))
    if unknown:
        raise DatasetError(
            f"the split has boxes of defect types this package was not trained on: {', '.join(unknown)} "
            f"(it knows {', '.join(detector.class_names)}); train on data with these types or leave them out"
        )
    results: list[DetectionResult] = []
    seconds = 0.0
    for start in tqdm(range(0, len(rows), detector.batch_size), desc="evaluating", unit="batch", disable=not progress, leave=False):
        batch = rows[start : start + detector.batch_size]
        images = [read_image(row.path) for row in batch]
        began = time.perf_counter()
        predictions = detector.predict(images, all_boxes=True)
        seconds += time.perf_counter() - began
        for row, predicted in zip(batch, predictions):
            truth = truth_boxes(row)
            results.append(DetectionResult(row, truth, predicted, image_errors(truth, predicted, detector.confidence)))
    figures = coco_metrics([r.truth for r in results], [r.predicted for r in results], detector.class_names)
    totals = Counter()
    for result in results:
        totals.update(result.errors)
    return {
        **figures,
        "images_per_second": len(results) / seconds if seconds > 0 else None,
        "n_images": len(results),
        "n_truth_boxes": sum(len(r.truth) for r in results),
        "at_confidence": {"confidence": detector.confidence, "found": totals["found"], "missed": totals["missed"],
                          "false": totals["false"]},
        "model_version": detector.version,
        "input_size": detector.config.input_size,
    }, results


def _draw(result: DetectionResult, confidence: float) -> str:
    picture = read_image(result.row.path)
    width = max(1, picture.shape[1] // 200)
    for box, colour, label in [(b, TRUTH_COLOUR, b.defect_type) for b in result.truth] + [
        (b, PREDICTION_COLOUR, f"{b.defect_type} {b.score:.2f}") for b in result.predicted if (b.score or 0.0) >= confidence
    ]:
        top_left, bottom_right = (int(box.x1), int(box.y1)), (int(np.ceil(box.x2)) - 1, int(np.ceil(box.y2)) - 1)
        cv2.rectangle(picture, top_left, bottom_right, colour, width)
        cv2.putText(picture, label, (top_left[0] + 2, max(top_left[1] + 10, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.3, colour, 1, cv2.LINE_AA)
    scale = THUMBNAIL_SIDE / max(picture.shape[:2])
    picture = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    ok, encoded = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def render_detector_report(figures: dict[str, object], results: list[DetectionResult], out_path: str | Path, title: str) -> Path:
    """Figures, AP per defect type, then every image with truth and prediction boxes: most
    missed plus false boxes first."""
    environment = Environment(loader=FileSystemLoader(Path(__file__).parent), autoescape=select_autoescape(["j2"]))
    confidence = figures["at_confidence"]["confidence"]
    ordered = sorted(results, key=lambda r: (-(r.errors["missed"] + r.errors["false"]), -r.errors["missed"], r.row.path))
    cards = [
        {"name": Path(r.row.path).name, "path": r.row.path, **r.errors, "image": _draw(r, confidence),
         "types": ", ".join(sorted({b.defect_type for b in r.truth})) or "no labelled defect"}
        for r in ordered
    ]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(environment.get_template("report.html.j2").render(title=title, figures=figures, cards=cards), encoding="utf-8")
    return out_path
