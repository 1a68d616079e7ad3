"""What labels say about the line: one outcome per labelled frame (the line's verdict against
the truth, and the IoU of the line's product mask against the labelled one), and the
per-image-type tables over time windows built from them.

Decision accuracy counts decided frames only: a 'review' verdict hands the frame to a
person, so it is neither right nor wrong (it is counted as `reviewed`). A false pass is a
defective part the line passed (the costly error); a false fail is a good part it failed.
"""

import time
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from lineinspect.shared.errors import LineinspectError
from lineinspect.shared.images import decode_mask
from lineinspect.shared.logs import get_logger

if TYPE_CHECKING:
    from lineinspect.shared.monitor.store import MonitorStore

Bucket = Literal["minute", "hour", "day"]
BUCKET_FORMATS = {"minute": "%Y-%m-%dT%H:%MZ", "hour": "%Y-%m-%dT%H:00Z", "day": "%Y-%m-%d"}


def bucket_for_span(seconds: float) -> Bucket:
    """A window that gives a readable timeline: minutes for a run of under two hours, hours
    up to four days, then days."""
    return "minute" if seconds < 2 * 3600 else "hour" if seconds < 4 * 86400 else "day"


def mask_iou(line_mask_png: bytes, true_mask_png: bytes) -> float:
    line_mask = decode_mask(line_mask_png, "the line's product mask")
    true_mask = decode_mask(true_mask_png, "the label's product mask")
    if line_mask.shape != true_mask.shape:
        raise LineinspectError(
            f"the label's product mask is {true_mask.shape[1]}x{true_mask.shape[0]} but the frame is "
            f"{line_mask.shape[1]}x{line_mask.shape[0]}; draw the mask at the frame's resolution"
        )
    union = np.logical_or(line_mask, true_mask).sum()
    return 1.0 if union == 0 else float(np.logical_and(line_mask, true_mask).sum() / union)


def outcome_of(row: dict[str, Any]) -> dict[str, Any]:
    """`row`: a frame joined to its label (`MonitorStore.frame_for_label`)."""
    verdict, truth = row["decision"], row["truth"]
    iou = None
    if row["product_mask"] is not None and row["true_mask"] is not None:
        try:
            iou = mask_iou(row["product_mask"], row["true_mask"])
        except LineinspectError as exc:
            # A label whose mask cannot be compared still says whether the verdict was right;
            # the frame's telemetry must not be refused for it.
            get_logger("lineinspect.monitor.accuracy").warning(
                "label mask not compared", frame_id=row["frame_id"], error=str(exc)
            )
    return {
        "frame_id": row["frame_id"], "image_type": row["image_type"], "captured_at": row["captured_at"],
        "anomaly_version": row["anomaly_version"], "mask_version": row["mask_version"],
        "verdict": verdict, "truth": truth,
        "correct": None if verdict == "review" else int(verdict == truth),
        "false_pass": int(verdict == "pass" and truth == "fail"),
        "false_fail": int(verdict == "fail" and truth == "pass"),
        "iou": iou,
    }


def summarise(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    """Figures of a set of outcomes."""
    decided = [o for o in outcomes if o["correct"] is not None]
    ious = [o["iou"] for o in outcomes if o["iou"] is not None]
    return {
        "labelled": len(outcomes),
        "decided": len(decided),
        "reviewed": len(outcomes) - len(decided),
        "accuracy": round(sum(o["correct"] for o in decided) / len(decided), 4) if decided else None,
        "false_pass": sum(o["false_pass"] for o in outcomes),
        "false_fail": sum(o["false_fail"] for o in outcomes),
        "mask_iou": round(float(np.mean(ious)), 4) if ious else None,
        "iou_n": len(ious),
    }


def accuracy_table(
    store: "MonitorStore", bucket: Bucket = "hour", image_type: str | None = None, since: float = 0.0
) -> list[dict[str, Any]]:
    """Rows of (image_type, anomaly_version, window) with the figures of `summarise`, oldest first."""
    if bucket not in BUCKET_FORMATS:
        raise LineinspectError(f"unknown window {bucket!r}; choose one of {', '.join(BUCKET_FORMATS)}")
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in store.outcomes(since, image_type):
        window = time.strftime(BUCKET_FORMATS[bucket], time.gmtime(row["captured_at"]))  # UTC
        groups.setdefault((row["image_type"], row["anomaly_version"], window), []).append(row)
    return [
        {"image_type": t, "anomaly_version": v, "window": w, **summarise(group)}
        for (t, v, w), group in sorted(groups.items(), key=lambda item: (item[0][2], item[0][0], item[0][1]))
    ]


def per_image_type(store: "MonitorStore", since: float = 0.0) -> dict[str, dict[str, Any]]:
    """Figures per image type over everything labelled since `since`."""
    rows = store.outcomes(since)
    types = sorted({row["image_type"] for row in rows})
    return {t: summarise([row for row in rows if row["image_type"] == t]) for t in types}
