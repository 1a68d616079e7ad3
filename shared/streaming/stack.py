"""The line as processes: an embedded broker and Redis when none is configured, and each
stage as its own `lineinspect run <stage>` process. `lineinspect demo`, `lineinspect up` and
the integration tests start it; stopping it stops (and waits for) every process it started."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from lineinspect.services import STAGES
from lineinspect.shared.config import Settings
from lineinspect.shared.logs import get_logger
from lineinspect.shared.streaming.embedded import EmbeddedBroker, EmbeddedRedis

STOP_TIMEOUT_S = 20.0


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as LINEINSPECT_ variables, so child processes see exactly these values."""
    env = {}
    for name, value in settings.model_dump().items():
        env[f"LINEINSPECT_{name.upper()}"] = str(value)
    return env


@dataclass
class StageProcess:
    stage: str
    process: subprocess.Popen
    log_path: Path | None = None

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass
class LineStack:
    """Broker, Redis and stage processes of one line."""

    settings: Settings
    log_dir: Path | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    broker: EmbeddedBroker | None = None
    redis: EmbeddedRedis | None = None
    stages: list[StageProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.log = get_logger("lineinspect.stack", stage="stack")

    # ---- infrastructure --------------------------------------------------------------------
    def start_infrastructure(self, embedded_broker: bool, embedded_redis: bool) -> "LineStack":
        updates: dict[str, object] = {}
        if embedded_broker:
            self.broker = EmbeddedBroker().start()
            updates["kafka_bootstrap"] = self.broker.bootstrap
        if embedded_redis:
            self.redis = EmbeddedRedis().start()
            updates["redis_url"] = self.redis.url
        self.settings = self.settings.model_copy(update=updates)
        return self

    # ---- stages ----------------------------------------------------------------------------
    def start_stage(self, stage: str, threads: int | None = None) -> StageProcess:
        env = {**os.environ, **settings_env(self.settings), **self.extra_env}
        if threads is not None:
            env["LINEINSPECT_TORCH_THREADS"] = str(threads)
        env.setdefault("LINEINSPECT_LOG_FORMAT", "json")
        log_path = None
        output = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{stage}-{len(self.stages)}.log"
            output = log_path.open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "lineinspect.shared.cli.main", "run", stage],
            env=env, stdout=output, stderr=output, start_new_session=True,
        )
        started = StageProcess(stage, process, log_path)
        self.stages.append(started)
        self.log.info("stage started", service=stage, pid=process.pid, log=str(log_path) if log_path else None)
        return started

    def start_stages(self, threads: int | None = None, services: tuple[str, ...] = STAGES) -> None:
        for stage in services:
            self.start_stage(stage, threads)

    def check_stages(self) -> None:
        """Raise when a stage process died (its log says why)."""
        for stage in self.stages:
            code = stage.process.poll()
            if code is not None:
                where = f"; see {stage.log_path}" if stage.log_path else ""
                raise RuntimeError(f"stage {stage.stage} (pid {stage.pid}) exited with status {code}{where}")

    def stop_stage(self, stage: StageProcess, kill: bool = False) -> int:
        if stage.process.poll() is None:
            stage.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                stage.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.log.warning("stage did not stop in time; killing it", service=stage.stage, pid=stage.pid)
                stage.process.kill()
                stage.process.wait()
        if stage in self.stages:
            self.stages.remove(stage)
        return stage.process.returncode

    def stop(self) -> None:
        for stage in list(self.stages):
            if stage.process.poll() is None:
                stage.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for stage in list(self.stages):
            try:
                stage.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stage.process.kill()
                stage.process.wait()
        self.stages.clear()
        if self.redis is not None:
            self.redis.stop()
        if self.broker is not None:
            self.broker.stop()

    def __enter__(self) -> "LineStack":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
