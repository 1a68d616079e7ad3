"""Every offset of a partition, in order, from the embedded broker, even while two producers
write the partition at once (it can show offset N+1 before it has stored N)."""

import os
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.consumer.fetcher import ConsumerRecord

from lineinspect.shared.config import MIB
from lineinspect.shared.streaming.embedded import EmbeddedBroker
from lineinspect.shared.streaming.in_order import InOrder, log_start

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _topic(broker: EmbeddedBroker) -> TopicPartition:
    name = f"o{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(name, 1, 1)])
    admin.close()
    return TopicPartition(name, 0)


def _reader(broker: EmbeddedBroker, tp: TopicPartition) -> KafkaConsumer:
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, auto_offset_reset="earliest",
                             max_partition_fetch_bytes=8 * MIB, fetch_max_bytes=16 * MIB, fetch_max_wait_ms=5)
    consumer.assign([tp])
    return consumer


class Tail(threading.Thread):
    def __init__(self, in_order: InOrder) -> None:
        super().__init__(daemon=True)
        self.in_order = in_order
        self.offsets: list[int] = []
        self.sizes: list[int] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for record in self.in_order.records(self.in_order.consumer.poll(timeout_ms=50)):
                self.offsets.append(record.offset)
                self.sizes.append(len(record.value))


@pytest.fixture
def tail_of(broker: EmbeddedBroker) -> Iterator:
    tails: list[Tail] = []

    def start(tp: TopicPartition, patience_s: float = 10.0) -> Tail:
        consumer = _reader(broker, tp)
        tail = Tail(InOrder(consumer, log_start(consumer), patience_s=patience_s))
        tail.start()
        tails.append(tail)
        return tail

    yield start
    for tail in tails:
        tail.stopping.set()
        tail.join(timeout=5)
        tail.in_order.consumer.close()


def _wait_for(tail: Tail, count: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(tail.offsets) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_tail_reader_gets_every_big_record_written_beside_a_stream_of_small_ones(broker: EmbeddedBroker, tail_of) -> None:
    tp = _topic(broker)
    tail = tail_of(tp)
    big = KafkaProducer(bootstrap_servers=broker.bootstrap, max_request_size=8 * MIB, linger_ms=0)
    small = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
    payload = os.urandom(2 * MIB)
    bigs, smalls = 24, 0
    for _ in range(bigs // 3):
        writer = threading.Thread(target=lambda: [small.send(tp.topic, b"s" * 100, partition=0).get(30) for _ in range(200)])
        writer.start()
        for _ in range(3):
            big.send(tp.topic, payload, partition=0).get(30)
        writer.join()
        smalls += 200
    big.close()
    small.close()
    _wait_for(tail, bigs + smalls)
    # Without the rewind this reader missed about a third of the big records.
    assert tail.offsets == list(range(bigs + smalls)), "each offset once, in order"
    assert tail.sizes.count(len(payload)) == bigs


def _record(tp: TopicPartition, offset: int) -> ConsumerRecord:
    fields = dict.fromkeys(ConsumerRecord._fields, None)
    fields.update(topic=tp.topic, partition=tp.partition, offset=offset, value=b"v", headers=[])
    return ConsumerRecord(**fields)


def test_a_hole_is_fetched_again_until_the_patience_runs_out_then_passed(broker: EmbeddedBroker) -> None:
    # A hole that never fills (offsets of a compacted or transactional topic) cannot be made on
    # the embedded broker, so the polled records here are made by hand; the consumer is real.
    tp = _topic(broker)
    consumer = _reader(broker, tp)
    in_order = InOrder(consumer, lambda _: 0, patience_s=0.3)
    polled = {tp: [_record(tp, 0), _record(tp, 1), _record(tp, 4), _record(tp, 5)]}
    assert [r.offset for r in in_order.records(polled)] == [0, 1]
    assert consumer.position(tp) == 2, "rewound to the first missing offset"
    assert [r.offset for r in in_order.records({tp: polled[tp][2:]})] == []
    time.sleep(0.35)
    assert [r.offset for r in in_order.records({tp: polled[tp][2:]})] == [4, 5], "passed once the patience ran out"
    assert in_order.refetches == 2
    consumer.close()
