"""Detection accuracy by the COCO definitions, computed by pycocotools (the COCO reference
implementation): mAP@0.5, mAP@0.5:0.95 (mean over IoU 0.50, 0.55, ..., 0.95, 101-point
interpolated precision, up to 100 boxes per image) and the same per class."""

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from lineinspect.shared.models.detector.boxes import box_iou


@dataclass(frozen=True)
class Box:
    """A box on one image: truth (score None) or a prediction."""

    x1: float
    y1: float
    x2: float
    y2: float
    defect_type: str
    score: float | None = None


def coco_metrics(truths: Sequence[Sequence[Box]], predictions: Sequence[Sequence[Box]], class_names: Sequence[str]) -> dict:
    """`map50`, `map50_95` and `ap_per_class` ({class: {"ap50", "ap50_95", "truths"}}) of
    per-image predictions against per-image truths (same order). A class without truth
    boxes has AP None and does not count in the means, as in COCO."""
    if len(truths) != len(predictions):
        raise ValueError(f"{len(truths)} images of truth but {len(predictions)} of predictions")
    categories = {name: index + 1 for index, name in enumerate(class_names)}
    images, annotations, results = [], [], []
    for image_id, (truth, predicted) in enumerate(zip(truths, predictions), start=1):
        images.append({"id": image_id})
        for box in truth:
            if box.defect_type not in categories:
                raise ValueError(f"truth box of type {box.defect_type!r}, which the model does not know ({', '.join(class_names)})")
            width, height = box.x2 - box.x1, box.y2 - box.y1
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": categories[box.defect_type],
                "bbox": [box.x1, box.y1, width, height], "area": width * height, "iscrowd": 0,
            })
        for box in predicted:
            results.append({
                "image_id": image_id, "category_id": categories[box.defect_type],
                "bbox": [box.x1, box.y1, box.x2 - box.x1, box.y2 - box.y1], "score": float(box.score or 0.0),
            })
    truth_counts = {name: sum(a["category_id"] == categories[name] for a in annotations) for name in class_names}
    empty = {"map50": 0.0, "map50_95": 0.0,
             "ap_per_class": {n: {"ap50": 0.0 if truth_counts[n] else None, "ap50_95": 0.0 if truth_counts[n] else None,
                                  "truths": truth_counts[n]} for n in class_names}}
    if not annotations or not results:
        return empty
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        ground = COCO()
        ground.dataset = {"images": images, "annotations": annotations,
                          "categories": [{"id": i, "name": n} for n, i in categories.items()]}
        ground.createIndex()
        detected = ground.loadRes(results)
        evaluation = COCOeval(ground, detected, iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    # precision: [IoU thresholds, recall points, classes, area ranges (0 = all), max dets (-1 = 100)]
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    per_class = {}
    for name, category in categories.items():
        k = evaluation.params.catIds.index(category)
        every_iou, at_50 = precision[:, :, k], precision[0, :, k]
        per_class[name] = {
            "ap50": float(at_50[at_50 > -1].mean()) if (at_50 > -1).any() else None,
            "ap50_95": float(every_iou[every_iou > -1].mean()) if (every_iou > -1).any() else None,
            "truths": truth_counts[name],
        }
    return {
        "map50": float(max(evaluation.stats[1], 0.0)),
        "map50_95": float(max(evaluation.stats[0], 0.0)),
        "ap_per_class": per_class,
    }


def image_errors(truth: Sequence[Box], predicted: Sequence[Box], confidence: float, iou: float = 0.5) -> dict:
    """What an engineer sees on one image at the deployed confidence: truth boxes found (same
    type, IoU >= `iou`, each prediction used once), missed, and false boxes."""
    shown = sorted((p for p in predicted if (p.score or 0.0) >= confidence), key=lambda p: -(p.score or 0.0))
    used = np.zeros(len(shown), bool)
    found = 0
    overlaps = box_iou([[t.x1, t.y1, t.x2, t.y2] for t in truth], [[p.x1, p.y1, p.x2, p.y2] for p in shown])
    for t_index, box in enumerate(truth):
        for p_index, candidate in enumerate(shown):
            if not used[p_index] and candidate.defect_type == box.defect_type and overlaps[t_index, p_index] >= iou:
                used[p_index] = True
                found += 1
                break
    return {"found": found, "missed": len(truth) - found, "false": int((~used).sum())}
