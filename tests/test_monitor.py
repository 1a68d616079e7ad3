"""The monitor's bookkeeping without a broker: labels joined to frames give outcomes (right,
false pass, false fail, mask IoU), repeats change nothing, tables per image type and window,
alert rules that fire once per episode, labels replayed from a manifest, and camera look
changes that start at a given frame."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from lineinspect.schemas import ImageStats, Telemetry
from lineinspect.services.camera.changes import LineCounter, changed_after
from lineinspect.services.camera.sources import Shot, synthetic_shots
from lineinspect.shared.config import get_settings
from lineinspect.shared.datasets.manifest import ManifestRow, write_manifest
from lineinspect.shared.images import encode_png
from lineinspect.shared.monitor.accuracy import accuracy_table, outcome_of, per_image_type
from lineinspect.shared.monitor.alerts import AlertBook, accuracy_findings, review_finding
from lineinspect.shared.monitor.checks import CheckSchedule
from lineinspect.shared.monitor.labels import labels_from_manifest, make_label
from lineinspect.shared.monitor.store import MonitorStore, StoreError

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


def square_mask(size: int = 32, start: int = 8, end: int = 24) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[start:end, start:end] = True
    return mask


def telemetry(frame_id: str, decision: str = "pass", image_type: str = "disc", minutes: float = 0.0,
              mask: np.ndarray | None = None, version: str = "anomaly-v1") -> Telemetry:
    stats = ImageStats(width=32, height=32, mean=100, std=20, p05=60, p95=140, contrast=0.3, sharpness=50,
                       channel_means=[100, 100, 100], saturation_mean=0)
    return Telemetry(
        frame_id=frame_id, line_id="line-1", camera_id="cam-1", image_type=image_type,
        captured_at=T0 + timedelta(minutes=minutes), image_stats=stats, embedding=[0.5] * 32,
        anomaly_score=1.0, normalised_score=0.5, mask_area_fraction=0.25, mask_confidence=0.9, mask_grade=1,
        decision=decision, latency_ms=100.0, model_versions={"mask": "mask-v1", "anomaly": version, "reviewer": "r-v1"},
        product_mask=encode_png(square_mask() if mask is None else mask),
    )


def ingest(store: MonitorStore, events: list) -> None:
    """What the monitor stage does with a batch: store, then join labels to frames."""
    from lineinspect.schemas import Label

    with store.transaction() as db:
        for event in events:
            if isinstance(event, Telemetry):
                store.add_telemetry(db, event)
            elif isinstance(event, Label):
                store.add_label(db, event)
            joined = store.frame_for_label(db, event.frame_id)
            if joined is not None:
                store.add_outcome(db, outcome_of(joined))


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monitor_store_target) -> Iterator[MonitorStore]:  # noqa: ANN001
    """The monitor's store in SQLite and in PostgreSQL: every store test runs on both."""
    with monitor_store_target(request.param, tmp_path) as target:
        opened = MonitorStore(target)
        yield opened
        opened.close()


def test_a_label_turns_a_frame_into_an_outcome_whichever_arrives_first(store: MonitorStore) -> None:
    shifted = square_mask(start=12, end=28)  # 12x... overlap with the line's 8..24 square
    ingest(store, [make_label("f1", "fail", "scratch", shifted), telemetry("f1", "pass")])
    ingest(store, [telemetry("f2", "fail"), make_label("f2", "pass", product_mask=square_mask())])
    ingest(store, [telemetry("f3", "review"), make_label("f3", "fail")])
    rows = {r["frame_id"]: r for r in store.outcomes()}
    assert rows["f1"]["false_pass"] == 1 and rows["f1"]["correct"] == 0
    assert rows["f1"]["iou"] == pytest.approx(144 / 368)  # 12x12 overlap, 256 + 256 - 144 union
    assert rows["f2"]["false_fail"] == 1 and rows["f2"]["iou"] == 1.0
    assert rows["f3"]["correct"] is None and rows["f3"]["iou"] is None, "review is not scored; no label mask, no IoU"
    figures = per_image_type(store)["disc"]
    assert figures == {"labelled": 3, "decided": 2, "reviewed": 1, "accuracy": 0.0, "false_pass": 1, "false_fail": 1,
                       "mask_iou": pytest.approx((144 / 368 + 1.0) / 2, abs=1e-4), "iou_n": 2}


def test_repeated_events_change_nothing_and_a_corrected_label_wins(store: MonitorStore) -> None:
    ingest(store, [telemetry("f1", "pass"), telemetry("f1", "pass"), make_label("f1", "fail")])
    ingest(store, [make_label("f1", "pass")])
    assert store.counts()["frames"] == 1
    outcome = store.outcomes()[0]
    assert (outcome["truth"], outcome["correct"]) == ("pass", 1)
    with store.transaction() as db:  # the monitor counts new frames (for drift checks) by this answer
        assert store.add_telemetry(db, telemetry("f2")) is True
        assert store.add_telemetry(db, telemetry("f2")) is False


