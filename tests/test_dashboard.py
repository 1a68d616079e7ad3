"""The dashboard on a real Redis and a filled monitor store: counts, accuracy, alerts, the
latest fail/review frames with their pictures, version comparison; and, where Chromium is
installed, the page as a real headless browser renders it (with a screenshot)."""

import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from litestar.testing import TestClient

from lineinspect.schemas import Frame, Verdict
from lineinspect.services.anomaly.heatmap import heatmap_png
from lineinspect.shared.config import Settings, get_settings
from lineinspect.shared.images import encode_png
from lineinspect.shared.line.overlays import RECENT, OverlayStore, draw_overlay
from lineinspect.shared.line.verdict_cache import VerdictCache
from lineinspect.shared.monitor.alerts import AlertBook, Finding
from lineinspect.shared.monitor.dashboard import create_app
from lineinspect.shared.monitor.labels import make_label
from lineinspect.shared.monitor.store import MonitorStore
from test_monitor import T0, ingest, square_mask, telemetry

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture
def filled(tmp_path: Path, redis_url: str) -> Iterator[Settings]:
    settings = get_settings().model_copy(update={
        "redis_url": redis_url, "topic_prefix": f"d{uuid.uuid4().hex[:8]}.", "line_id": "line-7",
        "monitor_db": str(tmp_path / "monitor.db"), "reports_dir": tmp_path / "reports",
    })
    store = MonitorStore(settings.monitor_db)
    wrong = square_mask(start=14, end=30)
    events = []
    for i in range(20):
        events += [telemetry(f"disc-{i}", "pass", "disc", minutes=i), make_label(f"disc-{i}", "pass", product_mask=square_mask())]
        events += [telemetry(f"plate-{i}", "fail" if i % 4 == 0 else "pass", "plate", minutes=i),
                   make_label(f"plate-{i}", "pass", product_mask=wrong)]
    ingest(store, events)
    client = redis.Redis.from_url(redis_url)
    client.hset(f"{settings.redis_prefix}monitor:counts", mapping={"line-7|disc|pass": 20, "line-7|plate|pass": 15,
                                                                    "line-7|plate|fail": 5})
    store.add_alert(AlertBook("line-7").alert(Finding(
        "iou_drop", "plate", "mask_iou", 0.39, 0.8, T0.timestamp(), T0.timestamp() + 60, "plate masks are off: retrain")))
    # one failed frame with its picture, as the reviewer leaves it
    image = np.full((64, 64, 3), 90, np.uint8)
    heat = np.zeros((64, 64), np.float32)
    heat[20:30, 20:30] = 1.8
    frame = Frame.model_validate({
        "frame_id": "plate-0", "line_id": "line-7", "camera_id": "cam-2", "image_type": "plate",
        "captured_at": T0.isoformat(), "published_at": T0.isoformat(), "image": encode_png(image),
        "mask": {"mask": encode_png(square_mask(64, 8, 56)), "mode": "model", "area_fraction": 0.56, "area_px": 2304,
                 "confidence": 0.9, "model_version": "mask-v1", "latency_ms": 5.0},
        "anomaly": {"score": 2.0, "threshold": 1.0, "normalised_score": 2.0, "decision": "anomalous",
                    "heatmap": heatmap_png(heat), "heatmap_scale": 2.0, "model_version": "anomaly-v1", "latency_ms": 9.0,
                    "regions": [{"x1": 20, "y1": 20, "x2": 30, "y2": 30, "score": 1.8, "area_px": 100}]},
    })
    verdict = Verdict(frame_id="plate-0", line_id="line-7", camera_id="cam-2", image_type="plate", captured_at=T0,
                      decided_at=T0, decision="fail", reasons=["anomaly score 2.0 x threshold"], score=2.0, threshold=1.0,
                      normalised_score=2.0, mask_grade=1, model_versions={"mask": "mask-v1", "anomaly": "anomaly-v1"}, latency_ms=50.0)
    VerdictCache(client, settings.redis_prefix).put([verdict])
    OverlayStore(client, settings.redis_prefix).put([(frame, draw_overlay(image, frame))])
    evaluations = settings.reports_dir / "evaluations"
    evaluations.mkdir(parents=True)
    for version, iou in (("mask-old", 0.91), ("mask-new", 0.95)):
        (evaluations / f"{version}.json").write_text(json.dumps({
            "version": version, "iou_mean": iou, "per_image_type": {"disc": {"iou_mean": iou, "iou_min": 0.8, "n": 9}}}))
    yield settings
    for key in client.scan_iter(f"{settings.redis_prefix}*"):
        client.delete(key)


