"""`lineinspect dashboard`: one page engineers keep open, served locally (Litestar + uvicorn).

It shows, refreshed every few seconds: live counts per line and image type (Redis), mask IoU
and decision accuracy per image type with their timeline, the latest drift check per image
type with a link to its Evidently report, alerts, the latest `fail` and `review` frames with
heatmap and mask drawn on them, and the mask finder's per-type IoU of each package version
evaluated (`lineinspect evaluate mask ... --json <reports>/evaluations/<name>.json`), so a new
model is judged on every image type before it ships. `/api/summary` gives the same as JSON.
"""

import json
import time
from pathlib import Path
from typing import Any

import redis
from jinja2 import Environment, PackageLoader, select_autoescape
from litestar import Litestar, MediaType, Response, get
from litestar.exceptions import NotFoundException
from litestar.static_files import create_static_files_router

from lineinspect.shared.config import Settings
from lineinspect.shared.line.overlays import OverlayStore
from lineinspect.shared.line.verdict_cache import VerdictCache
from lineinspect.shared.monitor.accuracy import bucket_for_span
from lineinspect.shared.monitor.live import LiveView
from lineinspect.shared.monitor.reports import PLOTLY_JS, accuracy_figures, timeline_html
from lineinspect.shared.monitor.store import MonitorStore

REFRESH_S = 5


def mask_evaluations(folder: Path) -> dict[str, Any]:
    """{versions: [...], rows: [{image_type, <version>: iou_mean}]} from evaluation JSON files."""
    by_version: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            figures = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(figures, dict) and "per_image_type" in figures and "iou_mean" in figures:
            by_version[figures.get("version") or path.stem] = figures["per_image_type"]
    types = sorted({t for table in by_version.values() for t in table})
    rows = [{"image_type": t, **{v: table.get(t, {}).get("iou_mean") for v, table in by_version.items()}} for t in types]
    return {"versions": list(by_version), "rows": rows}


def report_link(path: str | None, reports_dir: Path) -> str | None:
    if not path:
        return None
    try:
        return "/reports/" + str(Path(path).resolve().relative_to(reports_dir.resolve()))
    except ValueError:
        return None


def dashboard_data(settings: Settings, store: MonitorStore, client: redis.Redis, recent: int = 12) -> dict[str, Any]:
    """Everything the page shows, as plain data."""
    reports_dir = Path(settings.reports_dir)
    live = LiveView(client, settings.redis_prefix).counts()
    drift = {}
    for check in store.latest_drift_checks():
        result = json.loads(check["result"])
        fired = check["last_fired"]
        drift[check["image_type"]] = {
            "drift_detected": bool(check["drift_detected"]), "checked_at": check["checked_at"],
            "drift_share": result.get("drift_share"), "drifted_columns": result.get("drifted_columns", []),
            "embedding_drift": result.get("embedding_drift"), "reference": check["reference"],
            "anomaly_version": check["anomaly_version"],
            "last_drift_report": report_link(fired["report_html"], reports_dir) if fired else None,
            "last_drift_at": fired["checked_at"] if fired else None,
            "latest_report": report_link(check["last_report"]["report_html"], reports_dir) if check["last_report"] else None,
            "latest_report_at": check["last_report"]["checked_at"] if check["last_report"] else None,
        }
    overlays = OverlayStore(client, settings.redis_prefix)
    verdicts = VerdictCache(client, settings.redis_prefix)
    problems = []
    for frame_id in overlays.recent(settings.line_id, recent):
        verdict = verdicts.get(frame_id)
        if verdict is not None:
            problems.append({
                "frame_id": frame_id, "decision": verdict.decision, "image_type": verdict.image_type,
                "reasons": verdict.reasons, "normalised_score": round(verdict.normalised_score, 3),
                "mask_grade": verdict.mask_grade, "overlay": f"/overlay/{frame_id}",
            })
    alerts = [
        {**a.model_dump(mode="json"), "report_url": report_link(a.report_url, reports_dir)}
        for a in store.alerts()[-30:][::-1]
    ]
    return {
        "line_id": settings.line_id, "generated_at": time.time(), "live": live,
        "accuracy": accuracy_figures(store, bucket_for_span(store.labelled_span()), None, 0.0), "drift": drift, "alerts": alerts,
        "problems": problems, "mask_evaluations": mask_evaluations(reports_dir / "evaluations"),
    }


def create_app(settings: Settings) -> Litestar:
    store = MonitorStore(settings.monitor_db)
    client = redis.Redis.from_url(settings.redis_url)
    reports_dir = Path(settings.reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    templates = Environment(loader=PackageLoader("lineinspect.shared.monitor", "."), autoescape=select_autoescape())
    templates.filters["datetime"] = lambda seconds: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
    page = templates.get_template("dashboard.html.j2")

    @get("/", media_type=MediaType.HTML, sync_to_thread=True)
    def index() -> str:
        data = dashboard_data(settings, store, client)
        return page.render(data=data, refresh_s=REFRESH_S, report_every_min=round(settings.drift_report_every_s / 60),
                           timeline=timeline_html(data["accuracy"]["timeline"], "/assets/plotly.min.js"))

    @get("/api/summary", sync_to_thread=True)
    def summary() -> dict[str, Any]:
        return dashboard_data(settings, store, client)

    @get("/overlay/{frame_id:str}", sync_to_thread=True)
    def overlay(frame_id: str) -> Response[bytes]:
        picture = OverlayStore(client, settings.redis_prefix).get(frame_id)
        if picture is None:
            raise NotFoundException(f"no picture of frame {frame_id} (only fail and review frames have one; they expire)")
        return Response(picture, media_type="image/jpeg")

    @get("/assets/plotly.min.js", media_type="application/javascript", sync_to_thread=True)
    def plotly_js() -> bytes:
        return PLOTLY_JS.read_bytes()

    return Litestar(
        route_handlers=[index, summary, overlay, plotly_js,
                        create_static_files_router(path="/reports", directories=[reports_dir], html_mode=True)],
    )


def serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
