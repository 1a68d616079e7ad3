"""Types shared by every event contract: the model base, schema version, UTC timestamps,
identifiers, base64 byte fields, bounded numbers, and the defect `Region`."""

import base64
import math
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError


class Contract(BaseModel):
    """Base of every event and result block: unknown fields are refused (a typo in a producer
    fails loudly), and NaN/inf are refused because JSON cannot carry them."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


SchemaVersion = Annotated[
    Literal[1],
    Field(description="Version of this event's schema; a consumer refuses versions it does not know."),
]


# --- timestamps -------------------------------------------------------------------------


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


# Naive datetimes are refused rather than guessed: a plant clock in local time would
# silently shift every latency and report window.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


# --- identifiers ------------------------------------------------------------------------

# frame_id ends up in Kafka keys, Redis keys, file names and URLs: keep it to characters
# that need no escaping anywhere, starting with a letter or digit (no "." or ".." paths).
SafeId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Text = Annotated[str, StringConstraints(min_length=1)]


# --- bytes as base64 --------------------------------------------------------------------

_BASE64_HINT = "standard alphabet, padded, without line breaks"


def _decode_base64(value: Any, *, what: str, allow_empty: bool) -> bytes:
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, (bytearray, memoryview)):
        raw = bytes(value)
    elif isinstance(value, str):
        try:
            # Python 3.11's strict mode still accepts a stray character before the final
            # padding (decoding different bytes), so check the length first.
            if len(value) % 4:
                raise ValueError(f"length {len(value)} is not a multiple of 4")
            # validate=True: refuse characters outside the alphabet (line breaks, URL-safe
            # "-_") instead of silently skipping them and decoding the wrong bytes.
            raw = base64.b64decode(value, validate=True)
        except ValueError as exc:  # binascii.Error is a ValueError, so is non-ASCII input
            raise PydanticCustomError(
                "base64_decode",
                "{what} is not valid base64 ({reason}); encode the bytes as base64 ({hint})",
                {"what": what, "reason": str(exc), "hint": _BASE64_HINT},
            ) from None
    else:
        raise PydanticCustomError(
            "bytes_type",
            "{what} must be bytes or a base64 string, got {type}",
            {"what": what, "type": type(value).__name__},
        )
    if not raw and not allow_empty:
        raise PydanticCustomError("bytes_empty", "{what} is empty; send the encoded PNG or JPEG bytes", {"what": what})
    return raw


def _validate_image(value: Any) -> bytes:
    return _decode_base64(value, what="image", allow_empty=False)


def _validate_bytes(value: Any) -> bytes:
    return _decode_base64(value, what="value", allow_empty=True)


def _encode_base64(value: bytes) -> str:
    # b64encode writes no line breaks (pydantic's Base64Bytes uses encodebytes, which does).
    return base64.b64encode(value).decode("ascii")


_SERIALISE_BASE64 = PlainSerializer(_encode_base64, return_type=str, when_used="json")

ImageBytes = Annotated[
    bytes,
    PlainValidator(_validate_image, json_schema_input_type=str),
    _SERIALISE_BASE64,
    WithJsonSchema({"type": "string", "contentEncoding": "base64", "contentMediaType": "image/*"}),
]
"""Encoded image (PNG or JPEG file bytes). In Python: `bytes`; in JSON: one base64 string.
Validation takes raw bytes or a base64 string."""

Base64Bytes = Annotated[
    bytes,
    PlainValidator(_validate_bytes, json_schema_input_type=str),
    _SERIALISE_BASE64,
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]
"""Any bytes (may be empty). In Python: `bytes`; in JSON: one base64 string."""


# --- numbers ----------------------------------------------------------------------------

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
LatencyMs = Annotated[float, Field(ge=0.0)]
Grade = Literal[1, 2, 3]

# Keys of per-stage maps (model versions, stage latencies); one name per stage everywhere.
StageName = Literal["mask", "anomaly", "reviewer"]
# Model packages a frame can meet: one per stage, plus the detector the anomaly stage may carry.
ModelKind = Literal["mask", "anomaly", "reviewer", "detector"]
ModelVersions = dict[ModelKind, Name]
StageLatencies = dict[StageName, LatencyMs]

# normalised_score is defined as score / threshold; allow float32 rounding in the producer.
_NORMALISED_REL_TOL = 1e-6


def check_normalised(score: float, threshold: float, normalised_score: float) -> None:
    """Raise ValueError unless normalised_score == score / threshold (to float32 precision)."""
    expected = score / threshold
    if not math.isclose(normalised_score, expected, rel_tol=_NORMALISED_REL_TOL, abs_tol=1e-12):
        raise ValueError(
            f"normalised_score {normalised_score!r} is not score / threshold "
            f"({score!r} / {threshold!r} = {expected!r}); compute it as score / threshold"
        )


# --- regions ----------------------------------------------------------------------------


class Region(Contract):
    """One defect region as a box in 0-based pixel coordinates of the frame image
    (x1, y1 inclusive; x2, y2 exclusive, so the width is x2 - x1)."""

    x1: int = Field(ge=0, description="Left edge, inclusive, in pixels.")
    y1: int = Field(ge=0, description="Top edge, inclusive, in pixels.")
    x2: int = Field(ge=1, description="Right edge, exclusive, in pixels (x2 > x1).")
    y2: int = Field(ge=1, description="Bottom edge, exclusive, in pixels (y2 > y1).")
    score: float = Field(
        description=(
            "Peak normalised anomaly score inside the region (1.0 = at the threshold), "
            "or the detector's confidence when a detector found the region."
        )
    )
    area_px: int = Field(ge=1, description="Pixels that belong to the region (at most the box area).")
    defect_type: Name = Field("unknown", description="Defect type name, 'unknown' when not classified.")
    type_confidence: Fraction | None = Field(
        None, description="Confidence of defect_type in 0..1; null when not classified."
    )

    @model_validator(mode="after")
    def _box_is_consistent(self) -> "Region":
        if self.x2 <= self.x1 or self.y2 <= self.y1:
            raise ValueError(
                f"empty box ({self.x1}, {self.y1}, {self.x2}, {self.y2}): x2 and y2 are exclusive "
                "and must be greater than x1 and y1"
            )
        box_area = (self.x2 - self.x1) * (self.y2 - self.y1)
        if self.area_px > box_area:
            raise ValueError(f"area_px {self.area_px} exceeds the box area {box_area}")
        return self
