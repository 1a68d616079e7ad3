"""Kafka consumers and producers with the line's settings: explicit message-size limits
(kafka-python's defaults refuse a 1 MiB frame), commits only by the loop, and a group session
short enough that a crashed member's partitions move on quickly."""

from kafka import KafkaConsumer, KafkaProducer

from lineinspect.shared.config import MIB, Settings


def largest_output_bytes(settings: Settings) -> int:
    """A result frame carries the frame plus a mask and a heatmap, and a dead letter carries
    the original bytes as base64 (4/3): give produced messages four frames of room."""
    return 4 * settings.max_frame_bytes + MIB


def make_producer(settings: Settings, client_id: str) -> KafkaProducer:
    limit = largest_output_bytes(settings)
    return KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        retries=5,
        linger_ms=0,  # the loop flushes each batch itself; waiting only adds latency
        max_request_size=limit,
        metrics_enabled=False,  # client sensors nobody reads; they cost CPU on every request
    )


def fetch_size_limits(settings: Settings) -> dict[str, int]:
    """Consumer size limits that let any message the line produces through.

    Frames over max_frame_bytes must still arrive, so the loop can dead-letter them with their
    bytes instead of the consumer stalling on them. kafka-python 2.3 also refuses a response
    over `receive_message_max_bytes` (default 1,000,000) on a connection's first parser and
    then drops the connection, with every request in flight on it; its reconnected parser has
    no such limit, so a 6 MB fetch failed once per consumer and then worked. Set it to the
    largest fetch.
    """
    fetch_limit = largest_output_bytes(settings)
    return {
        "max_partition_fetch_bytes": fetch_limit,
        "fetch_max_bytes": 2 * fetch_limit,
        "receive_message_max_bytes": 2 * fetch_limit + MIB,  # the response's own fields
    }


def make_consumer(settings: Settings, group_id: str, client_id: str) -> KafkaConsumer:
    """A group consumer, not yet subscribed: `StageLoop` subscribes it with its rebalance listener."""
    session = settings.session_timeout_ms
    return KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=session,
        heartbeat_interval_ms=max(100, session // 4),
        max_poll_interval_ms=max(300_000, 10 * session),
        fetch_max_wait_ms=settings.fetch_max_wait_ms,  # the broker's hold on an empty fetch (see Settings)
        **fetch_size_limits(settings),
        # Client sensors nobody reads: an idle consumer polling every 20 ms takes 49 ms of CPU a
        # second without them, 60 with (Tansu answers an empty fetch only after fetch_max_wait_ms,
        # even when a record arrives meanwhile; Apache Kafka answers when the record arrives).
        metrics_enabled=False,
    )
