"""The monitor's memory: the frames it saw (telemetry and verdicts), the labels engineers
gave, what each label says about the line (outcomes), drift checks and alerts.

Where: an SQLite file by default (`LINEINSPECT_MONITOR_DB=monitor/monitor.db`), or PostgreSQL
when that setting is a URL (`postgresql+psycopg://user:password@host:5432/db`), so several
monitors and dashboards can share one store. SQLAlchemy Core speaks both; the SQL here is
plain enough for either.

Every write is idempotent by key, so a batch read twice after a restart changes nothing.
Writers take turns (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction-scoped advisory lock),
which keeps the arrival order `seq` gap-free and in order; readers never wait for them
(SQLite in WAL mode, PostgreSQL's MVCC).
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from lineinspect.schemas import Alert, Label, Telemetry, Verdict
from lineinspect.shared.errors import LineinspectError
from lineinspect.shared.monitor.features import telemetry_columns

metadata = sa.MetaData()

frames = sa.Table(
    "frames", metadata,
    sa.Column("frame_id", sa.Text, primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),  # arrival order at the monitor
    sa.Column("line_id", sa.Text, nullable=False),
    sa.Column("camera_id", sa.Text, nullable=False),
    sa.Column("image_type", sa.Text, nullable=False),
    sa.Column("captured_at", sa.Double, nullable=False),  # unix seconds
    sa.Column("decision", sa.Text, nullable=False),
    sa.Column("anomaly_version", sa.Text, nullable=False),
    sa.Column("mask_version", sa.Text, nullable=False),
    sa.Column("normalised_score", sa.Double, nullable=False),
    sa.Column("mask_grade", sa.Integer),
    sa.Column("latency_ms", sa.Double, nullable=False),
    sa.Column("features", sa.Text, nullable=False),  # JSON of features.telemetry_columns
    sa.Column("product_mask", sa.LargeBinary),  # PNG the line used; NULL in whole_frame mode
    sa.Index("frames_type_seq", "image_type", "seq"),
    sa.Index("frames_seq", "seq"),
)
verdicts = sa.Table(
    "verdicts", metadata,
    sa.Column("frame_id", sa.Text, primary_key=True),
    sa.Column("part_id", sa.Text),
    sa.Column("image_type", sa.Text, nullable=False),
    sa.Column("decision", sa.Text, nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),  # JSON list
    sa.Column("decided_at", sa.Double, nullable=False),
)
labels = sa.Table(
    "labels", metadata,
    sa.Column("frame_id", sa.Text, primary_key=True),
    sa.Column("labelled_at", sa.Double, nullable=False),
    sa.Column("decision", sa.Text, nullable=False),
    sa.Column("defect_type", sa.Text),
    sa.Column("labelled_by", sa.Text),
    sa.Column("product_mask", sa.LargeBinary),
)
outcomes = sa.Table(  # a labelled frame: what the line said vs the truth
    "outcomes", metadata,
    sa.Column("frame_id", sa.Text, primary_key=True),
    sa.Column("image_type", sa.Text, nullable=False),
    sa.Column("captured_at", sa.Double, nullable=False),
    sa.Column("anomaly_version", sa.Text, nullable=False),
    sa.Column("mask_version", sa.Text, nullable=False),
    sa.Column("verdict", sa.Text, nullable=False),
    sa.Column("truth", sa.Text, nullable=False),
    sa.Column("correct", sa.Integer),  # NULL for 'review' verdicts (a person decides)
    sa.Column("false_pass", sa.Integer, nullable=False),
    sa.Column("false_fail", sa.Integer, nullable=False),
    sa.Column("iou", sa.Double),  # NULL without both masks
    sa.Index("outcomes_type_time", "image_type", "captured_at"),
)
drift_checks = sa.Table(
    "drift_checks", metadata,
    sa.Column("check_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("image_type", sa.Text, nullable=False),
    sa.Column("anomaly_version", sa.Text, nullable=False),
    sa.Column("checked_at", sa.Double, nullable=False),
    sa.Column("first_seq", sa.BigInteger, nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
    sa.Column("window_start", sa.Double, nullable=False),
    sa.Column("window_end", sa.Double, nullable=False),
    sa.Column("reference", sa.Text, nullable=False),  # 'package' or 'stream start'
    sa.Column("drift_detected", sa.Integer, nullable=False),
    sa.Column("result", sa.Text, nullable=False),  # JSON of DriftResult.as_dict
    sa.Column("report_html", sa.Text),
    sa.Index("drift_type", "image_type", "check_id"),
    sqlite_autoincrement=True,
)
alerts = sa.Table(
    "alerts", metadata,
    sa.Column("alert_id", sa.Text, primary_key=True),
    sa.Column("raised_at", sa.Double, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("image_type", sa.Text, nullable=False),
    sa.Column("event", sa.Text, nullable=False),  # JSON of the Alert
)

# Key of the PostgreSQL advisory lock writers take turns on.
_WRITER_LOCK = 0x6C696E65  # "line"


class StoreError(LineinspectError):
    """The monitor's store cannot be opened or used."""


