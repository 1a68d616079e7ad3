"""The shared consume-process-produce loop on a real broker, with a tiny stage and no models:
failing frames are retried then dead-lettered, and a crash before the commit loses nothing."""

import time
import uuid
from collections.abc import Iterator, Sequence

import pytest
from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord

from lineinspect.schemas import DeadLetter
from lineinspect.shared.config import Settings, get_settings
from lineinspect.shared.streaming.clients import make_consumer, make_producer
from lineinspect.shared.streaming.deadletter import Refused
from lineinspect.shared.streaming.embedded import EmbeddedBroker
from lineinspect.shared.streaming.loop import Outgoing, StageLoop
from lineinspect.shared.streaming.topics import Topics, ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


class Echo:
    """Upper-cases each message; raises on 'boom', refuses 'refuse', and can fail once after delivery."""

    name = "echo"

    def __init__(self, topics: Topics, crash_after_delivery: bool = False) -> None:
        self.topics = topics
        self.input_topics = [topics.frames]
        self.attempts: dict[bytes, int] = {}
        self.crash_after_delivery = crash_after_delivery

    def decode(self, record: ConsumerRecord) -> bytes:
        if record.value == b"refuse":
            raise Refused("validation", "told to refuse it")
        return record.value

    def process(self, items: Sequence[bytes]) -> list[list[Outgoing] | Refused]:
        for item in items:
            self.attempts[item] = self.attempts.get(item, 0) + 1
            if item == b"boom":
                raise RuntimeError("the model fell over")
        return [[Outgoing(self.topics.masked, None, item.upper())] for item in items]

    def delivered(self, items: Sequence[bytes], outputs: Sequence[list[Outgoing]]) -> None:
        if self.crash_after_delivery:
            self.crash_after_delivery = False
            raise SystemExit("crash between delivery and commit")

    def between_batches(self) -> None:
        pass

    def model_versions(self) -> dict[str, str]:
        return {"default": "echo-1"}


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as started:
        yield started


@pytest.fixture
def settings(broker: EmbeddedBroker) -> Settings:
    settings = get_settings().model_copy(update={
        "kafka_bootstrap": broker.bootstrap, "topic_prefix": f"l{uuid.uuid4().hex[:8]}.",
        "session_timeout_ms": 2000, "retries": 1, "partitions": 1, "batch_size": 8,
    })
    ensure_topics(settings)
    return settings


def _loop(settings: Settings, stage: Echo) -> StageLoop:
    topics = Topics(settings.topic_prefix)
    consumer = make_consumer(settings, f"{settings.topic_prefix}echo", "echo")
    return StageLoop(stage, consumer, make_producer(settings, "echo"), settings, topics.deadletter)


def _send(settings: Settings, values: list[bytes]) -> None:
    producer = make_producer(settings, "test")
    for value in values:
        producer.send(Topics(settings.topic_prefix).frames, value=value)
    producer.flush()
    producer.close()


def _read(settings: Settings, topic: str, count: int, timeout_s: float = 30.0) -> list[bytes]:
    consumer = KafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, group_id=None, auto_offset_reset="earliest")
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(values) < count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            values.extend(record.value for record in records)
    consumer.close()
    return values


def test_a_failing_frame_is_retried_then_dead_lettered_and_the_rest_go_on(settings: Settings) -> None:
    _send(settings, [b"a", b"boom", b"refuse", b"b"])
    stage = Echo(Topics(settings.topic_prefix))
    _loop(settings, stage).run(max_idle_s=3.0)
    topics = Topics(settings.topic_prefix)
    assert sorted(_read(settings, topics.masked, 2)) == [b"A", b"B"]
    letters = [DeadLetter.model_validate_json(v) for v in _read(settings, topics.deadletter, 2)]
    by_type = {letter.error_type: letter for letter in letters}
    assert set(by_type) == {"model", "validation"}
    assert by_type["model"].original == b"boom" and "the model fell over" in by_type["model"].reason
    assert by_type["model"].source_offset == 1 and by_type["model"].source_topic == topics.frames
    assert by_type["validation"].original == b"refuse"
    # Once in the batch, then alone: 1 + retries attempts in all.
    assert stage.attempts[b"boom"] == 1 + 1 + settings.retries


def test_a_crash_between_delivery_and_commit_processes_the_batch_again(settings: Settings) -> None:
    _send(settings, [b"x", b"y"])
    with pytest.raises(SystemExit):
        _loop(settings, Echo(Topics(settings.topic_prefix), crash_after_delivery=True)).run(max_idle_s=3.0)
    # Nothing was committed: a new member reads the batch again; repeats, never losses.
    again = Echo(Topics(settings.topic_prefix))
    _loop(settings, again).run(max_idle_s=3.0)
    assert again.attempts == {b"x": 1, b"y": 1}
    assert sorted(_read(settings, Topics(settings.topic_prefix).masked, 4)) == [b"X", b"X", b"Y", b"Y"]


def test_a_stage_consumer_holds_empty_fetches_as_long_as_the_settings_say(settings: Settings) -> None:
    # Apache Kafka deployments raise the hold (docker-compose.yml); the embedded Tansu needs it short.
    consumer = make_consumer(settings.model_copy(update={"fetch_max_wait_ms": 500}), f"{settings.topic_prefix}hold", "hold")
    try:
        assert consumer.config["fetch_max_wait_ms"] == 500
    finally:
        consumer.close()
