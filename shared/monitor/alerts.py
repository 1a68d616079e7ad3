"""When the monitor raises an alert, and only once per episode.

Rules, per image type (thresholds in `Settings`, docs/monitor.md):
  iou_drop       mean mask IoU of the latest `accuracy_window` labelled frames < `iou_alert_below`,
                 with 95 % confidence (the interval's upper end is below)
  accuracy_drop  decision accuracy of the same frames < `accuracy_alert_below`, likewise
  review_rate    review share of the latest `review_window` frames > the share of the window
                 before it + `review_jump`
  drift          a drift check found the latest frames differ from the reference
An alert is raised when a rule starts to hold and not again until it has cleared (the figure
back on the right side of its threshold), so a persisting problem is one alert, not one per
frame; `critical` when the figure is far past its threshold.
"""

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from lineinspect.schemas import Alert
from lineinspect.shared.config import Settings
from lineinspect.shared.monitor.accuracy import summarise
from lineinspect.shared.monitor.store import MonitorStore


@dataclass(frozen=True)
class Finding:
    """A rule that holds now for one image type."""

    kind: str
    image_type: str
    figure: str
    value: float
    threshold: float
    window_start: float
    window_end: float
    message: str
    critical: bool = False
    report_url: str | None = None


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


Z = 1.96  # 95 % bounds: an alert needs the figure to be below its threshold with confidence


def wilson_upper(successes: int, n: int, z: float = Z) -> float:
    """Upper end of the Wilson score interval of a proportion."""
    if n == 0:
        return 1.0
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z * z / n))


def mean_upper(values: list[float], z: float = Z) -> float:
    """Upper end of a normal-approximation interval of a mean."""
    if len(values) < 2:
        return 1.0
    return float(np.mean(values) + z * np.std(values, ddof=1) / math.sqrt(len(values)))


def accuracy_findings(store: MonitorStore, settings: Settings, image_type: str) -> dict[str, Finding | None]:
    """The iou_drop and accuracy_drop rules over the latest labelled frames of `image_type`.

    A rule holds (a Finding) when even the upper end of the figure's 95 % interval is below
    the threshold, so a few unlucky frames in a small window do not page anyone; it has
    cleared (None) once the figure itself is back at or above the threshold; in between the
    key is left out and the episode stays as it was. Too few labels: nothing is said."""
    outcomes = store.latest_outcomes(image_type, settings.accuracy_window)
    if len(outcomes) < settings.min_labels:
        return {}
    figures = summarise(outcomes)
    start, end = min(o["captured_at"] for o in outcomes), max(o["captured_at"] for o in outcomes)
    found: dict[str, Finding | None] = {}
    ious = [o["iou"] for o in outcomes if o["iou"] is not None]
    if len(ious) >= settings.min_labels:
        iou, bound = float(np.mean(ious)), mean_upper(ious)
        if bound < settings.iou_alert_below:
            found["iou_drop"] = Finding(
                "iou_drop", image_type, "mask_iou", iou, settings.iou_alert_below, start, end,
                f"mean product-mask IoU of the latest {len(ious)} labelled {image_type} frames is {iou:.3f} "
                f"(95% upper bound {bound:.3f}), below {settings.iou_alert_below}: check the camera and lighting, "
                "then retrain the mask finder with recent labelled frames",
                critical=bound < settings.iou_alert_below - 0.2,
            )
        elif iou >= settings.iou_alert_below:
            found["iou_drop"] = None
    decided = [o for o in outcomes if o["correct"] is not None]
    if len(decided) >= settings.min_labels:
        right = sum(o["correct"] for o in decided)
        accuracy, bound = right / len(decided), wilson_upper(right, len(decided))
        if bound < settings.accuracy_alert_below:
            found["accuracy_drop"] = Finding(
                "accuracy_drop", image_type, "decision_accuracy", accuracy, settings.accuracy_alert_below, start, end,
                f"{image_type}: {accuracy:.1%} of the latest {len(decided)} decided labelled frames were right "
                f"(95% upper bound {bound:.1%}; {figures['false_pass']} false pass, {figures['false_fail']} false fail), "
                f"below {settings.accuracy_alert_below:.0%}: look at the drift report and retrain or recalibrate "
                "the anomaly model",
                critical=figures["false_pass"] > 0 and bound < settings.accuracy_alert_below - 0.1,
            )
        elif accuracy >= settings.accuracy_alert_below:
            found["accuracy_drop"] = None
    return found


def review_finding(store: MonitorStore, settings: Settings, image_type: str) -> dict[str, Finding | None]:
    size = settings.review_window
    rows = store.latest_frames(image_type, size)
    if len(rows) < size:
        return {}
    before = store.latest_frames(image_type, size, before_seq=rows[-1]["seq"])
    if len(before) < size:
        return {}
    now_rate = sum(r["decision"] == "review" for r in rows) / size
    before_rate = sum(r["decision"] == "review" for r in before) / size
    threshold = before_rate + settings.review_jump
    if now_rate <= threshold:
        return {"review_rate": None}
    return {"review_rate": Finding(
        "review_rate", image_type, "review_rate", now_rate, threshold,
        min(r["captured_at"] for r in rows), max(r["captured_at"] for r in rows),
        f"{image_type}: {now_rate:.0%} of the latest {size} frames need a person ('review'), up from {before_rate:.0%}: "
        "masks may be failing (grade 3) or scores sit at the threshold; look at recent review frames and the drift report",
        critical=now_rate > 0.5,
    )}


class AlertBook:
    """Which rules hold now, so each episode is raised once."""

    def __init__(self, line_id: str) -> None:
        self.line_id = line_id
        self._open: set[tuple[str, str]] = set()

    def update(self, findings: dict[str, Finding | None], image_type: str) -> list[Alert]:
        raised: list[Alert] = []
        for kind, finding in findings.items():
            key = (kind, image_type)
            if finding is None:
                self._open.discard(key)
            elif key not in self._open:
                self._open.add(key)
                raised.append(self.alert(finding))
        return raised

    def alert(self, finding: Finding) -> Alert:
        raised_at = datetime.now(UTC)
        digest = hashlib.sha1(f"{finding.kind}{finding.image_type}{finding.window_end}{raised_at}".encode()).hexdigest()[:12]
        return Alert(
            alert_id=f"{finding.kind}-{finding.image_type}-{digest}",
            raised_at=raised_at,
            kind=finding.kind,  # type: ignore[arg-type]
            severity="critical" if finding.critical else "warning",
            line_id=self.line_id,
            image_type=finding.image_type,
            figure=finding.figure,
            value=round(finding.value, 5),
            threshold=round(finding.threshold, 5),
            window_start=_utc(finding.window_start),
            window_end=_utc(max(finding.window_end, finding.window_start)),
            message=finding.message,
            report_url=finding.report_url,
        )

