"""The consume-process-produce loop, written once and run by every stage.

Each turn of the loop, in this order, is what makes delivery at-least-once:
  1. poll a batch of records (at most `batch_size`) from the stage's input topic, each
     partition in offset order with no holes (`in_order.py`: the embedded broker can show a
     later record before an earlier one);
  2. decode each; what cannot be decoded, validated or is too large becomes a dead letter;
  3. process the decoded items as one batch (one model call); when the batch raises, each
     item is tried alone, `retries` more times, and an item that still fails is dead-lettered;
  4. produce every output and dead letter, then flush and check each delivery;
  5. let the stage act on what was delivered (the reviewer writes its verdicts to Redis);
  6. commit the batch's offsets, and only now.
A crash anywhere before step 6 means the batch is read again after a restart: outputs may
repeat, never go missing, and verdicts are keyed by frame_id so repeats are harmless.
On SIGTERM the loop finishes the batch in hand, commits it, and leaves the group.
"""

import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError
from kafka.structs import OffsetAndMetadata

from lineinspect.shared.config import Settings
from lineinspect.shared.logs import get_logger
from lineinspect.shared.streaming.deadletter import Refused, dead_letter, frame_id_of
from lineinspect.shared.streaming.health import StageHealth
from lineinspect.shared.streaming.in_order import InOrder, group_start

FLUSH_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Outgoing:
    """One message a stage sends on."""

    topic: str
    key: bytes | None
    value: bytes


class Stage(Protocol):
    """What a service plugs into the loop: how to read one record and how to process a batch."""

    name: str
    input_topics: list[str]

    def decode(self, record: ConsumerRecord) -> Any:
        """The record as the stage's item; raise `Refused` for input it cannot use."""

    def process(self, items: Sequence[Any]) -> list[list[Outgoing] | Refused]:
        """Outputs of each item, in order, or `Refused` for an item that must be dead-lettered."""

    def delivered(self, items: Sequence[Any], outputs: Sequence[list[Outgoing]]) -> None:
        """Called after the outputs of `items` are acknowledged by the broker, before the commit."""

    def between_batches(self) -> None:
        """A point where no batch is in flight: where a stage swaps to a new model version."""

    def model_versions(self) -> dict[str, str]:
        """Versions of the models the stage runs now, for health reports."""


class DeliveryError(RuntimeError):
    """The broker did not acknowledge an output: the batch is not committed and the stage stops,
    so it is processed again after a restart."""


def log_ids(item: Any) -> dict[str, Any]:
    frame = getattr(item, "frame", item)
    return {"frame_id": getattr(frame, "frame_id", None), "camera_id": getattr(frame, "camera_id", None)}


class OnRebalance(ConsumerRebalanceListener):
    """Reports a member's partitions the moment the group changes them, inside `poll`, so
    health never shows partitions this member has already given up; and has the in-order
    reader ask again where each newly given partition starts."""

    def __init__(self, health: StageHealth, in_order: InOrder, log: Any) -> None:
        self.health = health
        self.in_order = in_order
        self.log = log

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.in_order.forget(revoked)
        self.health.update(state="joining", partitions=[])

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.in_order.forget(assigned)
        partitions = sorted(f"{tp.topic}:{tp.partition}" for tp in assigned)
        # Ready once the group gave this member its partitions (none: an idle spare).
        self.health.update(state="consuming" if partitions else "joining", partitions=partitions)
        self.log.info("partitions assigned", partitions=partitions)


class StageLoop:
    def __init__(
        self,
        stage: Stage,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        settings: Settings,
        deadletter_topic: str,
        health: StageHealth | None = None,
        max_input_bytes: int | None = None,
    ) -> None:
        self.stage = stage
        self.consumer = consumer
        self.producer = producer
        self.settings = settings
        self.deadletter_topic = deadletter_topic
        self.health = health or StageHealth(stage.name)
        # Camera frames are held to max_frame_bytes; later topics carry a mask and heatmap too.
        self.max_input_bytes = max_input_bytes or settings.max_frame_bytes
        self.log = get_logger("lineinspect.loop", stage=stage.name)
        self._stopping = threading.Event()
        self.in_order = InOrder(consumer, group_start(consumer), log=self.log)
        self.consumer.subscribe(topics=list(stage.input_topics), listener=OnRebalance(self.health, self.in_order, self.log))

    # ---- control -------------------------------------------------------------------------
    def stop(self, *_: object) -> None:
        """Finish the batch in hand, commit it and leave the group (also the SIGTERM handler)."""
        self._stopping.set()

    def stop_on_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    # ---- the loop ------------------------------------------------------------------------
    def run(self, max_idle_s: float | None = None) -> None:
        """Run until stopped (or, with `max_idle_s`, until no record came for that long)."""
        self.health.update(state="joining", model_versions=self.stage.model_versions())
        self.log.info("stage starting", input_topics=self.stage.input_topics, model_versions=self.stage.model_versions())
        last_record_at = time.monotonic()
        try:
            while not self._stopping.is_set():
                self.stage.between_batches()
                self.health.update(model_versions=self.stage.model_versions())
                polled = self.consumer.poll(
                    timeout_ms=self.settings.poll_timeout_ms, max_records=self.settings.batch_size
                )
                records = self.in_order.records(polled)
                if records:
                    self.run_batch(records)
                    last_record_at = time.monotonic()
                else:
                    self.health.update()
                    if max_idle_s is not None and time.monotonic() - last_record_at > max_idle_s:
                        break
        finally:
            self.health.update(state="stopping")
            close = getattr(self.stage, "close", None)  # a stage with its own threads or files
            if close is not None:
                close()
            self.log.info("stage stopping: leaving the group", **self.health.counts())
            self.consumer.close(autocommit=False)
            self.producer.close(timeout=10)
            self.health.close()

    def run_batch(self, records: Sequence[ConsumerRecord]) -> None:
        dead: list[tuple[ConsumerRecord, Refused]] = []
        decoded: list[tuple[ConsumerRecord, Any]] = []
        for record in records:
            try:
                decoded.append((record, self.decode(record)))
            except Refused as refused:
                dead.append((record, refused))

        results = self.process([item for _, item in decoded])
        delivered_items: list[Any] = []
        delivered_outputs: list[list[Outgoing]] = []
        outgoing: list[Outgoing] = []
        for (record, item), result in zip(decoded, results):
            if isinstance(result, Refused):
                dead.append((record, result))
            else:
                delivered_items.append(item)
                delivered_outputs.append(result)
                outgoing.extend(result)
        for record, refused in dead:
            letter = dead_letter(record, self.stage.name, refused)
            self.log.warning(
                "input refused; sent to the dead-letter topic",
                frame_id=letter.frame_id, error_type=refused.error_type, reason=letter.reason,
                topic=record.topic, partition=record.partition, offset=record.offset,
                deadletter_topic=self.deadletter_topic,
            )
            outgoing.append(Outgoing(self.deadletter_topic, record.key, letter.model_dump_json().encode()))

        self.send_and_flush(outgoing)
        if delivered_items:
            self.stage.delivered(delivered_items, delivered_outputs)
        self.commit(records)
        self.health.count(consumed=len(records), produced=len(delivered_items), deadletters=len(dead))
        for item in delivered_items:
            self.log.debug("frame done", **log_ids(item))

    def decode(self, record: ConsumerRecord) -> Any:
        size = len(record.value or b"")
        if size > self.max_input_bytes:
            raise Refused(
                "oversized",
                f"message of {size} bytes exceeds the limit of {self.max_input_bytes} bytes "
                "(LINEINSPECT_MAX_FRAME_BYTES); send a smaller or JPEG-encoded image, or raise the limit",
                frame_id_of(record.value) if size <= 4 * self.max_input_bytes else None,
            )
        return self.stage.decode(record)

    def process(self, items: list[Any]) -> list[list[Outgoing] | Refused]:
        if not items:
            return []
        try:
            return self.stage.process(items)
        except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the line
            if len(items) == 1 and self.settings.retries == 0:
                return [self.failed(items[0], exc, 1)]
            self.log.warning("batch failed; trying its frames one by one", error=repr(exc), frames=len(items))
        return [self.process_alone(item) for item in items]

    def process_alone(self, item: Any) -> list[Outgoing] | Refused:
        attempts = 1 + self.settings.retries
        for attempt in range(1, attempts + 1):
            try:
                return self.stage.process([item])[0]
            except Exception as exc:  # noqa: BLE001
                self.log.warning("frame failed", attempt=attempt, of=attempts, error=repr(exc), **log_ids(item))
                if attempt == attempts:
                    return self.failed(item, exc, attempts)
        raise AssertionError("unreachable")

    def failed(self, item: Any, exc: Exception, attempts: int) -> Refused:
        ids = log_ids(item)
        return Refused(
            "model",
            f"{self.stage.name} raised {type(exc).__name__}: {exc} ({attempts} attempt(s)); "
            "check the frame and the stage's model package, then publish the frame again",
            ids["frame_id"],
        )

    def send_and_flush(self, outgoing: Sequence[Outgoing]) -> None:
        futures = [self.producer.send(out.topic, key=out.key, value=out.value) for out in outgoing]
        self.producer.flush(timeout=FLUSH_TIMEOUT_S)
        for out, future in zip(outgoing, futures):
            try:
                future.get(timeout=FLUSH_TIMEOUT_S)
            except Exception as exc:
                raise DeliveryError(
                    f"{self.stage.name}: the broker did not take a {len(out.value)}-byte message for {out.topic} "
                    f"({exc!r}); the batch was not committed and will be processed again after a restart"
                ) from exc

    def commit(self, records: Sequence[ConsumerRecord]) -> None:
        next_offsets: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            next_offsets[tp] = max(next_offsets.get(tp, 0), record.offset + 1)
        try:
            self.consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in next_offsets.items()})
        except CommitFailedError as exc:
            # The group rebalanced while the batch ran: its new owner reads it again, and the
            # repeated outputs are harmless because they are keyed by frame_id.
            self.log.warning("commit refused after a rebalance; the batch will be processed again", error=str(exc))
