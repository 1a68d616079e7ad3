"""The monitor service on a real broker and Redis, as its own `lineinspect run monitor`
process: telemetry and labels in, per-image-type IoU in its store and reports, an
`iou_drop` alert for the image type whose masks are wrong, a `drift` alert once frames
start to look different, and bad events dead-lettered."""

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaConsumer

from lineinspect.schemas import Alert, DeadLetter, Telemetry
from lineinspect.services.camera.changes import lighting
from lineinspect.services.camera.sources import synthetic_shots
from lineinspect.shared.config import Settings, get_settings
from lineinspect.shared.images import encode_png
from lineinspect.shared.line.telemetry import image_embedding, image_stats
from lineinspect.shared.monitor.labels import make_label
from lineinspect.shared.monitor.store import MonitorStore
from lineinspect.shared.streaming.clients import make_producer
from lineinspect.shared.streaming.embedded import EmbeddedBroker
from lineinspect.shared.streaming.stack import LineStack
from lineinspect.shared.streaming.topics import Topics, ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

WAIT_S = 120.0


@dataclass
class Monitor:
    settings: Settings
    stack: LineStack
    producer: object

    @property
    def topics(self) -> Topics:
        return Topics(self.settings.topic_prefix)

    def send(self, topic: str, key: str, value: bytes) -> None:
        self.producer.send(topic, key=key.encode(), value=value)

    def store(self) -> MonitorStore:
        return MonitorStore(self.settings.monitor_db)

    def wait_for(self, what: str, condition, timeout_s: float = WAIT_S):  # noqa: ANN001, ANN201
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.stack.check_stages()
            found = condition()
            if found:
                return found
            time.sleep(0.3)
        raise AssertionError(f"monitor: {what} did not happen within {timeout_s:.0f} s; see {self.settings.monitor_db}")

    def read(self, topic: str) -> list[bytes]:
        consumer = KafkaConsumer(topic, bootstrap_servers=self.settings.kafka_bootstrap, group_id=None,
                                 auto_offset_reset="earliest", consumer_timeout_ms=2000)
        try:
            return [record.value for record in consumer]
        finally:
            consumer.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def monitor(
    request: pytest.FixtureRequest, broker: EmbeddedBroker, redis_url: str, tmp_path_factory: pytest.TempPathFactory,
    monitor_store_target,  # noqa: ANN001
) -> Iterator[Monitor]:
    """A monitor process with its store in SQLite, then one with its store in PostgreSQL."""
    folder = tmp_path_factory.mktemp("monitor")
    with monitor_store_target(request.param, folder) as target:
        yield from _monitor(broker, redis_url, folder, target)


def _monitor(broker: EmbeddedBroker, redis_url: str, folder: Path, store_target: str) -> Iterator[Monitor]:
    (folder / "packages").mkdir()  # no model packages: the reference is the stream's start
    settings = get_settings().model_copy(update={
        "kafka_bootstrap": broker.bootstrap, "redis_url": redis_url, "topic_prefix": f"m{uuid.uuid4().hex[:8]}.",
        "packages": folder / "packages", "session_timeout_ms": 2000, "partitions": 2,
        "monitor_db": store_target, "reports_dir": folder / "reports",
        "reference_fallback": 60, "drift_window": 40, "drift_every": 10, "min_labels": 10, "accuracy_window": 20,
    })
    ensure_topics(settings)
    stack = LineStack(settings, log_dir=folder / "logs")
    producer = make_producer(settings, "test-monitor")
    try:
        stack.start_stage("monitor", threads=1)
        yield Monitor(settings, stack, producer)
    finally:
        producer.close()
        stack.stop()


def telemetry_of(frame_id: str, image: np.ndarray, image_type: str, mask: np.ndarray) -> Telemetry:
    now = datetime.now(UTC)
    return Telemetry(
        frame_id=frame_id, line_id="line-1", camera_id=f"cam-{image_type}", image_type=image_type, captured_at=now,
        image_stats=image_stats(image), embedding=image_embedding(image), anomaly_score=0.5, normalised_score=0.5,
        mask_area_fraction=float(mask.mean()), mask_confidence=0.9, mask_grade=1, decision="pass", latency_ms=80.0,
        model_versions={"mask": "mask-t", "anomaly": "anomaly-t", "reviewer": "reviewer-t"},
        product_mask=encode_png(mask),
    )


