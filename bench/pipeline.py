"""The whole line on this machine: broker, Redis and the three stages as processes, on the
same generated 256 px frames as the three models called directly in one process.

This machine's speed drifts by 10-30 % within minutes (the direct rate has moved from 31 to 22
frames/s within one run), so the line and the direct models are measured in turns and each
line run is compared with the direct runs just before and after it:

    direct, line, direct, line, direct, line, direct      (--rounds 3)

While the direct models run, the line's processes are paused (SIGSTOP, then SIGCONT), because
an idle line still polls the broker and would take CPU from them; after they resume the bench
waits until every stage consumes again. The latency run comes before the first pause.

Figures, all from one run:
- `frames_per_second`: the line's sustained throughput with the camera publishing as fast as
  it can: verdicts per second from the 10th to the 90th percentile verdict, the steady state
  of a line that runs for hours; the median of the rounds (`line_frames_per_second_runs`).
  `run_frames_per_second` (of the median round) is verdicts / time from the first frame
  published to the last verdict, which also counts filling and draining the stages;
- `direct_frames_per_second`: mask finder -> anomaly -> reviewer called in this process, in
  batches, on the frames (no Kafka, no encoding); the median of `direct_frames_per_second_runs`;
- `overhead_ratio`: the median over the rounds of the round's line throughput / the mean of
  the direct runs before and after it (`overhead_ratio_runs`);
- `p50_ms`, `p99_ms`: end-to-end latency (published -> verdict) at `--latency-fps` (10);
- `replicas_2_frames_per_second`: throughput again with a second member of the slowest
  stage (the one with the most model time per frame in the first direct run);
- `cpu_ms_per_frame` (of the median round): CPU time of each process of the line per frame
  (Linux /proc): each stage, the broker, Redis, and this process (the camera publishing and
  the verdict collector); with 2 cores, their sum bounds the line at 2000 / sum frames/s.

    python bench/pipeline.py --json P.json [--packages DIR] [--frames 300] [--rounds 3] [--threads 1] [--encoding png|jpeg]

Without --packages the demo's models are used (trained once, as `lineinspect demo` does).
"""

import argparse
import os
import resource
import signal
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import redis
import torch

from lineinspect.services.camera.publisher import JPEG_QUALITY, Camera, Encoding, Publisher
from lineinspect.services.camera.sources import Shot, synthetic_shots
from lineinspect.shared.config import get_settings
from lineinspect.shared.demo.packages import DEMO_IMAGE_TYPES, STANDARD, demo_packages
from lineinspect.shared.demo.summary import LineRun, VerdictCollector
from lineinspect.shared.line.routing import DEFAULT_ROUTE, read_routing, resolve
from lineinspect.shared.images import encode_jpeg, encode_png
from lineinspect.shared.logs import configure_logging
from lineinspect.shared.models.anomaly.inference import AnomalyModel
from lineinspect.shared.models.mask.inference import load_mask_finder
from lineinspect.shared.models.reviewer.inference import Reviewer
from lineinspect.shared.streaming.clients import make_producer
from lineinspect.shared.streaming.health import read_health
from lineinspect.shared.streaming.stack import LineStack
from lineinspect.shared.streaming.topics import Topics, ensure_topics
from common import machine, print_figures

CAMERAS = 8  # more cameras than partitions, so every partition (and replica) gets frames
BATCH = 8


def make_shots(count: int, encoding: Encoding = "png") -> list[Shot]:
    """Generated frames, already encoded as the camera sends them: cameras encode on their own
    hardware, so the line's 2 cores only publish the bytes (as `publish` does for a folder of
    PNG files)."""
    streams = [synthetic_shots(DEMO_IMAGE_TYPES[i % 3], seed=5000 + i, size=256) for i in range(CAMERAS)]
    shots = [next(streams[i % CAMERAS]) for i in range(count)]
    encode = encode_png if encoding == "png" else lambda image: encode_jpeg(image, JPEG_QUALITY)
    return [replace(shot, encoded=encode(shot.image)) for shot in shots]


