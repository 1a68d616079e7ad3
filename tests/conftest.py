"""Fixtures shared by the test modules: run the CLI in-process, write small image files,
find the real data sets (skipping when they are absent), and real servers: a Kafka-protocol
broker, Redis, and PostgreSQL for the monitor's store."""

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis
import sqlalchemy as sa

from lineinspect.shared.cli.main import main
from lineinspect.shared.config import get_settings
from lineinspect.shared.logs import configure_logging
from lineinspect.shared.streaming.embedded import EmbeddedBroker, EmbeddedRedis


@pytest.fixture(autouse=True)
def logs_to_current_stderr() -> None:
    """structlog keeps the stderr it was configured with; `main()` under capsys leaves it a
    closed stream, so each test starts by pointing logs at the stderr of the moment."""
    configure_logging()


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run `lineinspect ARGS...` in-process; returns (exit code, stdout, stderr)."""

    def run(*args: object) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def write_image() -> Callable[..., Path]:
    """Write a small image (grey level `value`) or mask (True pixels from `marked`) file."""

    def write(path: Path, value: int = 128, size: int = 16, marked: bool | None = None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        if marked is None:
            image = np.full((size, size, 3), value, np.uint8)
        else:
            image = np.zeros((size, size), np.uint8)
            if marked:
                image[4:8, 4:8] = 255
        assert cv2.imwrite(str(path), image)
        return path

    return write


@pytest.fixture
def real_data() -> Callable[[str], Path]:
    """The folder of a real data set under the data dir, or skip the test when it is absent."""

    def folder(name: str) -> Path:
        path = get_settings().data_dir / name
        if not path.is_dir():
            pytest.skip(f"real data set {path} is absent (set LINEINSPECT_DATA_DIR; see shared/data/DATA.md)")
        return path

    return folder


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    """A real Kafka-protocol broker (Tansu) on a free port, for one test module."""
    with EmbeddedBroker() as started:
        yield started


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """The machine's Redis when it answers (CI has one at 127.0.0.1:6379), else one started here."""
    url = get_settings().redis_url
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.ConnectionError:
        with EmbeddedRedis() as started:
            yield started.url
        return
    yield url


# The machine's PostgreSQL (CI has one at 127.0.0.1:5432 with trust auth and a `test` database).
POSTGRES_URL = os.environ.get("LINEINSPECT_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")


def postgres_server() -> str:
    """The test PostgreSQL's URL; skips the test when it does not answer."""
    engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL} ({str(exc.orig).strip()}); start one or set LINEINSPECT_TEST_POSTGRES_URL")
    finally:
        engine.dispose()
    return POSTGRES_URL


@contextmanager
def _monitor_store_target(kind: str, folder: Path) -> Iterator[str]:
    """Where a test's monitor keeps its state: an SQLite file in `folder`, or a schema of its own
    on the test PostgreSQL (dropped afterwards)."""
    if kind == "sqlite":
        yield str(folder / "monitor.db")
        return
    base = postgres_server()
    schema = f"lineinspect_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as db:
        db.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with admin.connect() as db:
            db.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def monitor_store_target() -> Callable[[str, Path], Any]:
    """`with monitor_store_target("sqlite" | "postgresql", folder) as target:` a monitor store
    of the test's own (LINEINSPECT_MONITOR_DB); PostgreSQL skips the test when none answers."""
    return _monitor_store_target
