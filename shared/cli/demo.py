"""`lineinspect demo` (the whole line once, on embedded defaults, with a summary) and
`lineinspect up` (the same stack, kept running for real use)."""

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from lineinspect.services import SERVICES
from lineinspect.services.camera.changes import LOOK_CHANGES as LOOK_CHANGE_NAMES
from lineinspect.shared.cli.line import add_connection_options, settings_from
from lineinspect.shared.config import Settings, prepare_torch_process
from lineinspect.shared.errors import LineinspectError

DEFAULT_CACHE = Path.home() / ".cache" / "lineinspect" / "demo"
READY_TIMEOUT_S = 300.0
DRAIN_TIMEOUT_S = 60.0
MONITOR_SETTLE_S = 3.0  # no new drift check for this long after the last one could be due: done
MONITOR_SETTLE_TIMEOUT_S = 120.0


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run the whole line once on embedded defaults and print a summary",
        description=(
            "Starts an embedded Kafka-protocol broker (Tansu) and Redis (or uses LINEINSPECT_REDIS_URL), trains small "
            "models on synthetic frames the first time (cached), runs every stage and a camera, and prints a summary."
        ),
    )
    demo.add_argument("--frames", type=int, default=300, help="frames to publish (default 300)")
    demo.add_argument("--fps", type=float, default=10.0, help="camera frame rate of the whole line (0 = as fast as possible)")
    demo.add_argument("--data", type=Path, metavar="MANIFEST", help="publish this manifest's images instead of synthetic ones")
    demo.add_argument("--split", help="with --data: only rows of this split")
    demo.add_argument("--packages", type=Path, help="model packages folder to use instead of the demo's own")
    demo.add_argument("--summary-json", type=Path, help="write the summary here as JSON")
    demo.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"where the demo's models are cached (default {DEFAULT_CACHE})")
    demo.add_argument("--threads", type=int, default=1, help="torch threads per stage process (default 1)")
    demo.add_argument("--log-dir", type=Path, help="stage logs (default: a temporary folder, shown at the end)")
    demo.add_argument("--drift-at", type=int, metavar="K",
                      help="change the look of every camera's frames from the line's frame K on (the monitor should notice)")
    demo.add_argument("--drift-kind", choices=sorted(LOOK_CHANGE_NAMES), default="lighting",
                      help="with --drift-at: what changes (default lighting)")
    demo.add_argument("--monitor-dir", type=Path,
                      help="the monitor's store and reports (default: a temporary folder, shown at the end)")
    demo.add_argument("--training", choices=("standard", "tiny"), default="standard", help=argparse.SUPPRESS)
    demo.set_defaults(handler=_demo)

    up = subparsers.add_parser(
        "up",
        help="start the line (broker and Redis embedded unless configured) and keep it running",
        description="Runs every stage as its own process and restarts a stage that dies; Ctrl-C or SIGTERM stops all.",
    )
    add_connection_options(up, packages=True)
    up.add_argument("--demo-packages", action="store_true", help="use the demo's synthetic models (trained once)")
    up.add_argument("--threads", type=int, default=1, help="torch threads per stage process (default 1)")
    up.add_argument("--log-dir", type=Path, help="stage logs (default: a temporary folder)")
    up.set_defaults(handler=_up)


def _use_embedded(args: argparse.Namespace, option: str, env: str) -> bool:
    return getattr(args, option, None) is None and env not in os.environ


