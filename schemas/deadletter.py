"""The `DeadLetter` event: an input message a stage could not use (topic `deadletter`),
kept with its original bytes and where it came from, so nothing is dropped silently."""

from pydantic import Field

from lineinspect.schemas.common import Base64Bytes, Contract, Name, SchemaVersion, Text, UtcDatetime


class DeadLetter(Contract):
    """A message a stage refused, with the original bytes unchanged and the reason."""

    schema_version: SchemaVersion = 1
    dead_at: UtcDatetime = Field(description="When the stage gave up on the message (UTC).")
    stage: Name = Field(description="Service that refused the message (e.g. 'mask_finder', 'anomaly', 'reviewer').")
    source_topic: Name = Field(description="Topic the message was read from.")
    source_partition: int = Field(ge=0, description="Partition the message was read from.")
    source_offset: int = Field(ge=0, description="Offset of the message in that partition.")
    key: Base64Bytes | None = Field(None, description="Original message key, base64; null when the message had none.")
    original: Base64Bytes = Field(description="Original message value, unchanged, base64 (empty when it had none).")
    reason: Text = Field(description="What was wrong and what to do, in plain words.")
    error_type: Name = Field(
        description="Kind of failure: 'decode', 'validation', 'oversized', 'model', 'unknown_model', ..."
    )
    # Plain str, not the frame_id pattern: an invalid id may be exactly why it is here.
    frame_id: str | None = Field(None, description="Frame id when it could be read from the message; null otherwise.")
    headers: dict[str, str] = Field(default_factory=dict, description="Original message headers, values decoded as UTF-8.")
