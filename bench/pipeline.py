"""The whole line on this machine: broker, Redis and the three stages as processes, on the
same generated 256 px frames as the three models called directly in one process.

Figures, all from one run:
- `direct_frames_per_second`: mask finder -> anomaly -> reviewer called in this process, in
  batches, on the frames (no Kafka, no encoding); measured before the line starts and after
  it stops, and averaged, because this machine's speed drifts by 10-30 % over minutes
  (`direct_frames_per_second_before` / `_after` show by how much);
- `frames_per_second`: the line's sustained throughput with the camera publishing as fast as
  it can: verdicts per second from the 10th to the 90th percentile verdict, the steady state
  of a line that runs for hours (`run_frames_per_second` is verdicts / time from the first
  frame published to the last verdict, which also counts filling and draining the stages:
  3-10 % lower in runs here);
- `overhead_ratio` = frames_per_second / direct_frames_per_second;
- `p50_ms`, `p99_ms`: end-to-end latency (published -> verdict) at `--latency-fps` (10);
- `replicas_2_frames_per_second`: throughput again with a second member of the slowest
  stage (the one with the most model time per frame in the direct run);
- `cpu_ms_per_frame`: CPU time of each process of the line over the saturated run, per
  frame (Linux /proc): each stage, the broker, Redis, and this process (the camera publishing
  and the verdict collector); with 2 cores, their sum bounds the line at 2000 / sum frames/s.

    python bench/pipeline.py --json P.json [--packages DIR] [--frames 300] [--threads 1] [--encoding png|jpeg]

Without --packages the demo's models are used (trained once, as `lineinspect demo` does).
"""

import argparse
import os
import resource
import tempfile
import time
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


def direct_rate(packages: Path, shots: list[Shot]) -> tuple[float, dict[str, float]]:
    """Frames/s of the three models called in-process, and model seconds per frame of each."""
    routing = read_routing(packages)

    def model_for(routes: dict[str, str], image_type: str, load):
        return load(resolve(packages, routes.get(image_type, routes.get(DEFAULT_ROUTE))))

    finder = model_for(routing.mask, DEMO_IMAGE_TYPES[0], load_mask_finder)
    anomaly = {t: model_for(routing.anomaly, t, AnomalyModel.from_package) for t in DEMO_IMAGE_TYPES}
    reviewer = model_for(routing.reviewer, DEMO_IMAGE_TYPES[0], Reviewer.from_package)
    spent = {"mask_finder": 0.0, "anomaly": 0.0, "reviewer": 0.0}

    def run_all() -> None:
        for start in range(0, len(shots), BATCH):
            batch = shots[start:start + BATCH]
            images = [s.image for s in batch]
            t0 = time.perf_counter()
            masks = [p.mask for p in finder.predict(images)]
            t1 = time.perf_counter()
            for image_type in {s.image_type for s in batch}:
                chosen = [i for i, s in enumerate(batch) if s.image_type == image_type]
                anomaly[image_type].predict([images[i] for i in chosen], [masks[i] for i in chosen])
            t2 = time.perf_counter()
            reviewer.review(images, masks)
            t3 = time.perf_counter()
            spent["mask_finder"] += t1 - t0
            spent["anomaly"] += t2 - t1
            spent["reviewer"] += t3 - t2

    run_all()  # warm-up
    for name in spent:
        spent[name] = 0.0
    began = time.perf_counter()
    run_all()
    seconds = time.perf_counter() - began
    return len(shots) / seconds, {name: value / len(shots) for name, value in spent.items()}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--packages", type=Path, help="model packages folder (default: the demo's, trained once)")
    parser.add_argument("--frames", type=int, default=300, help="frames per throughput run")
    parser.add_argument("--latency-frames", type=int, default=150, help="frames of the latency run")
    parser.add_argument("--latency-fps", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per stage process")
    parser.add_argument("--encoding", choices=["png", "jpeg"], default="png",
                        help="how the camera encodes frames (jpeg: quality 90, ~7x smaller than png here)")
    args = parser.parse_args()
    configure_logging(level="WARNING")
    packages = (args.packages or demo_packages(Path.home() / ".cache" / "lineinspect" / "demo", STANDARD)).resolve()

    shots = make_shots(args.frames, args.encoding)
    direct_fps, per_frame = direct_rate(packages, shots)
    slowest = max(per_frame, key=per_frame.get)

    settings = get_settings().model_copy(update={
        "packages": packages, "session_timeout_ms": 2000, "topic_prefix": f"bench{os.getpid()}.",
    })
    figures: dict[str, object] = {"machine": machine(), "torch_threads_direct": torch.get_num_threads(),
                                  "stage_threads": args.threads, "packages": str(packages), "frames": args.frames,
                                  "encoding": args.encoding}
    with LineStack(settings, log_dir=Path(tempfile.mkdtemp(prefix="bench-pipeline-"))) as stack:
        stack.start_infrastructure(embedded_broker=True, embedded_redis="LINEINSPECT_REDIS_URL" not in os.environ)
        ensure_topics(stack.settings)
        stack.start_stages(threads=args.threads)
        wait_ready(stack, {"mask_finder": 1, "anomaly": 1, "reviewer": 1})
        line_run(stack, make_shots(2 * BATCH, args.encoding), None, args.encoding)  # warm-up: first batches pay for lazy init
        saturated = line_run(stack, shots, None, args.encoding)
        latency = line_run(stack, make_shots(args.latency_frames, args.encoding), args.latency_fps, args.encoding)
        stack.start_stage(slowest, threads=args.threads)
        wait_ready(stack, {slowest: 2})
        two = line_run(stack, shots, None, args.encoding)
    direct_after, _ = direct_rate(packages, shots)  # with the line stopped, as the first

    figures.update({
        "direct_frames_per_second": (direct_fps + direct_after) / 2,
        "direct_frames_per_second_before": direct_fps,
        "direct_frames_per_second_after": direct_after,
        **{f"direct_ms_per_frame_{name}": value * 1000 for name, value in per_frame.items()},
        "frames_per_second": saturated["sustained_frames_per_second"],
        "run_frames_per_second": saturated["frames_per_second"],
        "overhead_ratio": saturated["sustained_frames_per_second"] / ((direct_fps + direct_after) / 2),
        "cpu_ms_per_frame": saturated["cpu_ms_per_frame"],
        "cpu_ms_per_frame_total": round(sum(saturated["cpu_ms_per_frame"].values()), 2),
        "saturated_p50_ms": saturated["p50_ms"],
        "latency_fps": args.latency_fps,
        "p50_ms": latency["p50_ms"],
        "p99_ms": latency["p99_ms"],
        "latency_run_frames_per_second": latency["frames_per_second"],
        "slowest_stage": slowest,
        "replicas_2_frames_per_second": two["sustained_frames_per_second"],
        "verdicts_missing": sum(r["frames_published"] - r["verdicts"] - r["deadletters"] for r in (saturated, latency, two)),
    })
    print_figures(figures, args.json)


if __name__ == "__main__":
    main()
