"""Scheduled drift checks, in a process of their own.

An Evidently report of a check costs ~2 s of CPU, almost all of it drawing plots. Run on a
thread of the monitor, such checks held the GIL long enough that at 25 frames/s the monitor fell
behind the line, its lag growing to 25 s in 90 s (bench/monitor_lag.py); spaced out to spare
the CPU, they saw a change 250-400 frames late. So:

- every scheduled window is scored with Evidently's stat tests directly (`score_drift`, the
  report's exact answer in ~1/20 of the time), and Evidently's report (`check_drift`: the
  DataDriftPreset and EmbeddingsDrift HTML and JSON) is run when drift starts or ends, on
  demand, and every `drift_report_every_s` per type, so the latest report is never old;
- the checks run in a child process (`DriftCheckProcess`): the monitor only tells it how many
  frames of each image type arrived; the child reads the windows from the store, scores them,
  writes results and reports, and raises drift alerts itself.

When to check (`CheckSchedule`): after `drift_every` new frames of a type, no sooner than
`drift_min_interval_s` after that type's previous check, and within a CPU budget: after a check
that used c seconds of CPU the next one waits c * (1 / drift_cpu_share - 1), so checks take
at most that share of one core however many image types the line has. Requests that pile up are merged
(one pending check per type, the longest-waiting type first): a slow check delays, never queues.
"""

import json
import multiprocessing
import os
import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from lineinspect.schemas import Alert
from lineinspect.shared.config import Settings
from lineinspect.shared.logs import configure_logging, get_logger
from lineinspect.shared.monitor.alerts import AlertBook, Finding
from lineinspect.shared.monitor.drift import DriftResult, DriftSettings, check_drift, score_drift, write_drift_report
from lineinspect.shared.monitor.reference import References
from lineinspect.shared.monitor.store import MonitorStore

# The checker process is started again after it died, but not more often than this.
_RESTART_AFTER_S = 30.0


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


