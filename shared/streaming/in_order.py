"""Reading each partition's offsets in order, with no holes, from a broker that can show a later
record before an earlier one.

Tansu, the embedded broker, gives a produced batch its offset first and stores it after; its
fetch returns whatever offsets are stored. While two producers write one partition, a reader at
the tail can be handed offset N+1 while N is still being stored, and kafka-python then moves
past N for good. Measured here: a reader tailing one partition missed 10 of 30 6-MiB records
written beside a stream of small ones, and CI lost the dead letter of an oversized frame (the
mask finder's 5 MB letter and the anomaly stage's small one share a partition).

Apache Kafka shows a record only after every earlier one, and the line's topics have neither
compaction nor transactions, so their offsets have no holes: a hole means "not stored yet".
`InOrder` hands out each partition's records up to the first hole, rewinds the consumer to the
hole and lets the next poll fetch it again. A hole still open after `patience_s` is taken as
real (a compacted or transactional topic, whose offsets do have holes) and passed with a
warning.
"""

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError

from lineinspect.shared.logs import get_logger

HOLE_PATIENCE_S = 10.0
REFETCH_PAUSE_S = 0.005  # a hole lasts as long as the broker takes to store one batch

StartOffset = Callable[[TopicPartition], int | None]


def group_start(consumer: KafkaConsumer) -> StartOffset:
    """Where a group member starts a partition it was given: the group's committed offset, or
    the log's beginning when nothing was committed or retention removed the committed record
    (the line's consumers reset to earliest)."""

    def start(tp: TopicPartition) -> int | None:
        committed = consumer.committed(tp)
        beginning = consumer.beginning_offsets([tp])[tp]
        return beginning if committed is None else max(committed, beginning)

    return start


def log_start(consumer: KafkaConsumer) -> StartOffset:
    """Where a reader without a group that reads from the earliest offset starts."""
    return lambda tp: consumer.beginning_offsets([tp])[tp]


def first_record(_: TopicPartition) -> None:
    """Start from whatever record comes first (a reader that joins at the log's end)."""
    return None


class InOrder:
    """One consumer's polled records, each partition handed out in offset order up to its first hole."""

    def __init__(
        self, consumer: KafkaConsumer, start: StartOffset, patience_s: float = HOLE_PATIENCE_S, log: Any = None,
    ) -> None:
        self.consumer = consumer
        self.start = start
        self.patience_s = patience_s
        self.log = log or get_logger("lineinspect.in_order")
        self._next: dict[TopicPartition, int] = {}
        self._hole_seen: dict[tuple[TopicPartition, int], float] = {}
        self.refetches = 0

    def records(self, polled: Mapping[TopicPartition, Sequence[ConsumerRecord]]) -> list[ConsumerRecord]:
        """The polled records each partition can hand out in order; rewinds a partition to its first hole."""
        taken: list[ConsumerRecord] = []
        rewound = False
        for tp, batch in polled.items():
            expected = self._next.get(tp)
            if expected is None:
                expected = self._start_of(tp)
            for record in batch:
                if expected is not None and record.offset > expected and not self._hole_is_real(tp, expected, record.offset):
                    self.log.debug("offset not stored yet; fetching again", topic=tp.topic, partition=tp.partition,
                                   missing=expected, arrived=record.offset)
                    self.consumer.seek(tp, expected)
                    self.refetches += 1
                    rewound = True
                    break
                if self._hole_seen:
                    self._hole_seen.pop((tp, record.offset), None)  # filled
                taken.append(record)
                expected = record.offset + 1
            if expected is not None:
                self._next[tp] = expected
        if rewound:
            time.sleep(REFETCH_PAUSE_S)
        return taken

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions this reader gave up or was given anew: where they start is asked again."""
        for tp in partitions:
            self._next.pop(tp, None)
        self._hole_seen = {key: seen for key, seen in self._hole_seen.items() if key[0] in self._next}

    def _start_of(self, tp: TopicPartition) -> int | None:
        try:
            return self.start(tp)
        except KafkaError as exc:  # the broker's answer is a nicety here, not worth a stage
            self.log.warning("could not ask where a partition starts; reading from its first record",
                             topic=tp.topic, partition=tp.partition, error=repr(exc))
            return None

    def _hole_is_real(self, tp: TopicPartition, missing: int, arrived: int) -> bool:
        now = time.monotonic()
        first_seen = self._hole_seen.setdefault((tp, missing), now)
        if now - first_seen < self.patience_s:
            return False
        del self._hole_seen[(tp, missing)]
        self.log.warning(
            "offsets never appeared; reading on past them", topic=tp.topic, partition=tp.partition,
            missing_from=missing, missing_to=arrived - 1, waited_s=round(now - first_seen, 1),
        )
        return True
