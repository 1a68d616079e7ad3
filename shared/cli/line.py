"""`lineinspect run | publish | verdicts | status`: the line's production commands. `run` starts
one stage against any broker and Redis, `publish` is the camera simulator, `verdicts` reads
verdicts (from Redis by part or frame, or tails the topic), `status` shows the stages' health."""

import argparse
import contextlib
import json
import sys
from pathlib import Path

from lineinspect.services import SERVICES
from lineinspect.shared.config import Settings, get_settings
from lineinspect.shared.errors import LineinspectError


def add_connection_options(parser: argparse.ArgumentParser, packages: bool = False) -> None:
    """Flags that override the LINEINSPECT_ variables of the same names."""
    parser.add_argument("--kafka-bootstrap", help="Kafka bootstrap servers (env LINEINSPECT_KAFKA_BOOTSTRAP)")
    parser.add_argument("--redis-url", help="Redis URL (env LINEINSPECT_REDIS_URL)")
    if packages:
        parser.add_argument("--packages", type=Path, help="model packages folder (env LINEINSPECT_PACKAGES)")


def settings_from(args: argparse.Namespace) -> Settings:
    updates = {
        name: getattr(args, name)
        for name in ("kafka_bootstrap", "redis_url", "packages")
        if getattr(args, name, None) is not None
    }
    return get_settings().model_copy(update=updates)


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="run one service of the line (a model stage or the monitor) against a Kafka broker and Redis")
    run.add_argument("stage", choices=SERVICES)
    add_connection_options(run, packages=True)
    run.set_defaults(handler=_run)

    publish = subparsers.add_parser("publish", help="camera simulator: publish frames to the line")
    source = publish.add_mutually_exclusive_group()
    source.add_argument("--folder", type=Path, help="publish the images of this folder (recursively, sorted)")
    source.add_argument("--video", type=Path, help="publish the frames of this video file")
    source.add_argument("--manifest", type=Path, help="publish the images of this manifest")
    publish.add_argument("--split", help="with --manifest: only rows of this split")
    publish.add_argument("--image-type", default="unknown", help="image type of --folder or --video frames")
    publish.add_argument("--image-types", default="disc,plate,bracket",
                         help="synthetic image types, comma-separated (the default source)")
    publish.add_argument("--cameras", type=int, default=0,
                         help="cameras taking turns (default: one per synthetic image type, else 1)")
    publish.add_argument("--frames", type=int, help="stop after this many frames (default: all, or 100 synthetic)")
    publish.add_argument("--fps", type=float, default=10.0, help="frames per second for the whole line (0 = as fast as possible)")
    publish.add_argument("--encoding", choices=("png", "jpeg"), default="png")
    publish.add_argument("--frames-log", type=Path,
                         help="write each published frame's id, source and truth here (JSON Lines; `lineinspect label --from-manifest` reads it)")
    add_connection_options(publish)
    publish.set_defaults(handler=_publish)

    verdicts = subparsers.add_parser("verdicts", help="verdicts: of a part or frame (Redis), the latest, or tail the topic")
    which = verdicts.add_mutually_exclusive_group()
    which.add_argument("--part-id", help="every verdict of this part, from the Redis cache")
    which.add_argument("--frame-id", help="the verdict of this frame, from the Redis cache")
    which.add_argument("--latest", type=int, metavar="N", help="the line's N latest verdicts, from the Redis cache")
    verdicts.add_argument("--from-beginning", action="store_true", help="tail: start at the oldest verdict on the topic")
    verdicts.add_argument("--limit", type=int, help="tail: stop after this many verdicts")
    verdicts.add_argument("--timeout", type=float, help="tail: stop when no verdict came for this many seconds")
    add_connection_options(verdicts)
    verdicts.set_defaults(handler=_verdicts)

    status = subparsers.add_parser("status", help="health of the running stages (from their reports in Redis)")
    add_connection_options(status)
    status.set_defaults(handler=_status)


def _run(args: argparse.Namespace) -> int:
    from lineinspect.shared.streaming.runner import run_stage

    settings = settings_from(args)
    run_stage(args.stage, settings)
    return 0


