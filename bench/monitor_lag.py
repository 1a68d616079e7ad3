"""Does the monitor keep up with the line? Telemetry (with product masks) and labels at a
steady rate into a real `lineinspect run monitor` process on an embedded broker and Redis;
how long each frame waits before the monitor has stored it, over the run.

    python bench/monitor_lag.py [--fps 25] [--seconds 120] [--json L.json]

Figures: `lag_p50_ms`, `lag_p99_ms`, `lag_max_ms`, `lag_first_quarter_p50_ms` and
`lag_last_quarter_p50_ms` (a growing lag shows as the last above the first), `frames`,
`drift_checks`, `false_drift_alarms` (the stream does not change, so every drift alert is false),
`monitor_cpu_seconds` (ingestion) and `drift_checker_cpu_seconds` (its checker process). Features come from real synthetic frames (30% defective) of three image
types; the reference is the stream's start (no packages), as for a package without one.
"""

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from itertools import cycle
from pathlib import Path

import numpy as np
import psutil
import redis

from common import machine, print_figures
from lineinspect.schemas import Telemetry
from lineinspect.services.camera.sources import synthetic_shots
from lineinspect.shared.config import get_settings
from lineinspect.shared.images import encode_png
from lineinspect.shared.line.telemetry import image_embedding, image_stats
from lineinspect.shared.logs import configure_logging
from lineinspect.shared.monitor.labels import make_label
from lineinspect.shared.monitor.store import MonitorStore
from lineinspect.shared.streaming.clients import make_producer
from lineinspect.shared.streaming.health import read_health
from lineinspect.shared.streaming.stack import LineStack
from lineinspect.shared.streaming.topics import Topics, ensure_topics

IMAGE_TYPES = ("disc", "plate", "bracket")


def frames_of(count: int, size: int) -> list[tuple[str, object]]:
    """`count` distinct shots per image type, interleaved (reused round-robin for long runs)."""
    streams = {t: synthetic_shots(t, seed=4242, size=size) for t in IMAGE_TYPES}
    shots = []
    for _ in range(count):
        for image_type in IMAGE_TYPES:
            shot = next(streams[image_type])
            shots.append((image_type, shot, image_stats(shot.image), image_embedding(shot.image), encode_png(shot.product_mask)))
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels (the product mask travels as PNG)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    configure_logging()
    work = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    (work / "packages").mkdir()
    settings = get_settings().model_copy(update={
        "topic_prefix": f"bm{int(time.time())}.", "packages": work / "packages", "session_timeout_ms": 2000,
        "monitor_db": str(work / "monitor.db"), "reports_dir": work / "reports",
    })
    total = int(args.fps * args.seconds)
    shots = frames_of(400, args.size)
    with LineStack(settings, log_dir=work / "logs") as stack:
        try:
            redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1).ping()
            local_redis = False
        except redis.ConnectionError:
            local_redis = True
        stack.start_infrastructure(embedded_broker=True, embedded_redis=local_redis)
        ensure_topics(stack.settings)
        topics = Topics(stack.settings.topic_prefix)
        monitor = stack.start_stage("monitor", threads=1)
        store = MonitorStore(stack.settings.monitor_db)
        producer = make_producer(stack.settings, "bench-monitor")
        process = psutil.Process(monitor.pid)
        sent_at: dict[str, float] = {}
        lags: list[tuple[float, float]] = []  # (sent time, lag ms)
        stored_seen = 0

        def collect() -> None:
            nonlocal stored_seen
            rows = store.query("SELECT frame_id FROM frames WHERE seq > :seen ORDER BY seq", seen=stored_seen)
            now = time.monotonic()
            for row in rows:
                sent = sent_at.get(row["frame_id"])
                if sent is not None:
                    lags.append((sent, (now - sent) * 1000.0))
            stored_seen += len(rows)

        # The monitor consumes once it joined its group; its drift checker starts beside it
        # (a few seconds of imports), which the figures should not count as lag.
        ready_client = redis.Redis.from_url(stack.settings.redis_url)
        deadline = time.monotonic() + 60
        while not any(r["ready"] for r in read_health(ready_client, stack.settings.redis_prefix) if r["stage"] == "monitor"):
            if time.monotonic() > deadline:
                raise RuntimeError("the monitor did not start consuming within 60 s; see its log in " + str(work / "logs"))
            time.sleep(0.2)
        time.sleep(5.0)
        began = time.monotonic()
        source = cycle(shots)
        for index in range(total):
            due = began + index / args.fps
            while (delay := due - time.monotonic()) > 0:
                if delay > 0.02:
                    collect()
                time.sleep(min(delay, 0.02))
            image_type, shot, stats, embedding, mask = next(source)
            frame_id = f"{image_type}-{index:06d}"
            telemetry = Telemetry(
                frame_id=frame_id, line_id="line-1", camera_id=f"cam-{image_type}", image_type=image_type,
                captured_at=datetime.now(UTC), image_stats=stats, embedding=embedding,
                anomaly_score=0.5, normalised_score=float(np.clip(np.random.normal(0.6 if shot.truth == "normal" else 1.6, 0.15), 0, 5)),
                mask_area_fraction=float(shot.product_mask.mean()), mask_confidence=0.95, mask_grade=1,
                decision="pass" if shot.truth == "normal" else "fail", latency_ms=120.0,
                model_versions={"mask": "m", "anomaly": "a", "reviewer": "r"}, product_mask=mask,
            )
            sent_at[frame_id] = time.monotonic()
            producer.send(topics.telemetry, key=frame_id.encode(), value=telemetry.model_dump_json().encode())
            label = make_label(frame_id, "pass" if shot.truth == "normal" else "fail", product_mask=shot.product_mask)
            producer.send(topics.labels, key=frame_id.encode(), value=label.model_dump_json().encode())
        producer.flush()
        deadline = time.monotonic() + 120
        while stored_seen < total and time.monotonic() < deadline:
            collect()
            time.sleep(0.05)
        cpu = process.cpu_times()
        checker_cpu = sum(sum(c.cpu_times()[:2]) for c in process.children(recursive=True))
        stack.check_stages()
        checks = store.drift_checks()
        alerts = [a for a in store.alerts() if a.kind == "drift"]
        producer.close()

    ordered = [lag for _, lag in sorted(lags)]
    quarter = max(1, len(ordered) // 4)
    figures = {
        "machine": machine(),
        "fps": args.fps,
        "frames": total,
        "stored": stored_seen,
        "lag_p50_ms": float(np.percentile(ordered, 50)),
        "lag_p99_ms": float(np.percentile(ordered, 99)),
        "lag_max_ms": float(np.max(ordered)),
        "lag_first_quarter_p50_ms": float(np.percentile(ordered[:quarter], 50)),
        "lag_last_quarter_p50_ms": float(np.percentile(ordered[-quarter:], 50)),
        "lag_p99_by_quarter_ms": [round(float(np.percentile(ordered[i * quarter:(i + 1) * quarter], 99)), 1) for i in range(4)],
        "drift_checks": len(checks),
        "drift_check_seconds_mean": float(np.mean([json.loads(c["result"])["seconds"] for c in checks])) if checks else 0.0,
        "false_drift_alarms": len(alerts),
        "monitor_cpu_seconds": round(cpu.user + cpu.system, 1),
        "drift_checker_cpu_seconds": round(checker_cpu, 1),
        "work_dir": str(work),
    }
    print_figures(figures, args.json)


if __name__ == "__main__":
    main()
