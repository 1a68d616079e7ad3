"""CPU that the Kafka client costs a stage, per message, apart from any model: the line's
`StageLoop` (its consumer and producer, with the line's settings) runs a stage that passes
messages of a frame's size from one topic on to another, in batches, with flush and commit.
The broker is the embedded Tansu; the messages are loaded before the clock starts.

Figures: `kafka_python` (the installed version), `cpu_ms_per_message` (this process: consumer,
producer and their IO threads), `wall_ms_per_message`, `broker_cpu_ms_per_message`.
pyproject.toml holds kafka-python below 3.0 on this figure; run it again when a new release
comes out:

    python bench/kafka_client.py [--json K.json] [--messages 1500] [--kilobytes 160]
"""

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path

import kafka
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.consumer.fetcher import ConsumerRecord

from lineinspect.shared.config import get_settings
from lineinspect.shared.logs import configure_logging
from lineinspect.shared.streaming.clients import make_consumer, make_producer
from lineinspect.shared.streaming.embedded import EmbeddedBroker
from lineinspect.shared.streaming.loop import Outgoing, StageLoop
from common import print_figures
from pipeline import process_cpu_seconds

SOURCE, TARGET, DEADLETTER = "bench.in", "bench.out", "bench.deadletter"


class PassOn:
    """A stage without a model: each message goes on unchanged. It starts the clock at its first
    batch (the group join is not a per-message cost) and stops the loop after `expected`."""

    name = "pass_on"
    input_topics = [SOURCE]

    def __init__(self, expected: int, broker_pid: int) -> None:
        self.expected = expected
        self.broker_pid = broker_pid
        self.loop: StageLoop | None = None
        self.moved = 0
        self.started: tuple[float, float, float] | None = None  # own CPU, wall, broker CPU
        self.ended: tuple[float, float, float] | None = None

    def clock(self) -> tuple[float, float, float]:
        return process_cpu_seconds(os.getpid()), time.perf_counter(), process_cpu_seconds(self.broker_pid)

    def decode(self, record: ConsumerRecord) -> ConsumerRecord:
        return record

    def process(self, items: Sequence[ConsumerRecord]) -> list[list[Outgoing]]:
        if self.started is None:  # the first batch: every message is counted
            self.started = self.clock()
        return [[Outgoing(TARGET, record.key, record.value)] for record in items]

    def delivered(self, items: Sequence[ConsumerRecord], outputs: Sequence[list[Outgoing]]) -> None:
        self.moved += len(items)
        if self.moved >= self.expected and self.loop is not None:
            self.ended = self.clock()  # before leaving the group, which is no per-message cost either
            self.loop.stop()

    def between_batches(self) -> None:
        pass

    def model_versions(self) -> dict[str, str]:
        return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--messages", type=int, default=1500)
    parser.add_argument("--kilobytes", type=int, default=160, help="message size (a 256 px PNG frame as JSON is ~156 KB)")
    args = parser.parse_args()
    configure_logging(level="WARNING")
    broker = EmbeddedBroker().start()
    try:
        assert broker.process is not None
        settings = get_settings().model_copy(update={"kafka_bootstrap": broker.bootstrap, "session_timeout_ms": 2000})
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic(name, settings.partitions, 1) for name in (SOURCE, TARGET, DEADLETTER)])
        admin.close()
        loader = make_producer(settings, "bench-loader")
        payload = os.urandom(args.kilobytes * 1000)  # incompressible, like PNG bytes
        for index in range(args.messages):
            loader.send(SOURCE, key=str(index).encode(), value=payload)
        loader.flush()
        loader.close()

        stage = PassOn(args.messages, broker.process.pid)
        stage.loop = StageLoop(stage, make_consumer(settings, "bench-stage", "bench-stage"),
                               make_producer(settings, "bench-stage"), settings, DEADLETTER,
                               max_input_bytes=4 * args.kilobytes * 1000)
        stage.loop.run()
        started, ended = stage.started, stage.ended
        assert started is not None and ended is not None
        figures = {
            "kafka_python": kafka.__version__,
            "message_kilobytes": args.kilobytes,
            "messages": args.messages,
            "cpu_ms_per_message": (ended[0] - started[0]) * 1000 / args.messages,
            "wall_ms_per_message": (ended[1] - started[1]) * 1000 / args.messages,
            "broker_cpu_ms_per_message": (ended[2] - started[2]) * 1000 / args.messages,
        }
    finally:
        broker.stop()
    print_figures(figures, args.json)


if __name__ == "__main__":
    main()
