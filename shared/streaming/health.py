"""Health and readiness of a running stage: counts and state in a Redis key that expires when
the stage stops reporting (`lineinspect status` reads them), and optionally an HTTP endpoint
(`/healthz` = alive, `/readyz` = consuming) for orchestrators."""

import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis

from lineinspect.shared.logs import get_logger

REPORT_EVERY_S = 1.0
KEY_TTL_S = 10


def member_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def health_key(prefix: str, stage: str, member: str) -> str:
    return f"{prefix}health:{stage}:{member}"


class StageHealth:
    """The state of one stage member: joining -> consuming -> stopping, with running counts."""

    def __init__(
        self,
        stage: str,
        redis_client: redis.Redis | None = None,
        key_prefix: str = "lineinspect:",
        http_port: int = 0,
    ) -> None:
        self.stage = stage
        self.member = member_name()
        self.state = "starting"
        self.started_at = time.time()
        self._counts = {"consumed": 0, "produced": 0, "deadletters": 0}
        self._model_versions: dict[str, str] = {}
        self.partitions: list[str] = []
        self._redis = redis_client
        self._key = health_key(key_prefix, stage, self.member)
        self._last_report = 0.0
        self._log = get_logger("lineinspect.health", stage=stage)
        self._server: ThreadingHTTPServer | None = None
        if http_port:
            self._serve(http_port)

    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def snapshot(self) -> dict[str, Any]:
        return {
            "stage": self.stage, "member": self.member, "state": self.state,
            "ready": self.state == "consuming", "started_at": self.started_at, "reported_at": time.time(),
            "model_versions": self._model_versions, "partitions": self.partitions, **self._counts,
        }

    def count(self, **increments: int) -> None:
        for name, value in increments.items():
            self._counts[name] += value
        self.update()

    def update(
        self, state: str | None = None, model_versions: dict[str, str] | None = None, partitions: list[str] | None = None
    ) -> None:
        changed = state is not None and state != self.state
        if partitions is not None and partitions != self.partitions:
            changed = True
            self.partitions = partitions
        if state is not None:
            self.state = state
        if model_versions is not None:
            changed = changed or model_versions != self._model_versions
            self._model_versions = dict(model_versions)
        now = time.monotonic()
        if self._redis is None or not (changed or now - self._last_report >= REPORT_EVERY_S):
            return
        self._last_report = now
        try:
            self._redis.set(self._key, json.dumps(self.snapshot()), ex=KEY_TTL_S)
        except redis.RedisError as exc:
            # Health is advisory: a Redis outage must not stop frames (the verdict cache write,
            # which must not be skipped, fails loudly on its own).
            self._log.warning("could not report health to Redis", error=str(exc))

    def close(self) -> None:
        if self._redis is not None:
            try:
                self._redis.delete(self._key)
            except redis.RedisError:
                pass
        if self._server is not None:
            self._server.shutdown()

    def _serve(self, port: int) -> None:
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                snapshot = health.snapshot()
                ok = self.path == "/healthz" or (self.path == "/readyz" and snapshot["ready"])
                if self.path not in ("/healthz", "/readyz"):
                    self.send_error(404, "use /healthz or /readyz")
                    return
                body = json.dumps(snapshot).encode()
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
        threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True).start()


def read_health(redis_client: redis.Redis, key_prefix: str = "lineinspect:") -> list[dict[str, Any]]:
    """Health reports of every stage member that reported in the last few seconds."""
    reports = []
    for key in sorted(redis_client.scan_iter(f"{key_prefix}health:*")):
        value = redis_client.get(key)
        if value:
            reports.append(json.loads(value))
    return reports
