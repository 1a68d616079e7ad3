"""The HTML report of `evaluate anomaly --html`: the figures, then every evaluated image with
its heatmap, predicted boxes (red) and labelled defect outline (green), sortable by score and
by error so the misses and false alarms come first."""

import base64
from pathlib import Path

import cv2
import numpy as np
from jinja2 import Environment, FileSystemLoader, select_autoescape

from lineinspect.shared.images import read_image
from lineinspect.shared.models.anomaly.evaluation import EvaluatedImage, Evaluation

THUMBNAIL_SIDE = 256
HEATMAP_TOP = 2.0  # normalised score shown as the hottest colour (the threshold sits mid-scale)
ERROR_ORDER = {"fn": 0, "fp": 1, "tp": 2, "tn": 3}


def overlay(image: np.ndarray, evaluated: EvaluatedImage) -> np.ndarray:
    """Image blended with its heatmap, predicted boxes and the labelled defect outline."""
    heat = np.clip(evaluated.prediction.heatmap / HEATMAP_TOP * 255.0, 0, 255).astype(np.uint8)
    coloured = cv2.applyColorMap(heat, cv2.COLORMAP_JET)
    picture = cv2.addWeighted(image, 0.6, coloured, 0.4, 0)
    if evaluated.truth_mask is not None:
        contours, _ = cv2.findContours(evaluated.truth_mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(picture, contours, -1, (0, 255, 0), max(1, image.shape[1] // 200))
    for region in evaluated.prediction.regions:
        cv2.rectangle(picture, (region.x1, region.y1), (region.x2 - 1, region.y2 - 1), (0, 0, 255), max(1, image.shape[1] // 150))
    scale = THUMBNAIL_SIDE / max(picture.shape[:2])
    if scale < 1:
        picture = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return picture


def _data_uri(picture: np.ndarray) -> str:
    ok, encoded = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError("could not encode a report thumbnail")
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def _fmt(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def render_report(evaluation: Evaluation, out_path: str | Path, title: str) -> Path:
    environment = Environment(
        loader=FileSystemLoader(Path(__file__).parent), autoescape=select_autoescape(["j2"])
    )
    template = environment.get_template("report.html.j2")
    figures = evaluation.figures
    summary = {k: _fmt(v) for k, v in figures.items() if not isinstance(v, dict)}
    cards = []
    for evaluated in evaluation.images:
        prediction = evaluated.prediction
        cards.append(
            {
                "name": Path(evaluated.row.path).name,
                "path": evaluated.row.path,
                "label": evaluated.row.label,
                "defect_type": evaluated.row.defect_type or "",
                "outcome": evaluated.outcome,
                "error_rank": ERROR_ORDER[evaluated.outcome],
                "score": prediction.normalised_score,
                "regions": [
                    f"{r.defect_type} {r.score:.2f} ({r.x1},{r.y1})-({r.x2},{r.y2}) {r.area_px}px" for r in prediction.regions[:5]
                ],
                "more_regions": max(0, len(prediction.regions) - 5),
                "image": _data_uri(overlay(read_image(evaluated.row.path), evaluated)),
            }
        )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(
        template.render(title=title, summary=summary, per_type=figures.get("per_defect_type", {}), cards=cards),
        encoding="utf-8",
    )
    return out_path
