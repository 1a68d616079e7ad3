"""CPU that the Kafka client costs a stage, per message, apart from any model: a stage's
consumer and producer (the line's settings) read messages of a frame's size from one topic
and send each on to another, in batches, with flush and commit as the loop does. The broker
is the embedded Tansu; the messages are loaded before the clock starts.

Figures: `kafka_python` (the installed version), `cpu_ms_per_message` (this process: consumer,
producer and their IO threads), `wall_ms_per_message`, `broker_cpu_ms_per_message`.
pyproject.toml holds kafka-python below 3.0 on this figure; run it again when a new release
comes out:

    python bench/kafka_client.py [--json K.json] [--messages 1500] [--kilobytes 160]
"""

import argparse
import os
import resource
import time
from pathlib import Path

import kafka
from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata

from lineinspect.shared.config import get_settings
from lineinspect.shared.streaming.clients import make_consumer, make_producer
from lineinspect.shared.streaming.embedded import EmbeddedBroker
from common import print_figures
from pipeline import BATCH, process_cpu_seconds

SOURCE, TARGET = "bench.in", "bench.out"


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--messages", type=int, default=1500)
    parser.add_argument("--kilobytes", type=int, default=160, help="message size (a 256 px PNG frame as JSON is ~156 KB)")
    args = parser.parse_args()
    broker = EmbeddedBroker().start()
    try:
        assert broker.process is not None
        settings = get_settings().model_copy(update={"kafka_bootstrap": broker.bootstrap, "session_timeout_ms": 2000})
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic(SOURCE, settings.partitions, 1), NewTopic(TARGET, settings.partitions, 1)])
        admin.close()
        loader = make_producer(settings, "bench-loader")
        payload = os.urandom(args.kilobytes * 1000)  # incompressible, like PNG bytes
        for index in range(args.messages):
            loader.send(SOURCE, key=str(index).encode(), value=payload)
        loader.flush()
        loader.close()

        consumer = make_consumer(settings, "bench-stage", "bench-stage")
        consumer.subscribe([SOURCE])
        producer = make_producer(settings, "bench-stage")
        moved, clock = 0, None
        while moved < args.messages:
            records = [r for batch in consumer.poll(timeout_ms=1000, max_records=BATCH).values() for r in batch]
            if not records:
                continue
            if clock is None:  # from the first batch on: the group join is not the client's per-message cost
                clock = (own_cpu_seconds(), time.perf_counter(), process_cpu_seconds(broker.process.pid), moved)
            futures = [producer.send(TARGET, key=r.key, value=r.value) for r in records]
            producer.flush()
            for future in futures:
                future.get(timeout=60)
            offsets = {TopicPartition(r.topic, r.partition): r.offset + 1 for r in records}
            consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()})
            moved += len(records)
        assert clock is not None
        counted = moved - clock[3]
        figures = {
            "kafka_python": kafka.__version__,
            "message_kilobytes": args.kilobytes,
            "messages": counted,
            "cpu_ms_per_message": (own_cpu_seconds() - clock[0]) * 1000 / counted,
            "wall_ms_per_message": (time.perf_counter() - clock[1]) * 1000 / counted,
            "broker_cpu_ms_per_message": (process_cpu_seconds(broker.process.pid) - clock[2]) * 1000 / counted,
        }
        consumer.close()
        producer.close()
    finally:
        broker.stop()
    print_figures(figures, args.json)


if __name__ == "__main__":
    main()
