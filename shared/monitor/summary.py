"""The `monitor` block of the demo summary, read from the monitor's store: where drift was
first detected per image type (in the line's frame order), IoU and accuracy per image type
from labels, and the alerts raised."""

from typing import Any

from lineinspect.shared.monitor.accuracy import per_image_type
from lineinspect.shared.monitor.store import MonitorStore


def first_detections(store: MonitorStore, frame_order: dict[str, int]) -> dict[str, dict[str, Any] | None]:
    """Per image type: the first drift check that fired, as line frame indexes (0-based, in
    publish order) of its window; None when no check fired."""
    found: dict[str, dict[str, Any] | None] = {t: None for t in store.image_types()}
    for check in store.drift_checks():
        image_type = check["image_type"]
        if not check["drift_detected"] or found.get(image_type) is not None:
            continue
        ids = store.frame_ids(image_type, check["first_seq"], check["last_seq"])
        indexes = sorted(frame_order[f] for f in ids if f in frame_order)
        found[image_type] = {
            "window_first_frame": indexes[0] if indexes else None,
            "window_last_frame": indexes[-1] if indexes else None,
            "report": check["report_html"],
        }
    return found


def monitor_summary(store: MonitorStore, frame_order: dict[str, int], drift_at: int | None) -> dict[str, Any]:
    detections = first_detections(store, frame_order)
    delays = {
        t: (d["window_last_frame"] - drift_at if d and d["window_last_frame"] is not None and drift_at is not None else None)
        for t, d in detections.items()
    }
    figures = per_image_type(store)
    checks = store.drift_checks()
    return {
        "drift_at": drift_at,
        "drift_detected": detections,
        "frames_to_detection": delays if drift_at is not None else None,
        "drift_checks": len(checks),
        "drift_checks_per_image_type": {t: sum(c["image_type"] == t for c in checks) for t in detections},
        "references": sorted({c["reference"] for c in checks}),
        "iou_per_image_type": {t: v["mask_iou"] for t, v in figures.items()},
        "accuracy_per_image_type": {t: v["accuracy"] for t, v in figures.items()},
        "labelled_frames": sum(v["labelled"] for v in figures.values()),
        "alerts": [
            {"kind": a.kind, "image_type": a.image_type, "figure": a.figure, "value": a.value, "severity": a.severity}
            for a in store.alerts()
        ],
    }
