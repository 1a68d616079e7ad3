"""Verdicts in Redis, so an MES can ask "what was the verdict for part X" without reading Kafka.

Keys (prefix `lineinspect:` by default):
- `verdict:<frame_id>`: the verdict JSON, expiring after `verdict_ttl_s`;
- `part:<part_id>`: sorted set of the part's frame ids by capture time (a part may be seen by
  several cameras);
- `recent:<line_id>`: sorted set of the line's latest frame ids by decision time, trimmed to
  `recent_verdicts`.
Every write is idempotent (SET and ZADD by frame_id), so a verdict written twice after a
restart leaves the same state.
"""

from collections.abc import Sequence

import redis

from lineinspect.schemas import Verdict


class VerdictCache:
    def __init__(self, client: redis.Redis, prefix: str = "lineinspect:", ttl_s: int = 7 * 24 * 3600, recent: int = 1000) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.recent = recent

    def _verdict_key(self, frame_id: str) -> str:
        return f"{self.prefix}verdict:{frame_id}"

    def _part_key(self, part_id: str) -> str:
        return f"{self.prefix}part:{part_id}"

    def _recent_key(self, line_id: str) -> str:
        return f"{self.prefix}recent:{line_id}"

    def put(self, verdicts: Sequence[Verdict]) -> None:
        if not verdicts:
            return
        pipe = self.client.pipeline(transaction=True)
        for verdict in verdicts:
            pipe.set(self._verdict_key(verdict.frame_id), verdict.model_dump_json(), ex=self.ttl_s)
            if verdict.part_id:
                part = self._part_key(verdict.part_id)
                pipe.zadd(part, {verdict.frame_id: verdict.captured_at.timestamp()})
                pipe.expire(part, self.ttl_s)
            recent = self._recent_key(verdict.line_id)
            pipe.zadd(recent, {verdict.frame_id: verdict.decided_at.timestamp()})
            pipe.zremrangebyrank(recent, 0, -self.recent - 1)
        pipe.execute()

    def get(self, frame_id: str) -> Verdict | None:
        value = self.client.get(self._verdict_key(frame_id))
        return Verdict.model_validate_json(value) if value else None

    def _many(self, frame_ids: Sequence[bytes | str]) -> list[Verdict]:
        if not frame_ids:
            return []
        ids = [f.decode() if isinstance(f, bytes) else f for f in frame_ids]
        values = self.client.mget([self._verdict_key(f) for f in ids])
        return [Verdict.model_validate_json(v) for v in values if v]

    def for_part(self, part_id: str) -> list[Verdict]:
        """Every cached verdict of a part, in capture order."""
        return self._many(self.client.zrange(self._part_key(part_id), 0, -1))

    def latest(self, line_id: str, count: int = 20) -> list[Verdict]:
        """The line's most recent verdicts, newest last."""
        return self._many(self.client.zrange(self._recent_key(line_id), -count, -1))

    def count(self, frame_ids: Sequence[str]) -> int:
        """How many of these frames have a cached verdict."""
        return sum(self.client.exists(self._verdict_key(f)) for f in frame_ids)