def store_url(target: str | Path) -> str:
    """A SQLAlchemy URL for `target`: a URL as given, a path as an SQLite file."""
    text = str(target)
    return text if "://" in text else f"sqlite:///{Path(text).expanduser()}"


def is_sqlite_path(target: str | Path) -> bool:
    return "://" not in str(target)


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
    def __init__(self, target: str | Path) -> None:
        self.url = store_url(target)
        if is_sqlite_path(target):
            Path(target).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.engine = _engine(self.url)
        self.dialect = self.engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise StoreError(f"{self.where()}: the monitor keeps its state in SQLite or PostgreSQL, not {self.dialect}")
        # Statements built once: building one per row (SQLAlchemy's cache key of each new
        # statement) cost more CPU than running it.
        self._ignore = {t.name: self._upsert(t, replace=False) for t in (frames, alerts)}
        self._replace = {t.name: self._upsert(t, replace=True) for t in (verdicts, labels, outcomes)}
        self._next_seq = sa.select(sa.func.coalesce(sa.func.max(frames.c.seq), 0) + 1)
        try:
            metadata.create_all(self.engine)
        except OperationalError as exc:
            raise StoreError(
                f"cannot open the monitor store {self.where()}: {exc.orig}; check LINEINSPECT_MONITOR_DB "
                "(an SQLite path, or postgresql+psycopg://user:password@host:5432/db with the server running)"
            ) from None

    @classmethod
    def existing(cls, target: str | Path) -> "MonitorStore":
        """The store a monitor has written, for reports and the dashboard."""
        if is_sqlite_path(target) and not Path(target).expanduser().is_file():
            raise StoreError(f"{target}: no monitor store; run the monitor (`lineinspect run monitor`) or pass --db")
        return cls(target)

    def where(self) -> str:
        """The store's URL without its password, for messages and logs."""
        return sa.make_url(self.url).render_as_string(hide_password=True)

    # ---- connections ---------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One writer's transaction; writers take turns (see the module docstring)."""
        with self.engine.connect() as db:
            if self.dialect == "sqlite":
                # The engine leaves transactions to us (see _engine): take the write lock first.
                db.exec_driver_sql("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.exec_driver_sql("ROLLBACK")
                    raise
                db.exec_driver_sql("COMMIT")
            else:
                with db.begin():
                    db.execute(sa.select(sa.func.pg_advisory_xact_lock(_WRITER_LOCK)))
                    yield db

    def query(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        """Rows of a read (named parameters, `:name`) as dicts."""
        with self.engine.connect() as db:
            return [dict(row) for row in db.execute(sa.text(sql), params).mappings()]

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as db:
            return db.execute(sa.text(sql), params).scalar()

    def close(self) -> None:
        self.engine.dispose()

    # ---- writes (one batch of events per transaction) -------------------------------------
    def _upsert(self, table: sa.Table, replace: bool) -> Any:
        """INSERT of a whole row that keeps (replace=False; RETURNING the key when the row was
        new: psycopg reports no rowcount here) or replaces the stored row with the same key."""
        keys = list(table.primary_key.columns)
        insert = (sqlite.insert if self.dialect == "sqlite" else postgresql.insert)(table)
        if not replace:
            return insert.on_conflict_do_nothing(index_elements=keys).returning(*keys)
        return insert.on_conflict_do_update(
            index_elements=keys, set_={c.name: insert.excluded[c.name] for c in table.columns if not c.primary_key}
        )

    def _insert_or_ignore(self, db: Connection, table: sa.Table, values: dict[str, Any]) -> bool:
        """True when the row was new."""
        return db.execute(self._ignore[table.name], values).first() is not None

    def _insert_or_replace(self, db: Connection, table: sa.Table, values: dict[str, Any]) -> None:
        db.execute(self._replace[table.name], values)

    def add_telemetry(self, db: Connection, telemetry: Telemetry) -> bool:
        """Store one frame's telemetry; False when it was already stored (a repeat)."""
        seq = db.execute(self._next_seq).scalar_one()
        return self._insert_or_ignore(db, frames, {
            "frame_id": telemetry.frame_id, "seq": seq, "line_id": telemetry.line_id, "camera_id": telemetry.camera_id,
            "image_type": telemetry.image_type, "captured_at": _ts(telemetry.captured_at), "decision": telemetry.decision,
            "anomaly_version": telemetry.model_versions.get("anomaly", ""),
            "mask_version": telemetry.model_versions.get("mask", ""), "normalised_score": telemetry.normalised_score,
            "mask_grade": telemetry.mask_grade, "latency_ms": telemetry.latency_ms,
            "features": json.dumps(telemetry_columns(telemetry)), "product_mask": telemetry.product_mask,
        })

    def add_verdict(self, db: Connection, verdict: Verdict) -> None:
        self._insert_or_replace(db, verdicts, {
            "frame_id": verdict.frame_id, "part_id": verdict.part_id, "image_type": verdict.image_type,
            "decision": verdict.decision, "reasons": json.dumps(list(verdict.reasons)), "decided_at": _ts(verdict.decided_at),
        })

    def add_label(self, db: Connection, label: Label) -> None:
        """The latest label of a frame wins (an engineer may correct one)."""
        self._insert_or_replace(db, labels, {
            "frame_id": label.frame_id, "labelled_at": _ts(label.labelled_at), "decision": label.decision,
            "defect_type": label.defect_type, "labelled_by": label.labelled_by, "product_mask": label.product_mask,
        })

    def add_outcome(self, db: Connection, outcome: dict[str, Any]) -> None:
        self._insert_or_replace(db, outcomes, outcome)

    def add_drift_check(self, check: dict[str, Any]) -> int:
        values = {c.name: check[c.name] for c in drift_checks.columns if c.name != "check_id"}
        with self.transaction() as db:
            return int(db.execute(drift_checks.insert().values(values).returning(drift_checks.c.check_id)).scalar_one())

    def add_alert(self, alert: Alert) -> None:
        with self.transaction() as db:
            self._insert_or_ignore(db, alerts, {
                "alert_id": alert.alert_id, "raised_at": _ts(alert.raised_at), "kind": alert.kind,
                "image_type": alert.image_type, "event": alert.model_dump_json(),
            })

    # ---- reads -----------------------------------------------------------------------------
    def frame_for_label(self, db: Connection, frame_id: str) -> dict[str, Any] | None:
        row = db.execute(sa.text(
            "SELECT f.*, l.decision AS truth, l.product_mask AS true_mask FROM frames f JOIN labels l"
            " ON l.frame_id = f.frame_id WHERE f.frame_id = :frame_id"
        ), {"frame_id": frame_id}).mappings().first()
        return None if row is None else dict(row)

    def latest_window(self, image_type: str, size: int) -> FrameWindow | None:
        rows = self.query(
            "SELECT seq, captured_at, anomaly_version, features FROM frames WHERE image_type = :image_type"
            " ORDER BY seq DESC LIMIT :size",
            image_type=image_type, size=size,
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
            "SELECT features FROM frames WHERE image_type = :image_type AND anomaly_version = :version"
            " ORDER BY seq LIMIT :size",
            image_type=image_type, version=anomaly_version, size=size,
        )
        return [json.loads(r["features"]) for r in rows]

    def frame_ids(self, image_type: str, first_seq: int, last_seq: int) -> list[str]:
        rows = self.query(
            "SELECT frame_id FROM frames WHERE image_type = :image_type AND seq BETWEEN :first AND :last ORDER BY seq",
            image_type=image_type, first=first_seq, last=last_seq,
        )
        return [r["frame_id"] for r in rows]

    def image_types(self) -> list[str]:
        return [r["image_type"] for r in self.query("SELECT DISTINCT image_type FROM frames ORDER BY image_type")]

    def outcomes(self, since: float = 0.0, image_type: str | None = None) -> list[dict[str, Any]]:
        """Labelled frames captured since `since`, oldest first."""
        if image_type is None:
            return self.query("SELECT * FROM outcomes WHERE captured_at >= :since ORDER BY captured_at", since=since)
        return self.query(
            "SELECT * FROM outcomes WHERE captured_at >= :since AND image_type = :image_type ORDER BY captured_at",
            since=since, image_type=image_type,
        )

    def latest_outcomes(self, image_type: str, size: int) -> list[dict[str, Any]]:
        return self.query(
            "SELECT * FROM outcomes WHERE image_type = :image_type ORDER BY captured_at DESC LIMIT :size",
            image_type=image_type, size=size,
        )

    def labelled_span(self) -> float:
        """Seconds between the first and the last labelled frame."""
        row = self.query("SELECT MIN(captured_at) AS first, MAX(captured_at) AS last FROM outcomes")[0]
        return 0.0 if row["first"] is None else float(row["last"] - row["first"])

    def latest_frames(self, image_type: str, size: int, before_seq: int | None = None) -> list[dict[str, Any]]:
        """seq, decision and captured_at of the latest frames of a type (before `before_seq`), newest first."""
        return self.query(
            "SELECT seq, decision, captured_at FROM frames WHERE image_type = :image_type AND seq < :before"
            " ORDER BY seq DESC LIMIT :size",
            image_type=image_type, before=before_seq if before_seq is not None else 2**62, size=size,
        )

    def drift_checks(self, image_type: str | None = None, since: float = 0.0) -> list[dict[str, Any]]:
        if image_type is None:
            return self.query("SELECT * FROM drift_checks WHERE checked_at >= :since ORDER BY check_id", since=since)
        return self.query(
            "SELECT * FROM drift_checks WHERE image_type = :image_type AND checked_at >= :since ORDER BY check_id",
            image_type=image_type, since=since,
        )

    def latest_drift_checks(self) -> list[dict[str, Any]]:
        """The latest check of every image type, with the latest report of a check that found
        drift (`last_fired`: report_html, checked_at; None when none did) and the latest report
        of any check (`last_report`, the same keys and drift_detected)."""
        latest = self.query(
            "SELECT d.* FROM drift_checks d JOIN (SELECT image_type, MAX(check_id) AS id FROM drift_checks"
            " GROUP BY image_type) m ON d.check_id = m.id ORDER BY d.image_type"
        )
        for check in latest:
            fired = self.query(
                "SELECT report_html, checked_at FROM drift_checks WHERE image_type = :image_type AND drift_detected = 1"
                " AND report_html IS NOT NULL ORDER BY check_id DESC LIMIT 1", image_type=check["image_type"],
            )
            check["last_fired"] = fired[0] if fired else None
            reported = self.query(
                "SELECT report_html, checked_at, drift_detected FROM drift_checks WHERE image_type = :image_type"
                " AND report_html IS NOT NULL ORDER BY check_id DESC LIMIT 1", image_type=check["image_type"],
            )
            check["last_report"] = reported[0] if reported else None
        return latest

    def counts(self) -> dict[str, int]:
        """Rows per table, for summaries."""
        return {table.name: int(self.scalar(f"SELECT COUNT(*) FROM {table.name}")) for table in metadata.sorted_tables}

    def alerts(self, since: float = 0.0) -> list[Alert]:
        rows = self.query("SELECT event FROM alerts WHERE raised_at >= :since ORDER BY raised_at", since=since)
        return [Alert.model_validate_json(r["event"]) for r in rows]


def _engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    # AUTOCOMMIT hands transactions to `transaction` (BEGIN IMMEDIATE: SQLite's deferred BEGIN
    # would let two writers deadlock on upgrading their locks); reads run outside one.
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"timeout": 30.0})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine
