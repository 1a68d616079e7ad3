"""The streaming line on real parts: a Tansu broker started here, a real Redis, and every stage
as its own `lineinspect run` process with small models trained on synthetic frames."""

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import redis
from planted import planted_frame, planted_rows

from lineinspect.schemas import Frame
from lineinspect.services.camera.publisher import Camera, Publisher
from lineinspect.services.camera.sources import Shot, synthetic_shots
from lineinspect.shared.config import MIB, Settings, get_settings
from lineinspect.shared.datasets.manifest import read_manifest, write_manifest
from lineinspect.shared.datasets.synth import synthesize_dataset
from lineinspect.shared.demo.packages import TINY, demo_packages
from lineinspect.shared.demo.summary import LineRun, VerdictCollector
from lineinspect.shared.images import encode_png, read_image
from lineinspect.shared.line.routing import read_routing, write_routing
from lineinspect.shared.line.verdict_cache import VerdictCache
from lineinspect.shared.models.anomaly.config import AnomalyConfig
from lineinspect.shared.models.anomaly.training import train_anomaly
from lineinspect.shared.models.detector.config import DetectorConfig
from lineinspect.shared.models.detector.inference import Detector
from lineinspect.shared.models.detector.training import train_detector
from lineinspect.shared.streaming.clients import make_producer
from lineinspect.shared.streaming.embedded import EmbeddedBroker
from lineinspect.shared.streaming.health import read_health
from lineinspect.shared.streaming.stack import LineStack
from lineinspect.shared.streaming.topics import Topics, ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

IMAGE_TYPES = ("disc", "plate", "bracket")
WAIT_S = 180.0


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_packages(tmp_path_factory.mktemp("models"), TINY, progress=False)


@dataclass
class Line:
    stack: LineStack
    run: LineRun
    publisher: Publisher

    @property
    def settings(self) -> Settings:
        return self.stack.settings

    @property
    def topics(self) -> Topics:
        return Topics(self.settings.topic_prefix)

    def cameras(self, count: int = 3, size: int = 128) -> list[Camera]:
        return [Camera(f"cam-{i + 1}", synthetic_shots(IMAGE_TYPES[i % 3], seed=int(time.time() * 1000) % 10**6 + i, size=size))
                for i in range(count)]

    def publish(self, frames: int, fps: float | None = None, cameras: int = 3, should_stop=lambda: False) -> list[str]:
        ids: list[str] = []

        def record(frame: Frame, shot: Shot) -> None:
            assert frame.frame_id not in self.run.truth, f"frame id {frame.frame_id} published twice"
            self.run.published(frame.frame_id, shot.truth)
            ids.append(frame.frame_id)

        self.publisher.publish(self.cameras(cameras), frames, fps, on_frame=record, should_stop=should_stop)
        return ids

    def send_raw(self, value: bytes, key: bytes = b"cam-raw") -> None:
        """Publish raw bytes as a frame; raises when the broker did not take them, so a test
        waiting for what the line makes of them never waits on a frame that was not sent."""
        future = self.publisher.producer.send(self.topics.frames, key=key, value=value)
        self.publisher.producer.flush()
        future.get(timeout=60)

    def wait_for_verdicts(self, frame_ids: list[str], timeout_s: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(f in self.run.verdicts for f in frame_ids):
                return
            self.stack.check_stages()
            time.sleep(0.2)
        missing = [f for f in frame_ids if f not in self.run.verdicts]
        raise AssertionError(f"{len(missing)} of {len(frame_ids)} frames got no verdict, e.g. {missing[:3]}")

    def wait_for_deadletters(self, frame_ids: set[str], timeout_s: float = WAIT_S) -> None:
        """Until a dead letter of each of these frames arrived (a count could be met by repeats)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if frame_ids <= {letter.frame_id for letter in self.run.deadletter_records}:
                return
            self.stack.check_stages()
            time.sleep(0.2)
        seen = {letter.frame_id for letter in self.run.deadletter_records}
        raise AssertionError(f"no dead letter for {sorted(frame_ids - seen)} after {timeout_s:.0f} s")

    def health(self) -> list[dict]:
        return read_health(redis.Redis.from_url(self.settings.redis_url), self.settings.redis_prefix)

    def wait_until_ready(self, stage_counts: dict[str, int], timeout_s: float = WAIT_S) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.stack.check_stages()
            reports = [r for r in self.health() if r["state"] == "consuming"]
            counts = {stage: sum(r["stage"] == stage for r in reports) for stage in stage_counts}
            if counts == stage_counts:
                return reports
            time.sleep(0.3)
        raise AssertionError(f"stages not consuming after {timeout_s:.0f} s: {self.health()}")

    def wait_for_versions(self, stage: str, versions: dict[str, str], timeout_s: float = WAIT_S) -> None:
        """Until every member of `stage` reports exactly these model versions."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            members = [r for r in self.health() if r["stage"] == stage]
            if members and all(r["model_versions"] == versions for r in members):
                return
            time.sleep(0.2)
        raise AssertionError(f"{stage} did not switch to {versions}: {self.health()}")

    def cache(self) -> VerdictCache:
        return VerdictCache(redis.Redis.from_url(self.settings.redis_url), self.settings.redis_prefix)


@pytest.fixture(scope="module")
def line(broker: EmbeddedBroker, redis_url: str, packages: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Line]:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    settings = get_settings().model_copy(update={
        "kafka_bootstrap": broker.bootstrap, "redis_url": redis_url, "topic_prefix": prefix,
        "packages": packages, "session_timeout_ms": 2000, "reload_interval_s": 0.5,
        "max_frame_bytes": 2 * MIB, "partitions": 4,
    })
    stack = LineStack(settings, log_dir=tmp_path_factory.mktemp("logs"))
    ensure_topics(settings)
    run = LineRun()
    collector = VerdictCollector(settings, run)
    producer = make_producer(settings, "test-camera")
    try:
        stack.start_stages(threads=1)
        line = Line(stack, run, Publisher(producer, Topics(prefix).frames, settings.line_id))
        line.wait_until_ready({"mask_finder": 1, "anomaly": 1, "reviewer": 1})
        collector.start()
        yield line
    finally:
        collector.stop()
        producer.close()
        stack.stop()


def test_every_frame_gets_exactly_one_verdict_with_its_ids(line: Line, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = line.publish(24)
    line.wait_for_verdicts(ids)
    verdicts = [line.run.verdicts[f] for f in ids]
    assert line.run.duplicates == 0
    assert [v.frame_id for v in verdicts] == ids
    assert {v.image_type for v in verdicts} == set(IMAGE_TYPES)
    for verdict in verdicts:
        assert verdict.decision in ("pass", "fail", "review") and verdict.reasons
        assert set(verdict.model_versions) == {"mask", "anomaly", "reviewer"}
        assert verdict.latency_ms > 0
    # The MES path: the same verdicts from Redis, by frame and by part.
    cache = line.cache()
    assert cache.count(ids) == len(ids)
    monkeypatch.setenv("LINEINSPECT_TOPIC_PREFIX", line.settings.topic_prefix)
    get_settings.cache_clear()
    try:
        code, out, err = cli("verdicts", "--part-id", verdicts[5].part_id, "--redis-url", line.settings.redis_url)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert code == 0, err
    found = [json.loads(text) for text in out.splitlines()]
    assert [(v["frame_id"], v["decision"]) for v in found] == [(verdicts[5].frame_id, verdicts[5].decision)]


def _frame_event(frame_id: str, image: bytes, image_type: str = "disc") -> bytes:
    now = datetime.now(timezone.utc)
    frame = Frame(frame_id=frame_id, line_id="line-1", camera_id="cam-raw", image_type=image_type,
                  captured_at=now, published_at=now, image=image)
    return frame.model_dump_json().encode()


def test_one_publisher_never_reuses_a_frame_id(line: Line) -> None:
    first, second = line.publish(3), line.publish(3)
    assert len(set(first) | set(second)) == 6, "a second run of one publisher must not repeat the first run's ids"
    line.wait_for_verdicts(first + second)


def test_bad_input_goes_to_deadletter_with_a_reason_and_later_frames_still_get_verdicts(line: Line) -> None:
    before = len(line.run.deadletter_records)
    tag = uuid.uuid4().hex[:6]
    good = encode_png(next(synthetic_shots("disc", seed=5, size=128)).image)
    noise = np.random.default_rng(0).integers(0, 256, (1000, 1000, 3), dtype=np.uint8)
    bad = {
        f"corrupt-{tag}": _frame_event(f"corrupt-{tag}", b"\x89PNG\r\n\x1a\n" + b"not really a png" * 20),
        f"oversized-{tag}": _frame_event(f"oversized-{tag}", encode_png(noise)),
        f"unknown-{tag}": _frame_event(f"unknown-{tag}", good, image_type="widget"),
    }
    assert len(bad[f"oversized-{tag}"]) > line.settings.max_frame_bytes
    for value in bad.values():
        line.send_raw(value)
    line.send_raw(json.dumps({"frame_id": f"schema-{tag}", "hello": "world"}).encode())
    line.send_raw(b"\x00\x01 not json at all")
    after = [f"after-{tag}-{i}" for i in range(3)]
    for frame_id in after:
        line.run.published(frame_id, None)
        line.send_raw(_frame_event(frame_id, good))

    line.wait_for_verdicts(after)
    line.wait_for_deadletters(set(bad) | {f"schema-{tag}"})
    letters = line.run.deadletter_records[before:]
    by_id = {letter.frame_id: letter for letter in letters}
    assert by_id[f"corrupt-{tag}"].error_type == "decode" and "decoded" in by_id[f"corrupt-{tag}"].reason
    assert by_id[f"oversized-{tag}"].error_type == "oversized" and "LINEINSPECT_MAX_FRAME_BYTES" in by_id[f"oversized-{tag}"].reason
    assert by_id[f"unknown-{tag}"].error_type == "unknown_model" and "widget" in by_id[f"unknown-{tag}"].reason
    assert by_id[f"unknown-{tag}"].stage == "anomaly"
    assert by_id[f"schema-{tag}"].error_type == "validation" and "image" in by_id[f"schema-{tag}"].reason
    not_json = [letter for letter in letters if letter.original == b"\x00\x01 not json at all"]
    assert len(not_json) == 1 and not_json[0].error_type == "decode"
    for frame_id in (f"corrupt-{tag}", f"oversized-{tag}"):
        letter = by_id[frame_id]
        assert letter.original == bad[frame_id], "the dead letter keeps the original bytes"
        assert letter.source_topic == line.topics.frames and letter.stage == "mask_finder"


def test_killing_a_stage_mid_stream_loses_no_frame(line: Line) -> None:
    published: list[str] = []
    publishing = threading.Thread(target=lambda: published.extend(line.publish(45, fps=12.0)))
    publishing.start()
    time.sleep(1.5)
    anomaly = next(s for s in line.stack.stages if s.stage == "anomaly")
    assert line.stack.stop_stage(anomaly, kill=True) == -9
    time.sleep(1.0)
    line.stack.start_stage("anomaly", threads=1)
    publishing.join()
    line.wait_for_verdicts(published)
    assert line.cache().count(published) == len(published)
    assert {f for f in published} <= set(line.run.verdicts)


def test_two_members_of_one_stage_split_the_partitions(line: Line) -> None:
    extra = line.stack.start_stage("anomaly", threads=1)
    every = {f"{line.topics.masked}:{p}" for p in range(line.settings.partitions)}
    deadline = time.monotonic() + WAIT_S
    while True:
        members = [r for r in line.health() if r["stage"] == "anomaly" and r["state"] == "consuming"]
        held = [set(m["partitions"]) for m in members]
        # Both consuming, each with its own share, together all of them.
        if len(held) == 2 and all(held) and not held[0] & held[1] and held[0] | held[1] == every:
            break
        assert time.monotonic() < deadline, f"the two anomaly members never split the partitions: {line.health()}"
        time.sleep(0.3)
    ids = line.publish(32, cameras=8)
    line.wait_for_verdicts(ids)
    # SIGTERM: the member finishes its batch, commits, leaves the group and exits cleanly.
    assert line.stack.stop_stage(extra) == 0


def test_a_hot_swap_mid_stream_gives_every_frame_one_complete_model_version(line: Line, tmp_path: Path) -> None:
    packages = line.settings.packages
    manifest = synthesize_dataset(tmp_path / "data", list(IMAGE_TYPES), count=6, seed=9, size=128, anomaly_fraction=0.0)
    rows = [row.model_copy(update={"split": "train"}) for row in read_manifest(manifest)]
    new = train_anomaly(rows, packages / "anomaly-v2", AnomalyConfig(), progress=False)
    routing = read_routing(packages)

    published: list[str] = []
    stop = threading.Event()
    publishing = threading.Thread(target=lambda: published.extend(line.publish(10_000, fps=10.0, should_stop=stop.is_set)))
    publishing.start()
    time.sleep(1.5)
    write_routing(packages, routing.model_copy(update={"anomaly": {"default": "anomaly-v2"}}))
    try:
        line.wait_for_versions("anomaly", {"default": new.version})
        time.sleep(1.5)  # frames after the swap
    finally:
        stop.set()
        publishing.join()
    line.wait_for_verdicts(published)

    versions = [line.run.verdicts[f].model_versions["anomaly"] for f in published]
    before = set(versions[: len(versions) // 4])
    assert new.version not in before, "the first frames were scored before the swap"
    assert versions[-1] == new.version, "the last frames were scored after it"
    # Per camera the switch happens once: no frame after a new-version frame has the old one.
    for camera in {line.run.verdicts[f].camera_id for f in published}:
        sequence = [v for f, v in zip(published, versions) if line.run.verdicts[f].camera_id == camera]
        switched = sequence.index(new.version)
        assert all(v == new.version for v in sequence[switched:])


def test_the_service_and_evaluate_give_the_same_score(line: Line, cli, tmp_path: Path) -> None:
    manifest = synthesize_dataset(tmp_path / "data", ["disc"], count=4, seed=11, size=128, anomaly_fraction=0.5)
    rows = [row.model_copy(update={"split": "test", "image_type": "parity", "product_mask": None})
            for row in read_manifest(manifest)]
    write_manifest(tmp_path / "parity.jsonl", rows)
    packages = line.settings.packages
    routing = read_routing(packages)
    anomaly_package = packages / routing.anomaly.get("disc", routing.anomaly.get("default", ""))
    write_routing(packages, routing.model_copy(update={
        "mask": {**routing.mask, "parity": "whole_frame"},
        "anomaly": {**routing.anomaly, "parity": str(anomaly_package.relative_to(packages))},
    }))
    deadline = time.monotonic() + WAIT_S
    while not all("parity" in r["model_versions"] for r in line.health() if r["stage"] in ("mask_finder", "anomaly")):
        assert time.monotonic() < deadline, "the stages did not pick up the parity routes"
        time.sleep(0.2)

    code, _, err = cli("evaluate", "anomaly", "--package", anomaly_package, "--manifest", tmp_path / "parity.jsonl",
                       "--split", "test", "--scores", tmp_path / "scores.jsonl", "--no-progress")
    assert code == 0, err
    offline = {json.loads(line_)["path"]: json.loads(line_)["score"] for line_ in (tmp_path / "scores.jsonl").read_text().splitlines()}

    ids = {}
    for row in rows:
        frame_id = f"parity-{uuid.uuid4().hex[:8]}"
        line.run.published(frame_id, None)
        line.send_raw(_frame_event(frame_id, encode_png(read_image(row.path)), image_type="parity"))
        ids[frame_id] = row.path
    deadline = time.monotonic() + WAIT_S
    while not all(f in line.run.verdicts for f in ids) and time.monotonic() < deadline:
        time.sleep(0.2)
    for frame_id, path in ids.items():
        verdict = line.run.verdicts[frame_id]
        assert verdict.mask_grade is None  # whole-frame masks are not graded
        assert verdict.score == pytest.approx(offline[path], rel=1e-5)


def test_a_detector_routed_to_an_image_type_finds_the_regions_of_its_verdicts(line: Line, tmp_path: Path) -> None:
    # A small detector trained on planted boxes serves image type "steel", which has no anomaly
    # model: its boxes are the regions and its confidence decides.
    rng = np.random.default_rng(21)
    rows = planted_rows(tmp_path, 48, rng)
    packages = line.settings.packages
    package = train_detector(rows, packages / "detector-steel", DetectorConfig(input_size=64, batch_size=8, validation_fraction=0.25),
                             progress=False, max_steps=200)
    routing = read_routing(packages)
    anomaly_routes = {t: routing.anomaly.get(t, routing.anomaly.get("default")) for t in IMAGE_TYPES}
    write_routing(packages, routing.model_copy(update={
        "mask": {**routing.mask, "steel": "whole_frame"},
        "anomaly": anomaly_routes,  # no default: "steel" has no anomaly model
        "detector": {"steel": "detector-steel"},
    }))
    try:
        # Both stages must have swapped before frames go in: a mask stage still on the old routing
        # would give "steel" frames a model mask (and so a mask grade).
        picked_up = {"anomaly": "detector:steel", "mask_finder": "steel"}
        deadline = time.monotonic() + WAIT_S
        while not all(picked_up[r["stage"]] in r["model_versions"] for r in line.health() if r["stage"] in picked_up):
            assert time.monotonic() < deadline, f"the stages did not pick up the steel routes: {line.health()}"
            time.sleep(0.2)
        detector = Detector.from_package(package.path)
        frames = {}
        for _ in range(8):
            image, _ = planted_frame(rng)
            frame_id = f"steel-{uuid.uuid4().hex[:8]}"
            line.run.published(frame_id, None)
            line.send_raw(_frame_event(frame_id, encode_png(image), image_type="steel"))
            frames[frame_id] = image
        line.wait_for_verdicts(list(frames))
    finally:
        write_routing(packages, routing)
    for frame_id, image in frames.items():
        verdict = line.run.verdicts[frame_id]
        assert verdict.model_versions["detector"] == package.manifest.version == verdict.model_versions["anomaly"]
        assert verdict.mask_grade is None
        offline = detector.predict([image], all_boxes=True)[0]
        best = max((b.score for b in offline), default=0.0)
        assert verdict.score == pytest.approx(best, rel=1e-5) and verdict.threshold == pytest.approx(detector.confidence)
        shown = [b for b in offline if b.score >= detector.confidence]
        assert [(r.defect_type, r.x1, r.type_confidence) for r in verdict.regions] == [
            (b.defect_type, max(0, int(np.floor(b.x1))), pytest.approx(b.score, rel=1e-5)) for b in shown
        ]
        assert (verdict.decision == "fail") == (best > detector.confidence * (1 + line.settings.review_band)), verdict.reasons
        assert any("defect confidence" in reason for reason in verdict.reasons)
    assert any(line.run.verdicts[f].regions for f in frames), "the detector found none of the planted defects"


def test_the_demo_runs_the_whole_line_and_writes_its_summary(packages: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    summary_path = tmp_path / "summary.json"
    # --training tiny with the cache the `packages` fixture filled: the demo finds its models ready.
    done = subprocess.run(
        [sys.executable, "-m", "lineinspect.shared.cli.main", "demo", "--training", "tiny", "--cache", str(packages.parent),
         "--frames", "24", "--fps", "20", "--summary-json", str(summary_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    assert summary["frames_published"] == 24 and summary["verdicts"] == 24 and summary["deadletters"] == 0
    assert sum(summary["decisions"].values()) == 24
    for key in ("accuracy", "frames_per_second", "p50_ms", "p99_ms"):
        assert summary[key] is not None and summary[key] >= 0
    assert summary["p99_ms"] >= summary["p50_ms"]
    # The monitor ran beside the line and got every frame's telemetry and label.
    monitor = summary["monitor"]
    assert monitor["labelled_frames"] == 24 and set(monitor["iou_per_image_type"]) == set(IMAGE_TYPES)
    assert all(0.0 <= iou <= 1.0 for iou in monitor["iou_per_image_type"].values())
    assert monitor["drift_at"] is None and monitor["frames_to_detection"] is None
    assert Path(summary["monitor_dir"], "monitor.db").is_file()
