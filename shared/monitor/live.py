"""Live counts per line, image type and decision in Redis: the monitor writes them, the
dashboard reads them."""

from collections import Counter

import redis


class LiveView:
    """Counts per line and image type in Redis, for the dashboard and `lineinspect status`."""

    def __init__(self, redis_client: redis.Redis, prefix: str) -> None:
        self.redis = redis_client
        self.key = f"{prefix}monitor:counts"

    def count(self, decisions: Counter) -> None:
        if not decisions:
            return
        pipe = self.redis.pipeline()
        for (line_id, image_type, decision), n in decisions.items():
            pipe.hincrby(self.key, f"{line_id}|{image_type}|{decision}", n)
        pipe.execute()

    def counts(self) -> dict[str, dict[str, dict[str, int]]]:
        out: dict[str, dict[str, dict[str, int]]] = {}
        for field, value in self.redis.hgetall(self.key).items():
            line_id, image_type, decision = field.decode().split("|")
            out.setdefault(line_id, {}).setdefault(image_type, {})[decision] = int(value)
        return out