def test_writers_take_turns_so_arrival_order_has_no_gaps(store: MonitorStore) -> None:
    import threading

    def write(prefix: str) -> None:
        for batch in range(5):
            ingest(store, [telemetry(f"{prefix}-{batch}-{i}") for i in range(10)])

    writers = [threading.Thread(target=write, args=(name,)) for name in ("a", "b", "c")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    seqs = sorted(r["seq"] for r in store.query("SELECT seq FROM frames"))
    assert seqs == list(range(1, 151))


def test_a_store_that_cannot_be_reached_says_which_setting_to_fix() -> None:
    with pytest.raises(StoreError, match="LINEINSPECT_MONITOR_DB"):
        MonitorStore("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_the_accuracy_table_has_a_row_per_image_type_version_and_window(store: MonitorStore) -> None:
    events = []
    for i in range(6):
        events += [telemetry(f"d{i}", "pass", "disc", minutes=i * 30), make_label(f"d{i}", "pass")]
    events += [telemetry("p0", "fail", "plate", minutes=5, version="anomaly-v2"), make_label("p0", "pass")]
    ingest(store, events)
    hourly = accuracy_table(store, "hour")
    assert [(r["image_type"], r["window"], r["labelled"]) for r in hourly] == [
        ("disc", "2026-11-28T08:00Z", 2), ("plate", "2026-11-28T08:00Z", 1),
        ("disc", "2026-11-28T09:00Z", 2), ("disc", "2026-11-28T10:00Z", 2),
    ]
    assert hourly[1]["anomaly_version"] == "anomaly-v2" and hourly[1]["accuracy"] == 0.0
    daily = accuracy_table(store, "day", image_type="disc")
    assert len(daily) == 1 and daily[0]["labelled"] == 6 and daily[0]["accuracy"] == 1.0


def test_an_iou_drop_raises_one_alert_per_episode(store: MonitorStore) -> None:
    settings = get_settings().model_copy(update={"min_labels": 5, "accuracy_window": 5, "iou_alert_below": 0.8})
    book = AlertBook("line-1")
    bad = square_mask(start=16, end=32)
    raised = []
    for i in range(12):
        ingest(store, [telemetry(f"f{i}", "pass", minutes=i), make_label(f"f{i}", "pass", product_mask=bad)])
        raised += book.update(accuracy_findings(store, settings, "disc"), "disc")
    assert [a.kind for a in raised] == ["iou_drop"], "one alert while the IoU stays low"
    alert = raised[0]
    assert alert.figure == "mask_iou" and alert.value < 0.8 and alert.threshold == 0.8 and alert.image_type == "disc"
    assert "retrain the mask finder" in alert.message
    for i in range(12, 18):  # the masks are right again: the episode ends
        ingest(store, [telemetry(f"f{i}", "pass", minutes=i), make_label(f"f{i}", "pass", product_mask=square_mask())])
        raised += book.update(accuracy_findings(store, settings, "disc"), "disc")
    for i in range(18, 24):  # and a new one begins
        ingest(store, [telemetry(f"f{i}", "pass", minutes=i), make_label(f"f{i}", "pass", product_mask=bad)])
        raised += book.update(accuracy_findings(store, settings, "disc"), "disc")
    assert [a.kind for a in raised] == ["iou_drop", "iou_drop"]


def test_too_few_labels_raise_nothing(store: MonitorStore) -> None:
    settings = get_settings().model_copy(update={"min_labels": 10})
    ingest(store, [telemetry("f1", "pass"), make_label("f1", "fail", product_mask=square_mask(start=0, end=4))])
    assert accuracy_findings(store, settings, "disc") == {}


def test_a_jump_in_review_verdicts_raises_a_review_rate_alert(store: MonitorStore) -> None:
    settings = get_settings().model_copy(update={"review_window": 20, "review_jump": 0.2})
    ingest(store, [telemetry(f"a{i}", "review" if i % 10 == 0 else "pass", minutes=i) for i in range(20)])
    ingest(store, [telemetry(f"b{i}", "review" if i % 2 == 0 else "pass", minutes=20 + i) for i in range(20)])
    finding = review_finding(store, settings, "disc")["review_rate"]
    assert finding is not None and finding.value == 0.5 and finding.threshold == pytest.approx(0.3)


def test_labels_replay_from_a_manifest_through_the_publishers_frames_log(tmp_path: Path, write_image) -> None:
    good = write_image(tmp_path / "good.png", 100)
    bad = write_image(tmp_path / "bad.png", 200)
    product = write_image(tmp_path / "good_mask.png", marked=True)
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, [
        ManifestRow(path=str(good), split="test", label="normal", image_type="disc", product_mask=str(product)),
        ManifestRow(path=str(bad), split="test", label="anomaly", defect_type="scratch", image_type="disc"),
    ])
    log = tmp_path / "frames.jsonl"
    log.write_text("".join(json.dumps({"frame_id": f, "source": str(p)}) + "\n"
                           for f, p in [("cam-1-a-000000", good), ("cam-1-a-000001", bad), ("cam-1-a-000002", tmp_path / "x.png")]))
    labels = {label.frame_id: label for label in labels_from_manifest(manifest, log, "qa")}
    assert set(labels) == {"cam-1-a-000000", "cam-1-a-000001"}, "frames from elsewhere get no label"
    assert labels["cam-1-a-000000"].decision == "pass" and labels["cam-1-a-000000"].product_mask is not None
    assert labels["cam-1-a-000001"].decision == "fail" and labels["cam-1-a-000001"].defect_type == "scratch"


def test_a_look_change_starts_at_the_lines_frame_k_across_cameras() -> None:
    counter = LineCounter()
    cameras = [changed_after(synthetic_shots(t, seed=5, size=64), counter, 5, "lighting") for t in ("disc", "plate")]
    shots: list[Shot] = [next(cameras[i % 2]) for i in range(10)]
    assert [s.metadata.get("changed") for s in shots] == [None] * 5 + ["lighting"] * 5
    plain = synthetic_shots("disc", seed=5, size=64)
    disc = [next(plain) for _ in range(5)]  # camera 0 took the even frames
    assert np.array_equal(shots[4].image, disc[2].image), "before frame 5 the look is unchanged"
    assert shots[6].image.mean() > disc[3].image.mean() + 20, "from frame 5 on the lamp is brighter"


def test_accuracy_alerts_need_confidence_not_a_few_unlucky_frames(store: MonitorStore) -> None:
    settings = get_settings().model_copy(update={"min_labels": 10, "accuracy_window": 20, "accuracy_alert_below": 0.95})
    # 18 of 20 right: 0.90 is below 0.95, but 20 frames cannot tell that from 0.95 (upper bound ~0.97)
    ingest(store, [e for i in range(20) for e in (telemetry(f"a{i}", "pass", minutes=i),
                                                  make_label(f"a{i}", "fail" if i < 2 else "pass"))])
    assert "accuracy_drop" not in accuracy_findings(store, settings, "disc"), "undecided: no alert, no all-clear"
    # 10 of the latest 20 right: clearly below
    ingest(store, [e for i in range(10) for e in (telemetry(f"b{i}", "pass", minutes=30 + i), make_label(f"b{i}", "fail"))])
    finding = accuracy_findings(store, settings, "disc")["accuracy_drop"]
    assert finding is not None and finding.value == 0.5 and "upper bound" in finding.message


def test_a_label_mask_of_the_wrong_size_costs_the_iou_not_the_frame(store: MonitorStore) -> None:
    ingest(store, [make_label("f1", "pass", product_mask=square_mask(size=64)), telemetry("f1", "pass")])
    outcome = store.outcomes()[0]
    assert outcome["iou"] is None and outcome["correct"] == 1
    assert store.counts()["frames"] == 1


def test_drift_checks_wait_for_enough_frames_and_merge_requests() -> None:
    schedule = CheckSchedule(every=10, min_interval_s=0.0, cpu_share=1.0)
    schedule.frames_arrived("disc", 9)
    assert schedule.next_due(0.0) == (None, float("inf"))
    for _ in range(3):  # 30 frames before the checker got to it: still one check
        schedule.frames_arrived("disc", 10)
    assert schedule.next_due(0.0) == ("disc", 0.0)
    assert schedule.next_due(0.0)[0] is None


def test_drift_checks_of_one_type_are_spaced_by_the_least_interval() -> None:
    schedule = CheckSchedule(every=10, min_interval_s=5.0, cpu_share=1.0)
    schedule.frames_arrived("disc", 10)
    assert schedule.next_due(100.0)[0] == "disc"
    schedule.checked("disc", began=100.0, ended=101.0, cpu_seconds=1.0)
    schedule.frames_arrived("disc", 10)
    assert schedule.next_due(102.0) == (None, 3.0)
    assert schedule.next_due(105.0)[0] == "disc"


def test_drift_checks_stay_within_their_cpu_share_across_image_types() -> None:
    schedule = CheckSchedule(every=10, min_interval_s=0.0, cpu_share=0.5)
    for image_type in ("disc", "plate", "bracket"):
        schedule.frames_arrived(image_type, 10)
    assert schedule.next_due(0.0)[0] == "disc"  # the longest-waiting type first
    schedule.checked("disc", began=0.0, ended=3.0, cpu_seconds=2.0)  # 2 s of CPU at half a core: 2 s idle
    assert schedule.next_due(4.0) == (None, 1.0)
    assert schedule.next_due(5.0)[0] in {"plate", "bracket"}