class DirectModels:
    """The three models called in this process, loaded once: the line's work without the line."""

    def __init__(self, packages: Path) -> None:
        routing = read_routing(packages)

        def model_for(routes: dict[str, str], image_type: str, load):
            return load(resolve(packages, routes.get(image_type, routes.get(DEFAULT_ROUTE))))

        self.finder = model_for(routing.mask, DEMO_IMAGE_TYPES[0], load_mask_finder)
        self.anomaly = {t: model_for(routing.anomaly, t, AnomalyModel.from_package) for t in DEMO_IMAGE_TYPES}
        self.reviewer = model_for(routing.reviewer, DEMO_IMAGE_TYPES[0], Reviewer.from_package)

    def run_all(self, shots: list[Shot]) -> dict[str, float]:
        """Model seconds of each stage over the frames, in batches as the stages take them."""
        spent = {"mask_finder": 0.0, "anomaly": 0.0, "reviewer": 0.0}
        for start in range(0, len(shots), BATCH):
            batch = shots[start:start + BATCH]
            images = [s.image for s in batch]
            t0 = time.perf_counter()
            masks = [p.mask for p in self.finder.predict(images)]
            t1 = time.perf_counter()
            for image_type in {s.image_type for s in batch}:
                chosen = [i for i, s in enumerate(batch) if s.image_type == image_type]
                self.anomaly[image_type].predict([images[i] for i in chosen], [masks[i] for i in chosen])
            t2 = time.perf_counter()
            self.reviewer.review(images, masks)
            t3 = time.perf_counter()
            spent["mask_finder"] += t1 - t0
            spent["anomaly"] += t2 - t1
            spent["reviewer"] += t3 - t2
        return spent

    def rate(self, shots: list[Shot]) -> tuple[float, dict[str, float]]:
        """Frames/s of one pass over the frames, and model seconds per frame of each stage."""
        began = time.perf_counter()
        spent = self.run_all(shots)
        seconds = time.perf_counter() - began
        return len(shots) / seconds, {name: value / len(shots) for name, value in spent.items()}


@contextmanager
def line_paused(stack: LineStack) -> Iterator[None]:
    """The line's processes (stages, broker, Redis) stopped (SIGSTOP) for a while, then resumed (SIGCONT)."""
    pids = [stage.pid for stage in stack.stages]
    pids += [server.process.pid for server in (stack.broker, stack.redis) if server is not None and server.process is not None]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def line_cpu_seconds(stack: LineStack) -> dict[str, float]:
    """CPU seconds so far of each process of the line, by component."""
    spent: dict[str, float] = {}
    for stage in stack.stages:
        spent[stage.stage] = spent.get(stage.stage, 0.0) + process_cpu_seconds(stage.pid)
    for name, server in (("broker", stack.broker), ("redis", stack.redis)):
        if server is not None and server.process is not None:
            spent[name] = process_cpu_seconds(server.process.pid)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    spent["camera_and_collector"] = usage.ru_utime + usage.ru_stime
    return spent


def line_run(stack: LineStack, shots: list[Shot], fps: float | None, encoding: Encoding = "png") -> dict:
    run = LineRun()
    cpu_before = line_cpu_seconds(stack)
    collector = VerdictCollector(stack.settings, run)
    collector.start()
    producer = make_producer(stack.settings, "bench-camera")
    publisher = Publisher(producer, Topics(stack.settings.topic_prefix).frames, stack.settings.line_id, encoding=encoding)
    by_camera: dict[int, list[Shot]] = {i: shots[i::CAMERAS] for i in range(CAMERAS)}
    cameras = [Camera(f"cam-{i + 1}", iter(by_camera[i])) for i in range(CAMERAS)]
    started = time.monotonic()
    publisher.publish(cameras, len(shots), fps, on_frame=lambda frame, shot: run.published(frame.frame_id, shot.truth))
    producer.close()
    deadline = time.monotonic() + 600
    while run.pending() and time.monotonic() < deadline:
        stack.check_stages()
        time.sleep(0.1)
    collector.stop()
    summary = run.summary(started, time.monotonic())
    cpu_after = line_cpu_seconds(stack)
    frames = max(1, summary["verdicts"])
    summary["cpu_ms_per_frame"] = {
        name: round((cpu_after[name] - cpu_before.get(name, 0.0)) * 1000 / frames, 2) for name in cpu_after
    }
    return summary


def wait_ready(stack: LineStack, expected: dict[str, int]) -> None:
    client = redis.Redis.from_url(stack.settings.redis_url)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        stack.check_stages()
        reports = [r for r in read_health(client, stack.settings.redis_prefix) if r["state"] == "consuming"]
        if all(sum(r["stage"] == s for r in reports) >= n for s, n in expected.items()):
            return
        time.sleep(0.5)
    raise RuntimeError("stages not ready")


