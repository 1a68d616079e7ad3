"""monitor: telemetry, verdicts and labels in (topics `telemetry`, `verdicts`, `labels`);
accuracy per image type from labels, scheduled drift checks against the model package's
reference (in a child process: shared/monitor/checks.py), alerts out (topic `alerts`, and the
log). State lives in SQLite or PostgreSQL (`LINEINSPECT_MONITOR_DB`), live counts in Redis.
See docs/monitor.md."""

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from kafka.consumer.fetcher import ConsumerRecord
from pydantic import BaseModel, ValidationError

from lineinspect.schemas import Alert, Label, Telemetry, Verdict
from lineinspect.shared.config import Settings
from lineinspect.shared.logs import get_logger
from lineinspect.shared.monitor.alert_sink import AlertSink
from lineinspect.shared.monitor.accuracy import bucket_for_span, outcome_of
from lineinspect.shared.monitor.alerts import AlertBook, accuracy_findings, review_finding
from lineinspect.shared.monitor.checks import DriftCheckProcess
from lineinspect.shared.monitor.live import LiveView
from lineinspect.shared.monitor.reports import accuracy_figures, write_accuracy_report
from lineinspect.shared.monitor.store import MonitorStore
from lineinspect.shared.streaming.clients import make_producer
from lineinspect.shared.streaming.deadletter import Refused, frame_id_of
from lineinspect.shared.streaming.loop import Outgoing
from lineinspect.shared.streaming.topics import Topics


class MonitorStage:
    name = "monitor"

    def __init__(
        self, settings: Settings, topics: Topics, store: MonitorStore, live: LiveView, sink: AlertSink
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.input_topics = [topics.telemetry, topics.verdicts, topics.labels]
        self.events: dict[str, type[BaseModel]] = {topics.telemetry: Telemetry, topics.verdicts: Verdict, topics.labels: Label}
        self.store = store
        self.live = live
        self.sink = sink
        self.book = AlertBook(settings.line_id)
        self.checks = DriftCheckProcess(settings, topics.alerts)
        self.log = get_logger("lineinspect.services.monitor", stage=self.name)

    def decode(self, record: ConsumerRecord) -> BaseModel:
        model = self.events[record.topic]
        try:
            return model.model_validate_json(record.value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "event"
            raise Refused(
                "validation", f"not a valid {model.__name__} event: {where}: {first['msg']}", frame_id_of(record.value)
            ) from None

    def process(self, items: Sequence[BaseModel]) -> list[list[Outgoing] | Refused]:
        new_frames: Counter = Counter()
        decisions: Counter = Counter()
        labelled: set[str] = set()
        with self.store.transaction() as db:
            for item in items:
                if isinstance(item, Telemetry):
                    if self.store.add_telemetry(db, item):
                        new_frames[item.image_type] += 1
                        decisions[(item.line_id, item.image_type, item.decision)] += 1
                    joined = self.store.frame_for_label(db, item.frame_id)
                elif isinstance(item, Label):
                    self.store.add_label(db, item)
                    joined = self.store.frame_for_label(db, item.frame_id)
                else:
                    self.store.add_verdict(db, item)
                    continue
                if joined is not None:
                    self.store.add_outcome(db, outcome_of(joined))
                    labelled.add(joined["image_type"])
        self.live.count(decisions)
        for image_type in labelled:
            for alert in self.book.update(accuracy_findings(self.store, self.settings, image_type), image_type):
                self.sink(self.with_report(alert))
        for image_type, count in new_frames.items():
            for alert in self.book.update(review_finding(self.store, self.settings, image_type), image_type):
                self.sink(self.with_report(alert))
            self.checks.frames_arrived(image_type, count)
        return [[] for _ in items]

    def with_report(self, alert: Alert) -> Alert:
        """The alert with the accuracy report of its image type as it stood when it was raised
        (reports/accuracy/<alert id>.html: per window, the IoU and accuracy timeline)."""
        figures = accuracy_figures(self.store, bucket_for_span(self.store.labelled_span()), alert.image_type, 0.0)
        path = write_accuracy_report(figures, Path(self.settings.reports_dir), name=alert.alert_id)
        return alert.model_copy(update={"report_url": str(path)})

    def delivered(self, items: Sequence[Any], outputs: Sequence[list[Outgoing]]) -> None:
        """Nothing to do: the store was written in `process`, idempotently."""

    def between_batches(self) -> None:
        """No models to swap; references follow the anomaly versions the frames name."""

    def model_versions(self) -> dict[str, str]:
        return {}

    def close(self) -> None:
        self.checks.stop()
        self.sink.close()


def build(settings: Settings, topics: Topics, redis_client: redis.Redis) -> MonitorStage:
    store = MonitorStore(settings.monitor_db)
    sink = AlertSink(make_producer(settings, "lineinspect-monitor-alerts"), topics.alerts, store)
    return MonitorStage(settings, topics, store, LiveView(redis_client, settings.redis_prefix), sink)

