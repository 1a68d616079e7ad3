"""The monitor's memory: an SQLite file with the frames it saw (telemetry and verdicts), the
labels engineers gave, what each label says about the line (outcomes), drift checks and
alerts. Every write is idempotent by key, so a batch read twice after a restart changes
nothing. One connection per thread (the drift worker has its own); WAL lets them overlap.
"""

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from lineinspect.schemas import Alert, Label, Telemetry, Verdict
from lineinspect.shared.monitor.features import telemetry_columns

SCHEMA = """
CREATE TABLE IF NOT EXISTS frames (
    frame_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,               -- arrival order at the monitor
    line_id TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    image_type TEXT NOT NULL,
    captured_at REAL NOT NULL,          -- unix seconds
    decision TEXT NOT NULL,
    anomaly_version TEXT NOT NULL,
    mask_version TEXT NOT NULL,
    normalised_score REAL NOT NULL,
    mask_grade INTEGER,
    latency_ms REAL NOT NULL,
    features TEXT NOT NULL,             -- JSON of features.telemetry_columns
    product_mask BLOB                   -- PNG the line used; NULL in whole_frame mode
);
CREATE INDEX IF NOT EXISTS frames_type_seq ON frames (image_type, seq);
CREATE TABLE IF NOT EXISTS verdicts (
    frame_id TEXT PRIMARY KEY,
    part_id TEXT,
    image_type TEXT NOT NULL,
    decision TEXT NOT NULL,
    reasons TEXT NOT NULL,
    decided_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS labels (
    frame_id TEXT PRIMARY KEY,
    labelled_at REAL NOT NULL,
    decision TEXT NOT NULL,
    defect_type TEXT,
    labelled_by TEXT,
    product_mask BLOB
);
CREATE TABLE IF NOT EXISTS outcomes (    -- a labelled frame: what the line said vs the truth
    frame_id TEXT PRIMARY KEY,
    image_type TEXT NOT NULL,
    captured_at REAL NOT NULL,
    anomaly_version TEXT NOT NULL,
    mask_version TEXT NOT NULL,
    verdict TEXT NOT NULL,
    truth TEXT NOT NULL,
    correct INTEGER,                    -- NULL for 'review' verdicts (a person decides)
    false_pass INTEGER NOT NULL,
    false_fail INTEGER NOT NULL,
    iou REAL                            -- NULL without both masks
);
CREATE INDEX IF NOT EXISTS outcomes_type_time ON outcomes (image_type, captured_at);
CREATE TABLE IF NOT EXISTS drift_checks (
    check_id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_type TEXT NOT NULL,
    anomaly_version TEXT NOT NULL,
    checked_at REAL NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    window_start REAL NOT NULL,
    window_end REAL NOT NULL,
    reference TEXT NOT NULL,            -- 'package' or 'stream start'
    drift_detected INTEGER NOT NULL,
    result TEXT NOT NULL,               -- JSON of DriftResult.as_dict
    report_html TEXT
);
CREATE INDEX IF NOT EXISTS drift_type ON drift_checks (image_type, check_id);
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY,
    raised_at REAL NOT NULL,
    kind TEXT NOT NULL,
    image_type TEXT NOT NULL,
    event TEXT NOT NULL                 -- JSON of the Alert
);
"""


def _ts(moment: datetime) -> float:
    return moment.timestamp()


@dataclass(frozen=True)
class FrameWindow:
    """The latest frames of one image type, oldest first."""

    image_type: str
    rows: list[dict[str, Any]]  # feature rows
    first_seq: int
    last_seq: int
    window_start: float
    window_end: float
    anomaly_version: str


class MonitorStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.connection().executescript(SCHEMA)  # commits on its own

    # ---- connections ---------------------------------------------------------------------
    def connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            self._local.connection = connection
        return connection

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        db = self.connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self.connection().execute(sql, params).fetchall()

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    # ---- writes (one batch of events per transaction) -------------------------------------
    def add_telemetry(self, db: sqlite3.Connection, telemetry: Telemetry) -> bool:
        """Store one frame's telemetry; False when it was already stored (a repeat)."""
        seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM frames").fetchone()[0]
        cursor = db.execute(
            "INSERT OR IGNORE INTO frames VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                telemetry.frame_id, seq, telemetry.line_id, telemetry.camera_id, telemetry.image_type,
                _ts(telemetry.captured_at), telemetry.decision, telemetry.model_versions.get("anomaly", ""),
                telemetry.model_versions.get("mask", ""), telemetry.normalised_score, telemetry.mask_grade,
                telemetry.latency_ms, json.dumps(telemetry_columns(telemetry)), telemetry.product_mask,
            ),
        )
        return cursor.rowcount == 1

    def add_verdict(self, db: sqlite3.Connection, verdict: Verdict) -> None:
        db.execute(
            "INSERT OR REPLACE INTO verdicts VALUES (?,?,?,?,?,?)",
            (verdict.frame_id, verdict.part_id, verdict.image_type, verdict.decision,
             json.dumps(list(verdict.reasons)), _ts(verdict.decided_at)),
        )

    def add_label(self, db: sqlite3.Connection, label: Label) -> None:
        """The latest label of a frame wins (an engineer may correct one)."""
        db.execute(
            "INSERT OR REPLACE INTO labels VALUES (?,?,?,?,?,?)",
            (label.frame_id, _ts(label.labelled_at), label.decision, label.defect_type, label.labelled_by, label.product_mask),
        )

    def add_outcome(self, db: sqlite3.Connection, outcome: dict[str, Any]) -> None:
        db.execute(
            "INSERT OR REPLACE INTO outcomes VALUES "
            "(:frame_id,:image_type,:captured_at,:anomaly_version,:mask_version,:verdict,:truth,:correct,"
            ":false_pass,:false_fail,:iou)",
            outcome,
        )

    def add_drift_check(self, check: dict[str, Any]) -> int:
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO drift_checks (image_type, anomaly_version, checked_at, first_seq, last_seq, window_start,"
                " window_end, reference, drift_detected, result, report_html) VALUES"
                " (:image_type,:anomaly_version,:checked_at,:first_seq,:last_seq,:window_start,:window_end,:reference,"
                ":drift_detected,:result,:report_html)",
                check,
            )
            return int(cursor.lastrowid or 0)

    def add_alert(self, alert: Alert) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO alerts VALUES (?,?,?,?,?)",
                (alert.alert_id, _ts(alert.raised_at), alert.kind, alert.image_type, alert.model_dump_json()),
            )

    # ---- reads -----------------------------------------------------------------------------
    def frame_for_label(self, db: sqlite3.Connection, frame_id: str) -> sqlite3.Row | None:
        return db.execute(
            "SELECT f.*, l.decision AS truth, l.product_mask AS true_mask FROM frames f JOIN labels l USING (frame_id)"
            " WHERE f.frame_id = ?",
            (frame_id,),
        ).fetchone()

    def latest_window(self, image_type: str, size: int) -> FrameWindow | None:
        rows = self.query(
            "SELECT seq, captured_at, anomaly_version, features FROM frames WHERE image_type = ?"
            " ORDER BY seq DESC LIMIT ?",
            (image_type, size),
        )
        if not rows:
            return None
        rows = rows[::-1]
        return FrameWindow(
            image_type, [json.loads(r["features"]) for r in rows], rows[0]["seq"], rows[-1]["seq"],
            min(r["captured_at"] for r in rows), max(r["captured_at"] for r in rows), rows[-1]["anomaly_version"],
        )

    def first_frames(self, image_type: str, anomaly_version: str, size: int) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT features FROM frames WHERE image_type = ? AND anomaly_version = ? ORDER BY seq LIMIT ?",
            (image_type, anomaly_version, size),
        )
        return [json.loads(r["features"]) for r in rows]

    def image_types(self) -> list[str]:
        return [r[0] for r in self.query("SELECT DISTINCT image_type FROM frames ORDER BY image_type")]

    def latest_outcomes(self, image_type: str, size: int) -> list[sqlite3.Row]:
        return self.query(
            "SELECT * FROM outcomes WHERE image_type = ? ORDER BY captured_at DESC LIMIT ?", (image_type, size)
        )

    def latest_decisions(self, image_type: str, size: int, before_seq: int | None = None) -> list[str]:
        if before_seq is None:
            rows = self.query("SELECT decision FROM frames WHERE image_type = ? ORDER BY seq DESC LIMIT ?", (image_type, size))
        else:
            rows = self.query(
                "SELECT decision FROM frames WHERE image_type = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
                (image_type, before_seq, size),
            )
        return [r[0] for r in rows]

    def drift_checks(self, image_type: str | None = None, since: float = 0.0) -> list[sqlite3.Row]:
        if image_type is None:
            return self.query("SELECT * FROM drift_checks WHERE checked_at >= ? ORDER BY check_id", (since,))
        return self.query(
            "SELECT * FROM drift_checks WHERE image_type = ? AND checked_at >= ? ORDER BY check_id", (image_type, since)
        )

    def alerts(self, since: float = 0.0) -> list[Alert]:
        rows = self.query("SELECT event FROM alerts WHERE raised_at >= ? ORDER BY raised_at", (since,))
        return [Alert.model_validate_json(r[0]) for r in rows]
