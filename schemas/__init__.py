"""The event contracts of lineinspect: pydantic models that are the source of truth, and
`EVENTS`, the registry from JSON Schema file stem (`json/<stem>.schema.json`) to model."""

from pydantic import BaseModel

from lineinspect.schemas.alert import Alert
from lineinspect.schemas.common import (
    Base64Bytes,
    Contract,
    Grade,
    ImageBytes,
    ModelVersions,
    Region,
    SafeId,
    SchemaVersion,
    StageLatencies,
    StageName,
    UtcDatetime,
)
from lineinspect.schemas.deadletter import DeadLetter
from lineinspect.schemas.frame import AnomalyResult, Frame, MaskResult, ReviewResult
from lineinspect.schemas.label import Label
from lineinspect.schemas.telemetry import ImageStats, Telemetry
from lineinspect.schemas.verdict import Verdict, VerdictDecision

EVENTS: dict[str, type[BaseModel]] = {
    "frame": Frame,
    "verdict": Verdict,
    "telemetry": Telemetry,
    "label": Label,
    "deadletter": DeadLetter,
    "alert": Alert,
}

__all__ = [
    "EVENTS",
    "Alert",
    "AnomalyResult",
    "Base64Bytes",
    "Contract",
    "DeadLetter",
    "Frame",
    "Grade",
    "ImageBytes",
    "ImageStats",
    "Label",
    "MaskResult",
    "ModelVersions",
    "Region",
    "ReviewResult",
    "SafeId",
    "SchemaVersion",
    "StageLatencies",
    "StageName",
    "Telemetry",
    "UtcDatetime",
    "Verdict",
    "VerdictDecision",
]