def test_the_page_and_the_api_show_the_lines_state(filled: Settings) -> None:
    with TestClient(app=create_app(filled)) as client:
        summary = client.get("/api/summary").json()
        assert summary["live"]["line-7"]["plate"] == {"pass": 15, "fail": 5}
        per_type = summary["accuracy"]["per_image_type"]
        assert per_type["disc"]["mask_iou"] == 1.0 and per_type["plate"]["mask_iou"] < 0.5
        assert per_type["plate"]["false_fail"] == 5
        assert [a["kind"] for a in summary["alerts"]] == ["iou_drop"]
        assert [p["frame_id"] for p in summary["problems"]] == ["plate-0"]
        assert summary["mask_evaluations"]["versions"] == ["mask-new", "mask-old"]

        page = client.get("/")
        assert page.status_code == 200 and "line line-7" in page.text
        for section in ('id="live"', 'id="accuracy"', 'id="alerts"', 'id="problems"', 'id="versions"'):
            assert section in page.text
        assert "plate masks are off: retrain" in page.text

        picture = client.get("/overlay/plate-0")
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
        assert picture.content[:2] == b"\xff\xd8"
        missing = client.get("/overlay/nope")
        assert missing.status_code == 404
        assert client.get("/assets/plotly.min.js").status_code == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium) - browser test skipped")
def test_a_real_browser_renders_the_dashboard(filled: Settings, tmp_path: Path) -> None:
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(filled), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/"
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=3000"]  # < the page refresh (5 s)
        dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout
        assert "line line-7" in dom and "plate masks are off: retrain" in dom
        assert 'class="plot-container plotly"' in dom or "plotly-graph-div" in dom, "the timeline was drawn by plotly.js"
        screenshot = Path(filled.reports_dir) / "dashboard.png"
        subprocess.run([CHROMIUM, *flags, "--window-size=1280,1600", f"--screenshot={screenshot}", url],
                       capture_output=True, timeout=120, check=True)
        assert screenshot.is_file() and screenshot.stat().st_size > 20_000
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_only_the_pictures_of_a_lines_latest_problem_frames_are_kept(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    store = OverlayStore(client, f"o{uuid.uuid4().hex[:8]}:")
    image = np.full((32, 32, 3), 90, np.uint8)

    def frame(index: int, line_id: str = "line-1") -> Frame:
        return Frame.model_validate({
            "frame_id": f"{'f' if line_id == 'line-1' else 'g'}-{index}", "line_id": line_id, "camera_id": "cam-1", "image_type": "plate",
            "captured_at": T0.isoformat(), "image": encode_png(image),
        })

    for start in range(0, RECENT + 30, 20):  # batches, as the reviewer puts them
        store.put([(frame(i), b"jpeg of f-%d" % i) for i in range(start, min(start + 20, RECENT + 30))])
    store.put([(frame(0, "line-2"), b"jpeg of the other line")])
    store.put([(frame(40), b"jpeg of f-40 again")])  # a repeat moves to the front, and is not deleted

    latest = store.recent("line-1", RECENT + 30)
    assert len(latest) == RECENT
    assert latest[:2] == ["f-40", f"f-{RECENT + 29}"]
    assert store.get("f-40") == b"jpeg of f-40 again"
    assert all(store.get(f"f-{i}") is not None for i in range(30, RECENT + 30))
    assert all(store.get(f"f-{i}") is None for i in range(30))  # fell off the list
    assert store.recent("line-2") == ["g-0"] and store.get("g-0") == b"jpeg of the other line"
    assert len(client.keys(f"{store.prefix}overlay:*")) == RECENT + 1