def feed(monitor: Monitor, image_type: str, count: int, start: int, label_mask=None, change=None) -> list[str]:  # noqa: ANN001
    """`count` frames of `image_type` (normal products), each labelled 'pass' with `label_mask(true mask)`."""
    ids = []
    shots = synthetic_shots(image_type, seed=77 + start, size=96, anomaly_fraction=0.0)
    for i in range(count):
        shot = next(shots)
        image = shot.image if change is None else change(shot.image)
        frame_id = f"{image_type}-{start + i:05d}"
        monitor.send(monitor.topics.telemetry, frame_id, telemetry_of(frame_id, image, image_type, shot.product_mask).model_dump_json().encode())
        truth = shot.product_mask if label_mask is None else label_mask(shot.product_mask)
        monitor.send(monitor.topics.labels, frame_id, make_label(frame_id, "pass", product_mask=truth).model_dump_json().encode())
        ids.append(frame_id)
    monitor.producer.flush()
    return ids


def alerts(monitor: Monitor) -> list[Alert]:
    return [Alert.model_validate_json(v) for v in monitor.read(monitor.topics.alerts)]


def test_per_type_iou_from_labels_and_an_alert_for_the_type_whose_masks_are_wrong(monitor: Monitor, cli) -> None:
    def shifted(mask: np.ndarray) -> np.ndarray:  # the true product sits 12 px to the right
        return np.roll(mask, 12, axis=1)

    feed(monitor, "disc", 100, 0)
    feed(monitor, "plate", 30, 0, label_mask=shifted)
    store = monitor.store()
    monitor.wait_for("130 outcomes", lambda: store.counts()["outcomes"] >= 130)
    found = monitor.wait_for("the iou_drop alert", lambda: [a for a in alerts(monitor) if a.kind == "iou_drop"])
    assert {a.image_type for a in found} == {"plate"}, "only the type whose masks are wrong"
    assert found[0].value < monitor.settings.iou_alert_below and found[0].figure == "mask_iou"
    report = Path(found[0].report_url)
    assert report.is_file() and "plate" in report.read_text(), "the alert links the accuracy report of its type"
    assert (report.parent / "plotly.min.js").is_file(), "the report's timeline draws without a network"

    code, out, _ = cli("report", "accuracy", "--db", monitor.settings.monitor_db, "--out",
                       monitor.settings.reports_dir, "--json")
    assert code == 0
    figures = json.loads(out)["per_image_type"]
    assert figures["disc"]["mask_iou"] == 1.0 and figures["disc"]["labelled"] == 100
    assert 0.3 < figures["plate"]["mask_iou"] < monitor.settings.iou_alert_below
    assert (monitor.settings.reports_dir / "accuracy" / "accuracy.html").is_file()
    assert (monitor.settings.reports_dir / "index.html").is_file()


def test_frames_that_start_to_look_different_raise_a_drift_alert(monitor: Monitor) -> None:
    # disc has 100 unchanged frames from the first test: its reference (60) and clean windows.
    assert not [a for a in alerts(monitor) if a.kind == "drift"], "no drift alarm on unchanged frames"
    feed(monitor, "disc", 50, 1000, change=lighting)
    found = monitor.wait_for("the drift alert", lambda: [a for a in alerts(monitor) if a.kind == "drift"])
    assert {a.image_type for a in found} == {"disc"}
    assert found[0].report_url and Path(found[0].report_url).is_file(), "the alert links Evidently's report"
    checks = monitor.store().drift_checks("disc")
    assert checks and all(c["reference"] == "stream start" for c in checks)
    first_fired = next(c for c in checks if c["drift_detected"])
    assert not any(c["drift_detected"] for c in checks if c["check_id"] < first_fired["check_id"])


def test_bad_events_go_to_the_dead_letter_topic(monitor: Monitor) -> None:
    monitor.send(monitor.topics.labels, "x", b'{"frame_id": "x-1", "decision": "maybe"}')
    monitor.producer.flush()
    letters = monitor.wait_for("the dead letter", lambda: [
        DeadLetter.model_validate_json(v) for v in monitor.read(monitor.topics.deadletter)
        if DeadLetter.model_validate_json(v).stage == "monitor"
    ])
    assert letters[0].error_type == "validation" and "Label" in letters[0].reason
    assert letters[0].frame_id == "x-1"


def test_drift_report_on_demand(monitor: Monitor, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINEINSPECT_REFERENCE_FALLBACK", str(monitor.settings.reference_fallback))
    get_settings.cache_clear()
    try:
        code, out, err = cli("report", "drift", "--image-type", "disc", "--db", monitor.settings.monitor_db,
                             "--out", monitor.settings.reports_dir, "--packages", monitor.settings.packages, "--json")
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert code == 0, err
    figures = json.loads(out)["disc"]
    assert figures["drift_detected"] is True and figures["reference"] == "stream start"
    assert Path(figures["report"]).is_file() and Path(figures["report"]).with_suffix(".json").is_file()