def resume_settled(stack: LineStack, expected: dict[str, int]) -> None:
    """After a pause the broker may find the members' sessions expired and rebalance the group:
    give it two session timeouts to do so, then wait until every stage consumes again."""
    time.sleep(2 * stack.settings.session_timeout_ms / 1000)
    wait_ready(stack, expected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--packages", type=Path, help="model packages folder (default: the demo's, trained once)")
    parser.add_argument("--frames", type=int, default=300, help="frames per throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="line runs, each between two direct runs")
    parser.add_argument("--latency-frames", type=int, default=150, help="frames of the latency run")
    parser.add_argument("--latency-fps", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per stage process")
    parser.add_argument("--encoding", choices=["png", "jpeg"], default="png",
                        help="how the camera encodes frames (jpeg: quality 90, ~7x smaller than png here)")
    args = parser.parse_args()
    configure_logging(level="WARNING")
    packages = (args.packages or demo_packages(Path.home() / ".cache" / "lineinspect" / "demo", STANDARD)).resolve()

    shots = make_shots(args.frames, args.encoding)
    direct = DirectModels(packages)
    direct.run_all(shots)  # warm-up
    first_direct, per_frame = direct.rate(shots)
    slowest = max(per_frame, key=per_frame.get)

    settings = get_settings().model_copy(update={
        "packages": packages, "session_timeout_ms": 2000, "topic_prefix": f"bench{os.getpid()}.",
    })
    figures: dict[str, object] = {"machine": machine(), "torch_threads_direct": torch.get_num_threads(),
                                  "stage_threads": args.threads, "packages": str(packages), "frames": args.frames,
                                  "encoding": args.encoding, "rounds": args.rounds}
    stages = {"mask_finder": 1, "anomaly": 1, "reviewer": 1}
    directs = [first_direct]
    saturated_runs: list[dict] = []
    with LineStack(settings, log_dir=Path(tempfile.mkdtemp(prefix="bench-pipeline-"))) as stack:
        stack.start_infrastructure(embedded_broker=True, embedded_redis="LINEINSPECT_REDIS_URL" not in os.environ)
        ensure_topics(stack.settings)
        stack.start_stages(threads=args.threads)
        wait_ready(stack, stages)
        line_run(stack, make_shots(2 * BATCH, args.encoding), None, args.encoding)  # warm-up: first batches pay for lazy init
        # Latency first, from a line that has never been paused.
        latency = line_run(stack, make_shots(args.latency_frames, args.encoding), args.latency_fps, args.encoding)
        for _ in range(args.rounds):
            saturated_runs.append(line_run(stack, shots, None, args.encoding))
            with line_paused(stack):
                directs.append(direct.rate(shots)[0])
            resume_settled(stack, stages)
        stack.start_stage(slowest, threads=args.threads)
        wait_ready(stack, {**stages, slowest: 2})
        two = line_run(stack, shots, None, args.encoding)

    line_rates = [run["sustained_frames_per_second"] for run in saturated_runs]
    ratios = [rate / ((before + after) / 2) for rate, before, after in zip(line_rates, directs, directs[1:])]
    median_run = sorted(saturated_runs, key=lambda run: run["sustained_frames_per_second"])[len(saturated_runs) // 2]
    figures.update({
        "direct_frames_per_second": statistics.median(directs),
        "direct_frames_per_second_runs": [round(float(rate), 2) for rate in directs],
        **{f"direct_ms_per_frame_{name}": value * 1000 for name, value in per_frame.items()},
        "frames_per_second": statistics.median(line_rates),
        "line_frames_per_second_runs": [round(float(rate), 2) for rate in line_rates],
        "run_frames_per_second": median_run["frames_per_second"],
        "overhead_ratio": statistics.median(ratios),
        "overhead_ratio_runs": [round(float(ratio), 3) for ratio in ratios],
        "cpu_ms_per_frame": median_run["cpu_ms_per_frame"],
        "cpu_ms_per_frame_total": round(sum(median_run["cpu_ms_per_frame"].values()), 2),
        "saturated_p50_ms": median_run["p50_ms"],
        "latency_fps": args.latency_fps,
        "p50_ms": latency["p50_ms"],
        "p99_ms": latency["p99_ms"],
        "latency_run_frames_per_second": latency["frames_per_second"],
        "slowest_stage": slowest,
        "replicas_2_frames_per_second": two["sustained_frames_per_second"],
        "verdicts_missing": sum(r["frames_published"] - r["verdicts"] - r["deadletters"] for r in (*saturated_runs, latency, two)),
    })
    print_figures(figures, args.json)


if __name__ == "__main__":
    main()
