"""`lineinspect label | report | dashboard`: give the monitor ground truth, render its reports, watch it.

  label --frame-id ID --decision pass|fail [--defect-type T] [--mask PNG]   one label
  label --from-manifest M.jsonl --frames-log F.jsonl                        replay ground truth
  report accuracy|drift [--image-type T] [--since ...] --out DIR [--json]
  dashboard [--port 8050]                                                  the live page
"""

import argparse
import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from lineinspect.shared.cli.line import add_connection_options, settings_from
from lineinspect.shared.errors import LineinspectError


def register(subparsers: argparse._SubParsersAction) -> None:
    label = subparsers.add_parser("label", help="publish ground truth for frames to the monitor (topic labels)")
    one = label.add_argument_group("one frame")
    one.add_argument("--frame-id", help="the frame to label")
    one.add_argument("--decision", choices=("pass", "fail"), help="the true decision: pass = good part")
    one.add_argument("--defect-type", help="defect type of a failed part")
    one.add_argument("--mask", type=Path, help="true product mask (image at the frame's resolution, white = product)")
    one.add_argument("--note", help="free comment")
    many = label.add_argument_group("replay")
    many.add_argument("--from-manifest", type=Path, help="label every frame of --frames-log that came from this manifest")
    many.add_argument("--frames-log", type=Path, help="the log `lineinspect publish --frames-log` wrote")
    label.add_argument("--by", help="who labels (kept with the label)")
    add_connection_options(label)
    label.set_defaults(handler=_label)

    report = subparsers.add_parser("report", help="render the monitor's accuracy or drift report from its store")
    report.add_argument("what", choices=("accuracy", "drift"))
    report.add_argument("--image-type", help="only this image type")
    report.add_argument("--since", help="only frames since: an ISO time (2026-11-28T08:00) or a span back from now (90m, 12h, 7d)")
    report.add_argument("--window", choices=("minute", "hour", "day"), default="hour", help="accuracy: time window of the timeline")
    report.add_argument("--out", type=Path, help="reports directory (default: LINEINSPECT_REPORTS_DIR)")
    report.add_argument("--db", help="monitor store: SQLite path or PostgreSQL URL (default: LINEINSPECT_MONITOR_DB)")
    report.add_argument("--json", action="store_true", help="print the figures as JSON")
    add_connection_options(report, packages=True)
    report.set_defaults(handler=_report)

    dashboard = subparsers.add_parser("dashboard", help="serve the monitor's dashboard (counts, accuracy, drift, alerts, frames)")
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    dashboard.add_argument("--port", type=int, default=8050, help="port (default 8050)")
    dashboard.add_argument("--db", help="monitor store: SQLite path or PostgreSQL URL (default: LINEINSPECT_MONITOR_DB)")
    dashboard.add_argument("--reports", type=Path, help="reports directory (default: LINEINSPECT_REPORTS_DIR)")
    add_connection_options(dashboard)
    dashboard.set_defaults(handler=_dashboard)


def parse_since(text: str | None) -> float:
    if not text:
        return 0.0
    span = re.fullmatch(r"(\d+(?:\.\d+)?)([mhd])", text.strip())
    if span:
        return time.time() - float(span.group(1)) * {"m": 60, "h": 3600, "d": 86400}[span.group(2)]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise LineinspectError(f"--since {text!r}: give an ISO time (2026-11-28T08:00) or a span such as 90m, 12h, 7d") from None
    return moment.timestamp()


def _label(args: argparse.Namespace) -> int:
    from lineinspect.shared.images import read_mask
    from lineinspect.shared.monitor.labels import labels_from_manifest, make_label
    from lineinspect.shared.streaming.clients import make_producer
    from lineinspect.shared.streaming.topics import Topics, ensure_topics

    if args.from_manifest:
        if not args.frames_log:
            raise LineinspectError("--from-manifest needs --frames-log: the frame ids come from the publisher's log")
        labels = labels_from_manifest(args.from_manifest, args.frames_log, args.by)
    else:
        if not (args.frame_id and args.decision):
            raise LineinspectError("give --frame-id and --decision, or --from-manifest with --frames-log")
        mask = read_mask(args.mask) if args.mask else None
        labels = [make_label(args.frame_id, args.decision, args.defect_type, mask, args.by, args.note)]
    settings = settings_from(args)
    ensure_topics(settings)
    topic = Topics(settings.topic_prefix).labels
    producer = make_producer(settings, "lineinspect-label")
    try:
        futures = [producer.send(topic, key=label.frame_id.encode(), value=label.model_dump_json().encode()) for label in labels]
        producer.flush()
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close()
    print(f"published {len(labels)} label(s) to {topic}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from lineinspect.shared.monitor.reports import accuracy_figures, write_accuracy_report, write_index
    from lineinspect.shared.monitor.store import MonitorStore

    settings = settings_from(args)
    db = args.db or settings.monitor_db
    out = args.out or settings.reports_dir
    store = MonitorStore.existing(db)
    since = parse_since(args.since)
    if args.what == "accuracy":
        figures = accuracy_figures(store, args.window, args.image_type, since)
        path = write_accuracy_report(figures, out)
    else:
        figures, path = _drift_report(store, settings.model_copy(update={"reports_dir": out}), args.image_type)
        write_index(out)
    print(json.dumps(figures, indent=2) if args.json else f"wrote {path}", file=sys.stdout)
    return 0


def _drift_report(store, settings, image_type: str | None):  # noqa: ANN001, ANN202
    from lineinspect.shared.monitor.checks import DriftChecker
    from lineinspect.shared.monitor.reference import References

    checker = DriftChecker(store, References(settings.packages, store, settings.reference_fallback), settings, lambda _: None)
    figures: dict[str, Any] = {}
    reasons = []
    for name in [image_type] if image_type else store.image_types():
        check = checker.check(name, write_report=True, raise_alerts=False)
        if check is None:
            reasons.append(checker.not_ready(name) or f"{name}: not checked")
            figures[name] = None
        else:
            figures[name] = {**json.loads(check["result"]), "report": check["report_html"], "reference": check["reference"]}
    if not figures or all(v is None for v in figures.values()):
        raise LineinspectError("no drift check could run: " + ("; ".join(reasons) or "the store has no frames yet"))
    return figures, settings.reports_dir / "index.html"


def _dashboard(args: argparse.Namespace) -> int:
    from lineinspect.shared.monitor.dashboard import serve
    from lineinspect.shared.monitor.store import MonitorStore

    settings = settings_from(args)
    updates = {k: v for k, v in (("monitor_db", args.db), ("reports_dir", args.reports)) if v is not None}
    settings = settings.model_copy(update=updates)
    MonitorStore.existing(settings.monitor_db).close()  # a clear error now, not at the first page
    print(f"dashboard at http://{args.host}:{args.port}/ (Ctrl-C stops it)", file=sys.stderr)
    serve(settings, args.host, args.port)
    return 0
