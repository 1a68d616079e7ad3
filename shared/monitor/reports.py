"""Reports engineers read, under the reports directory with an index:
  accuracy/accuracy.json + accuracy.html  per image type and model version, per time window,
                                          with the mask-IoU timeline (plotly)
  drift/<stem>.html + .json               Evidently's report of one drift check
  index.html                              links to everything there
"""

import html
import json
import shutil
from pathlib import Path
from typing import Any

import plotly
import plotly.graph_objects as go

from lineinspect.shared.monitor.accuracy import Bucket, accuracy_table, per_image_type
from lineinspect.shared.monitor.store import MonitorStore

# plotly.js from the plotly wheel: pages load it from beside them (no CDN on a plant network).
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def accuracy_figures(store: MonitorStore, bucket: Bucket, image_type: str | None, since: float) -> dict[str, Any]:
    table = accuracy_table(store, bucket, image_type, since)
    totals = per_image_type(store, since)
    if image_type is not None:
        totals = {k: v for k, v in totals.items() if k == image_type}
    return {"window": bucket, "since": since, "per_image_type": totals, "timeline": table}


def _iou_timeline(table: list[dict[str, Any]]) -> go.Figure:
    figure = go.Figure()
    for image_type in sorted({row["image_type"] for row in table}):
        rows = [row for row in table if row["image_type"] == image_type and row["mask_iou"] is not None]
        figure.add_trace(go.Scatter(x=[r["window"] for r in rows], y=[r["mask_iou"] for r in rows],
                                    mode="lines+markers", name=f"{image_type} IoU"))
        rows = [row for row in table if row["image_type"] == image_type and row["accuracy"] is not None]
        figure.add_trace(go.Scatter(x=[r["window"] for r in rows], y=[r["accuracy"] for r in rows],
                                    mode="lines+markers", line={"dash": "dot"}, name=f"{image_type} accuracy"))
    figure.update_layout(title="Mask IoU and decision accuracy per image type", yaxis={"range": [0, 1.02]},
                         xaxis_title="window", height=420, margin={"l": 40, "r": 20, "t": 50, "b": 40})
    return figure


def timeline_html(table: list[dict[str, Any]], plotly_js: str | bool = "directory") -> str:
    """The timeline as an HTML fragment; `plotly_js`: plotly's include_plotlyjs (a URL, or
    'directory' for a plotly.min.js beside the page)."""
    if not table:
        return "<p>No labelled frames yet: the timeline appears once labels arrive (`lineinspect label`).</p>"
    return _iou_timeline(table).to_html(full_html=False, include_plotlyjs=plotly_js)


def write_accuracy_report(figures: dict[str, Any], out_dir: Path, name: str = "accuracy") -> Path:
    """out_dir/accuracy/<name>.html and .json (plotly.min.js beside them), and the index."""
    folder = out_dir / "accuracy"
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / PLOTLY_JS.name).is_file():
        shutil.copyfile(PLOTLY_JS, folder / PLOTLY_JS.name)
    (folder / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    columns = ["labelled", "decided", "reviewed", "accuracy", "false_pass", "false_fail", "mask_iou", "iou_n"]
    head = "".join(f"<th>{c}</th>" for c in ["image type", *columns])
    body = "".join(
        f"<tr><td>{html.escape(t)}</td>" + "".join(f"<td>{v.get(c) if v.get(c) is not None else '-'}</td>" for c in columns) + "</tr>"
        for t, v in figures["per_image_type"].items()
    )
    timeline_head = "".join(f"<th>{c}</th>" for c in ["window", "image type", "anomaly version", *columns])
    timeline_body = "".join(
        f"<tr><td>{r['window']}</td><td>{html.escape(r['image_type'])}</td><td>{html.escape(r['anomaly_version'])}</td>"
        + "".join(f"<td>{r.get(c) if r.get(c) is not None else '-'}</td>" for c in columns) + "</tr>"
        for r in figures["timeline"]
    )
    plot = timeline_html(figures["timeline"])
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>lineinspect accuracy</title>
<style>body{{font-family:sans-serif;margin:24px}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style>
</head><body><h1>Accuracy per image type</h1>
<p>From labels joined to the line's verdicts by frame id. Accuracy counts decided frames; 'review' verdicts are counted as reviewed.</p>
<table><tr>{head}</tr>{body}</table>
<h2>Over time ({figures['window']})</h2>{plot}
<table><tr>{timeline_head}</tr>{timeline_body}</table></body></html>"""
    path = folder / f"{name}.html"
    path.write_text(page)
    write_index(out_dir)
    return path


def write_index(out_dir: Path) -> Path:
    links = sorted(p.relative_to(out_dir) for p in out_dir.rglob("*.html") if p.name != "index.html")
    items = "".join(f'<li><a href="{html.escape(str(p))}">{html.escape(str(p))}</a></li>' for p in links)
    path = out_dir / "index.html"
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>lineinspect reports</title></head>"
                    f"<body><h1>lineinspect reports</h1><ul>{items}</ul></body></html>")
    return path