def _wait_until_ready(stack, services: tuple[str, ...], timeout_s: float = READY_TIMEOUT_S) -> None:
    import redis

    from lineinspect.shared.streaming.health import read_health

    client = redis.Redis.from_url(stack.settings.redis_url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stack.check_stages()
        ready = {report["stage"] for report in read_health(client, stack.settings.redis_prefix) if report["ready"]}
        if ready >= set(services):
            return
        time.sleep(0.5)
    raise LineinspectError(f"the stages were not consuming after {timeout_s:.0f} s; see their logs")


class Progress:
    """One live line on a terminal; a line every few seconds otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def show(self, text: str, final: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            sys.stderr.write("\r" + text.ljust(100) + ("\n" if final else ""))
            sys.stderr.flush()
        elif final or now - self.last >= 5.0:
            sys.stderr.write(text + "\n")
            self.last = now


def _progress_text(run, started: float) -> str:
    decisions = run.decisions()
    elapsed = time.monotonic() - started
    done = len(run.verdicts)
    return (
        f"published {len(run.truth)}  verdicts {done}  deadletters {run.deadletters}  "
        f"pass {decisions['pass']} fail {decisions['fail']} review {decisions['review']}  "
        f"{done / elapsed if elapsed > 0 else 0:.1f} frames/s"
    )


def _demo_cameras(args: argparse.Namespace) -> list:
    from lineinspect.services.camera.changes import LineCounter, changed_after
    from lineinspect.services.camera.publisher import Camera
    from lineinspect.services.camera.sources import manifest_shots, synthetic_shots
    from lineinspect.shared.demo.packages import DEMO_IMAGE_TYPES, STANDARD, TINY

    if args.data is not None:
        cameras = [Camera("cam-1", manifest_shots(args.data, args.split))]
    else:
        size = (TINY if args.training == "tiny" else STANDARD).size
        cameras = [
            Camera(f"cam-{i + 1}", synthetic_shots(image_type, seed=1000 + i, size=size))
            for i, image_type in enumerate(DEMO_IMAGE_TYPES)
        ]
    if args.drift_at is None:
        return cameras
    counter = LineCounter()
    return [Camera(c.camera_id, changed_after(c.shots, counter, args.drift_at, args.drift_kind)) for c in cameras]


def _packages(args: argparse.Namespace, use_demo: bool) -> Path | None:
    from lineinspect.shared.demo.packages import STANDARD, TINY, demo_packages

    if getattr(args, "packages", None) is not None:
        return args.packages
    if use_demo:
        prepare_torch_process()  # the first run trains the demo's models in this process
        return demo_packages(args.cache if hasattr(args, "cache") else DEFAULT_CACHE,
                             TINY if getattr(args, "training", "standard") == "tiny" else STANDARD)
    return None


def _demo(args: argparse.Namespace) -> int:
    from lineinspect.services.camera.publisher import Publisher, rendered_ahead
    from lineinspect.shared.config import get_settings
    from lineinspect.shared.demo.summary import LineRun, VerdictCollector
    from lineinspect.shared.monitor.labels import label_for_shot
    from lineinspect.shared.streaming.clients import make_producer
    from lineinspect.shared.streaming.stack import LineStack
    from lineinspect.shared.streaming.topics import Topics, ensure_topics

    if args.frames < 1:
        raise LineinspectError("--frames must be at least 1")
    if args.drift_at is not None and not 0 <= args.drift_at < args.frames:
        raise LineinspectError(f"--drift-at must be a frame of the run: 0 to {args.frames - 1}")
    packages = _packages(args, use_demo=True)
    monitor_dir = (args.monitor_dir or Path(tempfile.mkdtemp(prefix="lineinspect-demo-monitor-"))).resolve()
    settings = get_settings().model_copy(update={
        "packages": packages.resolve(), "session_timeout_ms": 2000,
        "monitor_db": str(monitor_dir / "monitor.db"), "reports_dir": monitor_dir / "reports",
    })
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="lineinspect-demo-logs-"))
    run = LineRun()
    stack = LineStack(settings, log_dir=log_dir)
    collector = None
    try:
        stack.start_infrastructure(embedded_broker=True, embedded_redis="LINEINSPECT_REDIS_URL" not in os.environ)
        ensure_topics(stack.settings)
        stack.start_stages(threads=args.threads, services=SERVICES)
        cameras = rendered_ahead(_demo_cameras(args), args.frames)  # while the stages load their models
        _wait_until_ready(stack, SERVICES)
        collector = VerdictCollector(stack.settings, run)
        collector.start()
        producer = make_producer(stack.settings, "lineinspect-demo-camera")
        topics = Topics(stack.settings.topic_prefix)
        publisher = Publisher(producer, topics.frames, stack.settings.line_id)
        progress = Progress()
        started = time.monotonic()
        frame_order: dict[str, int] = {}

        def published(frame, shot) -> None:
            run.published(frame.frame_id, shot.truth)
            frame_order[frame.frame_id] = len(frame_order)
            label = label_for_shot(frame.frame_id, shot)
            if label is not None:  # the demo knows the truth: the monitor gets it as labels
                producer.send(topics.labels, key=frame.frame_id.encode(), value=label.model_dump_json().encode())
            progress.show(_progress_text(run, started))

        publisher.publish(cameras, args.frames, args.fps or None, on_frame=published)
        producer.close()
        last_count, last_change = -1, time.monotonic()
        while run.pending():
            stack.check_stages()
            count = run.pending()
            if count != last_count:
                last_count, last_change = count, time.monotonic()
            elif time.monotonic() - last_change > DRAIN_TIMEOUT_S:
                break
            progress.show(_progress_text(run, started))
            time.sleep(0.2)
        progress.show(_progress_text(run, started), final=True)
        summary = run.summary(started, time.monotonic())
        summary["monitor"] = _monitor_block(stack, len(run.verdicts), frame_order, args.drift_at)
    finally:
        if collector is not None:
            collector.stop()
        stack.stop()
    summary["packages"] = str(packages)
    summary["stage_logs"] = str(log_dir)
    summary["monitor_dir"] = str(monitor_dir)
    print(json.dumps(summary, indent=2))
    if args.summary_json:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
    missing = summary["frames_published"] - summary["verdicts"] - summary["deadletters"]
    if missing > 0:
        print(f"error: {missing} frames got neither a verdict nor a dead letter; see {log_dir}", file=sys.stderr)
        return 1
    return 0


def _monitor_block(stack, verdicts: int, frame_order: dict[str, int], drift_at: int | None) -> dict:  # noqa: ANN001
    """Wait until the monitor stored every frame and its drift checks settled, then summarise."""
    from lineinspect.shared.monitor.store import MonitorStore
    from lineinspect.shared.monitor.summary import monitor_summary

    store = MonitorStore(stack.settings.monitor_db)
    deadline = time.monotonic() + MONITOR_SETTLE_TIMEOUT_S
    last_checks, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        stack.check_stages()
        counts = store.counts()
        frames, checks = counts["frames"], counts["drift_checks"]
        if checks != last_checks:
            last_checks, stable_since = checks, time.monotonic()
        if frames >= verdicts and time.monotonic() - stable_since > stack.settings.drift_min_interval_s + MONITOR_SETTLE_S:
            break
        time.sleep(0.3)
    return monitor_summary(store, frame_order, drift_at)


def _up(args: argparse.Namespace) -> int:
    from lineinspect.shared.streaming.stack import LineStack
    from lineinspect.shared.streaming.topics import ensure_topics

    settings: Settings = settings_from(args)
    packages = _packages(args, use_demo=args.demo_packages)
    if packages is not None:
        settings = settings.model_copy(update={"packages": packages.resolve()})
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="lineinspect-up-logs-"))
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with LineStack(settings, log_dir=log_dir) as stack:
        stack.start_infrastructure(
            embedded_broker=_use_embedded(args, "kafka_bootstrap", "LINEINSPECT_KAFKA_BOOTSTRAP"),
            embedded_redis=_use_embedded(args, "redis_url", "LINEINSPECT_REDIS_URL"),
        )
        ensure_topics(stack.settings)
        stack.start_stages(threads=args.threads, services=SERVICES)
        print(json.dumps({
            "kafka_bootstrap": stack.settings.kafka_bootstrap, "redis_url": stack.settings.redis_url,
            "packages": str(stack.settings.packages), "stage_logs": str(log_dir),
            "monitor_db": str(stack.settings.monitor_db), "reports_dir": str(stack.settings.reports_dir),
        }), flush=True)
        print("the line is up; publish with `lineinspect publish --kafka-bootstrap ...`; Ctrl-C stops it", file=sys.stderr)
        restarts: dict[str, int] = {}
        while not stopping:
            for stage in list(stack.stages):
                if stage.process.poll() is not None:
                    # Back off a stage that keeps dying (a bad package, no broker): 2, 4, ... 60 s.
                    restarts[stage.stage] = restarts.get(stage.stage, 0) + 1
                    delay = min(60, 2 ** restarts[stage.stage])
                    print(f"stage {stage.stage} exited with status {stage.process.returncode}; restarting it in "
                          f"{delay} s (log: {stage.log_path})", file=sys.stderr)
                    stack.stages.remove(stage)
                    time.sleep(delay)
                    stack.start_stage(stage.stage, args.threads)
            time.sleep(1.0)
    return 0
