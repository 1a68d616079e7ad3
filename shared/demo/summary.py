"""What a run of the line amounts to: verdicts collected from the topic, matched to the frames
published, with accuracy against known ground truth, throughput and end-to-end latency."""

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from kafka import KafkaConsumer

from lineinspect.schemas import DeadLetter, Verdict
from lineinspect.shared.config import Settings
from lineinspect.shared.streaming.clients import fetch_size_limits
from lineinspect.shared.streaming.in_order import InOrder, log_start
from lineinspect.shared.streaming.topics import Topics

CORRECT = {("normal", "pass"), ("anomaly", "fail")}


@dataclass
class LineRun:
    """Frames published (with their truth when known) and verdicts and dead letters seen."""

    truth: dict[str, str | None] = field(default_factory=dict)
    published_at: dict[str, float] = field(default_factory=dict)
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    verdict_seen_at: dict[str, float] = field(default_factory=dict)
    deadletter_records: list[DeadLetter] = field(default_factory=list)
    duplicates: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def deadletters(self) -> int:
        return len(self.deadletter_records)

    def published(self, frame_id: str, truth: str | None) -> None:
        with self.lock:
            self.truth[frame_id] = truth
            self.published_at[frame_id] = time.monotonic()

    def pending(self) -> int:
        """Frames published here that have neither a verdict nor a dead letter yet (the topics
        may also hold verdicts of frames published by others; those do not count)."""
        with self.lock:
            dead = {letter.frame_id for letter in self.deadletter_records}
            return sum(1 for f in self.truth if f not in self.verdicts and f not in dead)

    def decisions(self) -> dict[str, int]:
        with self.lock:
            values = [v.decision for v in self.verdicts.values()]
        return {name: values.count(name) for name in ("pass", "fail", "review")}

    def summary(self, started: float, finished: float) -> dict[str, Any]:
        with self.lock:
            verdicts = {f: v for f, v in self.verdicts.items() if f in self.truth}
            latencies = np.array([v.latency_ms for v in verdicts.values()], dtype=float)
            labelled = [(self.truth[f], v.decision) for f, v in verdicts.items() if self.truth[f] is not None]
            decided = [(t, d) for t, d in labelled if d != "review"]
            seen = [self.verdict_seen_at[f] for f in verdicts]
            first_published = min(self.published_at.values(), default=started)
        span = (max(seen) - first_published) if seen else 0.0
        decisions = {name: sum(v.decision == name for v in verdicts.values()) for name in ("pass", "fail", "review")}
        reviews = [v for v in verdicts.values() if v.decision == "review"]
        return {
            "frames_published": len(self.truth),
            "verdicts": len(verdicts),
            "deadletters": self.deadletters,
            "duplicate_verdicts": self.duplicates,
            "decisions": decisions,
            # Of the frames with known truth that got pass or fail: how many were right.
            "accuracy": (sum(pair in CORRECT for pair in decided) / len(decided)) if decided else None,
            "accuracy_n": len(decided),
            "review_fraction": (decisions["review"] / len(verdicts)) if verdicts else None,
            # Why frames went to review: a grade-3 mask, or else a score inside the review band.
            "review_causes": {
                "untrustworthy_mask": sum(v.mask_grade == 3 for v in reviews),
                "score_near_threshold": sum(v.mask_grade != 3 for v in reviews),
            },
            "frames_per_second": (len(verdicts) / span) if span > 0 else None,
            "sustained_frames_per_second": sustained_rate(seen),
            "p50_ms": float(np.percentile(latencies, 50)) if len(latencies) else None,
            "p99_ms": float(np.percentile(latencies, 99)) if len(latencies) else None,
            "wall_seconds": finished - started,
        }


def sustained_rate(seen_at: list[float], share: float = 0.8) -> float | None:
    """Verdicts per second in the middle `share` of a run (from the 10th to the 90th percentile
    verdict by default): the line's steady rate, without the start, when the first frames are
    still on their way through the stages, nor the end, when the last ones leave them."""
    if len(seen_at) < 10:
        return None
    times = np.sort(np.asarray(seen_at, dtype=float))
    first = int(round(len(times) * (1 - share) / 2))
    last = len(times) - 1 - first
    return (last - first) / (times[last] - times[first]) if times[last] > times[first] else None


class VerdictCollector(threading.Thread):
    """Reads `verdicts` and `deadletter` from the start (no consumer group) into a LineRun."""

    def __init__(self, settings: Settings, run: LineRun) -> None:
        super().__init__(name="verdict-collector", daemon=True)
        topics = Topics(settings.topic_prefix)
        self.topics = topics
        self.run_record = run
        self.consumer = KafkaConsumer(
            topics.verdicts, topics.deadletter,
            bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=settings.fetch_max_wait_ms,
            **fetch_size_limits(settings),
        )
        self.in_order = InOrder(self.consumer, log_start(self.consumer))
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                for record in self.in_order.records(self.consumer.poll(timeout_ms=200)):
                    self._take(record.topic, record.value)
        finally:
            self.consumer.close()

    def _take(self, topic: str, value: bytes) -> None:
        run = self.run_record
        if topic == self.topics.deadletter:
            letter = DeadLetter.model_validate_json(value)
            with run.lock:
                run.deadletter_records.append(letter)
            return
        verdict = Verdict.model_validate_json(value)
        with run.lock:
            if verdict.frame_id in run.verdicts:
                run.duplicates += 1
            else:
                run.verdicts[verdict.frame_id] = verdict
                run.verdict_seen_at[verdict.frame_id] = time.monotonic()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
