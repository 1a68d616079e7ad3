"""Turning an input a stage cannot use into a `DeadLetter`: the original bytes, where they
came from, and a reason that says what was wrong and what to do."""

import json
from datetime import datetime, timezone

from kafka.consumer.fetcher import ConsumerRecord

from lineinspect.schemas import DeadLetter

# A dead letter carries the original as base64; beyond this many bytes only the start is
# kept (and the reason says so), so one huge message cannot stop the stage.
KEPT_ORIGINAL_BYTES = 16 << 20


class Refused(Exception):
    """An input the stage will not process: it goes to the dead-letter topic, the loop goes on."""

    def __init__(self, error_type: str, reason: str, frame_id: str | None = None) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.reason = reason
        self.frame_id = frame_id


def frame_id_of(value: bytes | None) -> str | None:
    """The frame_id of a message when it can be read at all (for logs and the dead letter)."""
    if not value:
        return None
    try:
        found = json.loads(value).get("frame_id")
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def dead_letter(record: ConsumerRecord, stage: str, refused: Refused) -> DeadLetter:
    original = record.value or b""
    reason = refused.reason
    if len(original) > KEPT_ORIGINAL_BYTES:
        reason += f" (original of {len(original)} bytes truncated to its first {KEPT_ORIGINAL_BYTES})"
        original = original[:KEPT_ORIGINAL_BYTES]
    headers = {}
    for name, value in record.headers or []:
        headers[name] = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return DeadLetter(
        dead_at=datetime.now(timezone.utc),
        stage=stage,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        key=record.key,
        original=original,
        reason=reason,
        error_type=refused.error_type,
        frame_id=refused.frame_id or frame_id_of(record.value),
        headers=headers,
    )