def camera_sources(args: argparse.Namespace) -> list:
    from lineinspect.services.camera.publisher import Camera
    from lineinspect.services.camera.sources import folder_shots, manifest_shots, synthetic_shots, video_shots

    if args.folder or args.video or args.manifest:
        if args.folder:
            shots = folder_shots(args.folder, args.image_type)
        elif args.video:
            shots = video_shots(args.video, args.image_type)
        else:
            shots = manifest_shots(args.manifest, args.split)
        if args.cameras > 1:
            raise LineinspectError("--cameras > 1 needs the synthetic source; a folder, video or manifest is one camera")
        return [Camera("cam-1", shots)]
    types = [t.strip() for t in args.image_types.split(",") if t.strip()]
    count = args.cameras or len(types)
    return [Camera(f"cam-{i + 1}", synthetic_shots(types[i % len(types)], seed=1000 + i)) for i in range(count)]


def _publish(args: argparse.Namespace) -> int:
    from lineinspect.services.camera.publisher import Publisher
    from lineinspect.shared.streaming.clients import make_producer
    from lineinspect.shared.streaming.topics import Topics, ensure_topics

    settings = settings_from(args)
    cameras = camera_sources(args)
    frames = args.frames if args.frames is not None else (None if (args.folder or args.video or args.manifest) else 100)
    ensure_topics(settings)
    producer = make_producer(settings, "lineinspect-camera")
    try:
        publisher = Publisher(producer, Topics(settings.topic_prefix).frames, settings.line_id, args.encoding)
        with contextlib.ExitStack() as stack:
            on_frame = None
            if args.frames_log is not None:
                log = stack.enter_context(args.frames_log.open("a", encoding="utf-8"))

                def on_frame(frame, shot) -> None:  # noqa: ANN001
                    log.write(json.dumps({"frame_id": frame.frame_id, "camera_id": frame.camera_id,
                                          "image_type": frame.image_type, "source": shot.source, "truth": shot.truth}) + "\n")

            published = publisher.publish(cameras, frames, args.fps or None, on_frame=on_frame)
    finally:
        producer.close()
    print(f"published {published} frames to {Topics(settings.topic_prefix).frames}")
    return 0


def _verdicts(args: argparse.Namespace) -> int:
    import redis

    from lineinspect.shared.line.verdict_cache import VerdictCache

    settings = settings_from(args)
    if args.part_id or args.frame_id or args.latest:
        cache = VerdictCache(redis.Redis.from_url(settings.redis_url), settings.redis_prefix)
        if args.frame_id:
            verdict = cache.get(args.frame_id)
            found = [verdict] if verdict else []
        elif args.part_id:
            found = cache.for_part(args.part_id)
        else:
            found = cache.latest(settings.line_id, args.latest)
        if not found:
            what = f"frame {args.frame_id}" if args.frame_id else (f"part {args.part_id}" if args.part_id else settings.line_id)
            raise LineinspectError(f"no cached verdict for {what} in {settings.redis_url} (verdicts expire after {settings.verdict_ttl_s} s)")
        for verdict in found:
            print(verdict.model_dump_json())
        return 0
    return _tail_verdicts(settings, args.from_beginning, args.limit, args.timeout)


def _tail_verdicts(settings: Settings, from_beginning: bool, limit: int | None, timeout: float | None) -> int:
    import time

    from kafka import KafkaConsumer

    from lineinspect.shared.streaming.in_order import InOrder, first_record, log_start
    from lineinspect.shared.streaming.topics import Topics

    topic = Topics(settings.topic_prefix).verdicts
    consumer = KafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest", fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )
    in_order = InOrder(consumer, log_start(consumer) if from_beginning else first_record)
    shown, last = 0, time.monotonic()
    try:
        while limit is None or shown < limit:
            for record in in_order.records(consumer.poll(timeout_ms=500)):
                sys.stdout.write(record.value.decode() + "\n")
                shown += 1
                last = time.monotonic()
            sys.stdout.flush()
            if timeout is not None and time.monotonic() - last > timeout:
                break
    finally:
        consumer.close()
    return 0


def _status(args: argparse.Namespace) -> int:
    import redis

    from lineinspect.shared.streaming.health import read_health

    settings = settings_from(args)
    reports = read_health(redis.Redis.from_url(settings.redis_url), settings.redis_prefix)
    for report in reports:
        print(json.dumps(report))
    if not reports:
        print(f"no stage reported to {settings.redis_url} in the last few seconds", file=sys.stderr)
        return 1
    return 0