class DriftChecker:
    """Drift checks of an image type's latest window: the store's rows against the reference,
    Evidently's report when the answer changes (or when asked), every result stored and drift
    alerts raised once per episode."""

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
        self._reported_at: dict[str, float] = {}  # image type -> monotonic time of its latest report
        self._drifting: dict[str, bool] = {}  # image type -> its latest check's answer

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
        not enough data yet (`not_ready` says why). Evidently's report is written when the
        answer changes (drift starts or ends), when `write_report`, and when the type's latest
        report is older than `drift_report_every_s` (so a long drift episode does not write
        one every few frames)."""
        window = self.store.latest_window(image_type, self.settings.drift_window)
        if window is None or len(window.rows) < self.settings.drift_window:
            return None
        reference = self.references.for_window(image_type, window.anomaly_version)
        if reference is None:
            return None
        current = pd.DataFrame(window.rows)
        result = score_drift(reference.rows, current)
        report_html = None
        changed = result.drift_detected != self._drifting.get(image_type, False)
        # The periodic report starts one period after the type's first check (a report costs
        # ~40 scores; a line just started has better uses for the CPU).
        reported_at = self._reported_at.setdefault(image_type, time.monotonic())
        due = time.monotonic() - reported_at >= self.settings.drift_report_every_s
        if changed or write_report or due:
            # The report's own answer is the one kept (the score gives the same; tests hold them to it).
            result, snapshot = check_drift(reference.rows, current)
            stem = f"drift-{image_type}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(window.window_end))}-{window.last_seq}"
            html, _ = write_drift_report(snapshot, self.reports_dir / "drift", stem)
            report_html = str(html)
            self._reported_at[image_type] = time.monotonic()
        self._drifting[image_type] = result.drift_detected
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


class CheckSchedule:
    """Which image type to check next, and when (times are monotonic seconds)."""

    def __init__(self, every: int, min_interval_s: float, cpu_share: float) -> None:
        self.every = every
        self.min_interval_s = min_interval_s
        self.cpu_share = cpu_share
        self._frames_since: dict[str, int] = {}
        self._wanted: dict[str, float] = {}  # image type -> not before
        self._checked_at: dict[str, float] = {}
        self._idle_until = float("-inf")

    def frames_arrived(self, image_type: str, count: int) -> None:
        """Ask for a check after `every` new frames of a type, no sooner than `min_interval_s`
        after its previous check (so the last frames are still checked when the line stops)."""
        seen = self._frames_since.get(image_type, 0) + count
        if seen >= self.every:
            not_before = self._checked_at.get(image_type, float("-inf")) + self.min_interval_s
            self._wanted.setdefault(image_type, not_before)
            seen = 0
        self._frames_since[image_type] = seen

    def next_due(self, now: float) -> tuple[str | None, float]:
        """(the type to check now, or None; seconds until one is due, inf when none is wanted)."""
        if not self._wanted:
            return None, float("inf")
        image_type, due = min(self._wanted.items(), key=lambda item: item[1])
        due = max(due, self._idle_until)
        if due > now:
            return None, due - now
        del self._wanted[image_type]
        return image_type, 0.0

    def checked(self, image_type: str, began: float, ended: float, cpu_seconds: float) -> None:
        """A check of `image_type` ran from `began` to `ended` and used `cpu_seconds` of CPU.
        The budget counts CPU, not wall time: on a busy machine a check waits for the CPU
        longer than it uses it."""
        self._checked_at[image_type] = began
        self._idle_until = ended + cpu_seconds * (1.0 / self.cpu_share - 1.0)


def run_drift_checks(settings: Settings, alerts_topic: str, requests: "multiprocessing.Queue[Any]") -> None:
    """The checker process: frame counts in from the monitor, checks on schedule, until a None
    arrives or the monitor is gone."""
    from threadpoolctl import threadpool_limits

    from lineinspect.shared.monitor.alert_sink import AlertSink
    from lineinspect.shared.streaming.clients import make_producer

    # One BLAS thread: a score is small; two threads doubled its CPU and took longer (0.118
    # against 0.051 CPU seconds, 0.073 against 0.056 wall, on this 2-core machine).
    threadpool_limits(1)
    configure_logging()
    log = get_logger("lineinspect.monitor.drift")
    store = MonitorStore(settings.monitor_db)
    sink = AlertSink(make_producer(settings, "lineinspect-monitor-drift"), alerts_topic, store)
    checker = DriftChecker(store, References(settings.packages, store, settings.reference_fallback), settings, sink)
    schedule = CheckSchedule(settings.drift_every, settings.drift_min_interval_s, settings.drift_cpu_share)
    log.info("drift checks started", every=settings.drift_every, min_interval_s=settings.drift_min_interval_s,
             cpu_share=settings.drift_cpu_share)
    parent = os.getppid()
    try:
        while os.getppid() == parent:  # a monitor killed outright leaves no checker behind
            image_type, wait_s = schedule.next_due(time.monotonic())
            try:
                # Block only while no check is due; otherwise take what has arrived and go on.
                message = requests.get(timeout=min(wait_s, 5.0)) if image_type is None else requests.get_nowait()
            except queue.Empty:
                message = ()
            if message is None:
                return
            if message:
                schedule.frames_arrived(*message)
            if image_type is None:
                continue
            began, cpu = time.monotonic(), time.process_time()
            try:
                checker.check(image_type)
            except Exception as exc:  # a check that fails must not stop the next ones
                log.exception("drift check failed", image_type=image_type, error=str(exc))
            schedule.checked(image_type, began, time.monotonic(), time.process_time() - cpu)
    finally:
        sink.close()
        store.close()
        log.info("drift checks stopped")


class DriftCheckProcess:
    """The monitor's handle on its checker process."""

    def __init__(self, settings: Settings, alerts_topic: str) -> None:
        self.settings = settings
        self.alerts_topic = alerts_topic
        self.log = get_logger("lineinspect.monitor.drift")
        # spawn, not fork: the monitor has Kafka and Redis threads a fork would copy mid-flight.
        self._context = multiprocessing.get_context("spawn")
        self._requests: multiprocessing.Queue[Any] = self._context.Queue()
        self._started_at = 0.0
        self._start()

    def _start(self) -> None:
        self._process = self._context.Process(
            target=run_drift_checks, args=(self.settings, self.alerts_topic, self._requests),
            name="lineinspect-drift-checks", daemon=True,
        )
        self._process.start()
        self._started_at = time.monotonic()

    def frames_arrived(self, image_type: str, count: int) -> None:
        if not self._process.is_alive() and time.monotonic() - self._started_at >= _RESTART_AFTER_S:
            self.log.error("drift checker died; starting it again", exitcode=self._process.exitcode)
            self._start()
        self._requests.put((image_type, count))

    def stop(self) -> None:
        """Let a running check finish (up to 30 s), then end the process."""
        self._requests.put(None)
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)
        self._requests.close()
