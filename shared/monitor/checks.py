"""Scheduled drift checks, off the consuming thread: the monitor asks for a check of an image
type every `drift_every` frames; a worker thread runs the latest request per type (requests
that pile up while a check runs are merged, so a slow check delays, never queues up)."""

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from lineinspect.schemas import Alert
from lineinspect.shared.config import Settings
from lineinspect.shared.logs import get_logger
from lineinspect.shared.monitor.alerts import AlertBook, Finding
from lineinspect.shared.monitor.drift import DriftResult, DriftSettings, check_drift, write_drift_report
from lineinspect.shared.monitor.reference import References
from lineinspect.shared.monitor.store import MonitorStore


def drift_finding(result: DriftResult, image_type: str, start: float, end: float, report: str | None) -> Finding | None:
    if not result.drift_detected:
        return None
    what = []
    if result.dataset_drift:
        what.append(f"{len(result.drifted_columns)} image features drifted ({', '.join(result.drifted_columns[:5])})")
    if result.embedding_drift:
        what.append("the image embedding drifted")
    return Finding(
        "drift", image_type, "drift_share", result.drift_share, DriftSettings().drift_share, start, end,
        f"{image_type}: the latest {result.current_rows} frames no longer look like the model's training images: "
        f"{'; '.join(what)}. Check lighting, focus and the product finish; if the change is intended, retrain "
        "the anomaly model on recent good frames",
        critical=result.dataset_drift and bool(result.embedding_drift),
        report_url=report,
    )


class DriftChecks:
    def __init__(
        self, store: MonitorStore, references: References, settings: Settings, on_alert: Callable[[Alert], None]
    ) -> None:
        self.store = store
        self.references = references
        self.settings = settings
        self.on_alert = on_alert
        self.book = AlertBook(settings.line_id)
        self.reports_dir = Path(settings.reports_dir)
        self.log = get_logger("lineinspect.monitor.drift")
        self._wanted: dict[str, float] = {}  # image type -> not before (monotonic seconds)
        self._frames_since: dict[str, int] = {}
        self._checked_at: dict[str, float] = {}
        self._lock = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="drift-checks", daemon=True)
        self._thread.start()

    # ---- scheduling (consuming thread) ---------------------------------------------------
    def frames_arrived(self, image_type: str, count: int) -> None:
        """Ask for a check after `drift_every` new frames of a type; it runs no sooner than
        `drift_min_interval_s` after the type's previous check, so on a busy line checks are
        spaced by time, not by frames (and the last frames are still checked when the line stops)."""
        seen = self._frames_since.get(image_type, 0) + count
        if seen >= self.settings.drift_every:
            self.request(image_type, not_before=self._checked_at.get(image_type, -1e9) + self.settings.drift_min_interval_s)
            seen = 0
        self._frames_since[image_type] = seen

    def request(self, image_type: str, not_before: float = 0.0) -> None:
        with self._lock:
            if image_type not in self._wanted:
                self._wanted[image_type] = not_before
            self._lock.notify()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify()
        self._thread.join(timeout=30)

    # ---- the worker ------------------------------------------------------------------------
    def _next_due(self) -> tuple[str | None, float]:
        """(image type due now, or None; seconds until the next one is due)."""
        now = time.monotonic()
        if not self._wanted:
            return None, 3600.0
        image_type, due = min(self._wanted.items(), key=lambda item: item[1])
        return (image_type, 0.0) if due <= now else (None, due - now)

    def _work(self) -> None:
        while True:
            with self._lock:
                while True:
                    if self._stopping:
                        return
                    image_type, wait_s = self._next_due()
                    if image_type is not None:
                        break
                    self._lock.wait(timeout=wait_s)
                del self._wanted[image_type]
            self._checked_at[image_type] = time.monotonic()
            try:
                self.check(image_type)
            except Exception as exc:  # a check that fails must not stop the monitor
                self.log.exception("drift check failed", image_type=image_type, error=str(exc))

    def not_ready(self, image_type: str) -> str | None:
        """Why `image_type` cannot be checked yet, or None when it can."""
        window = self.store.latest_window(image_type, self.settings.drift_window)
        size = 0 if window is None else len(window.rows)
        if window is None or size < self.settings.drift_window:
            return f"{image_type}: {size} frames, a drift check needs {self.settings.drift_window} (LINEINSPECT_DRIFT_WINDOW)"
        if self.references.for_window(image_type, window.anomaly_version) is None:
            return (
                f"{image_type}: its anomaly package ({window.anomaly_version}) carries no drift reference and fewer than "
                f"{self.settings.reference_fallback} of its frames are stored (LINEINSPECT_REFERENCE_FALLBACK); "
                "retrain the package, or let the line run longer"
            )
        return None

    def check(self, image_type: str, write_report: bool = False, raise_alerts: bool = True) -> dict[str, Any] | None:
        """Check the latest window of `image_type` now; the stored check, or None when there is
        not enough data yet (`not_ready` says why)."""
        window = self.store.latest_window(image_type, self.settings.drift_window)
        if window is None or len(window.rows) < self.settings.drift_window:
            return None
        reference = self.references.for_window(image_type, window.anomaly_version)
        if reference is None:
            return None
        current = pd.DataFrame(window.rows)
        result, snapshot = check_drift(reference.rows, current)
        report_html = None
        if result.drift_detected or write_report:
            stem = f"drift-{image_type}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(window.window_end))}-{window.last_seq}"
            html, _ = write_drift_report(snapshot, self.reports_dir / "drift", stem)
            report_html = str(html)
        check = {
            "image_type": image_type, "anomaly_version": window.anomaly_version, "checked_at": time.time(),
            "first_seq": window.first_seq, "last_seq": window.last_seq, "window_start": window.window_start,
            "window_end": window.window_end, "reference": reference.source,
            "drift_detected": int(result.drift_detected), "result": json.dumps(result.as_dict()), "report_html": report_html,
        }
        check["check_id"] = self.store.add_drift_check(check)
        self.log.info(
            "drift checked", image_type=image_type, drift_detected=result.drift_detected, drift_share=result.drift_share,
            embedding_drift=result.embedding_drift, reference=reference.source, seconds=round(result.seconds, 2),
        )
        if raise_alerts:
            finding = drift_finding(result, image_type, window.window_start, window.window_end, report_html)
            for alert in self.book.update({"drift": finding}, image_type):
                self.on_alert(alert)
        return check
