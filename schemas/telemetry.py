"""The `Telemetry` event: per-frame features the monitor uses to watch drift and accuracy
(topic `telemetry`). Small, one per verdict: no frame image, only the product mask (a PNG of a few KB)."""

from typing import Annotated

from pydantic import Field

from lineinspect.schemas.common import (
    Contract,
    Fraction,
    Grade,
    ImageBytes,
    LatencyMs,
    ModelVersions,
    Name,
    SafeId,
    SchemaVersion,
    StageLatencies,
    UtcDatetime,
)
from lineinspect.schemas.verdict import VerdictDecision

GreyLevel = Annotated[float, Field(ge=0.0, le=255.0)]


class ImageStats(Contract):
    """Statistics of the frame image. Grey levels are of the 8-bit grey image, 0..255."""

    width: int = Field(ge=1, description="Image width in pixels.")
    height: int = Field(ge=1, description="Image height in pixels.")
    mean: GreyLevel = Field(description="Mean grey level.")
    std: GreyLevel = Field(description="Standard deviation of grey levels.")
    p05: GreyLevel = Field(description="5th percentile of grey levels.")
    p95: GreyLevel = Field(description="95th percentile of grey levels.")
    contrast: float = Field(ge=0.0, le=1.0, description="Robust contrast: (p95 - p05) / 255, 0..1.")
    sharpness: float = Field(ge=0.0, description="Variance of the Laplacian of the grey image (higher = sharper).")
    channel_means: list[GreyLevel] = Field(
        min_length=3, max_length=3, description="Mean of each colour channel in R, G, B order, 0..255 (grey: three equal values)."
    )
    saturation_mean: GreyLevel = Field(description="Mean HSV saturation, 0..255 (0 for grey images).")


class Telemetry(Contract):
    """Per-frame features for the drift and accuracy monitor."""

    schema_version: SchemaVersion = 1
    frame_id: SafeId = Field(description="Id of the frame.")
    line_id: Name = Field(description="Production line the camera is on.")
    camera_id: Name = Field(description="Camera that took the frame.")
    image_type: Name = Field(description="Product/camera kind; the unit the monitor reports on.")
    captured_at: UtcDatetime = Field(description="When the camera captured the image (UTC).")
    image_stats: ImageStats = Field(description="Statistics of the frame image.")
    embedding: list[float] = Field(
        min_length=16, max_length=64, description="Compact image embedding (16-64 values) for embedding drift."
    )
    anomaly_score: float = Field(description="Raw image anomaly score.")
    normalised_score: float = Field(description="Anomaly score / threshold: 1.0 = at the threshold.")
    mask_area_fraction: Fraction = Field(description="Fraction of the frame covered by the product mask, 0..1.")
    mask_confidence: Fraction = Field(description="Confidence of the product mask, 0..1.")
    mask_grade: Grade | None = Field(description="Reviewer's grade of the mask (1, 2, 3); null when not graded.")
    decision: VerdictDecision = Field(description="The verdict's decision: 'pass', 'fail' or 'review'.")
    latency_ms: LatencyMs = Field(description="End-to-end latency of the frame, in milliseconds.")
    stage_latency_ms: StageLatencies = Field(
        default_factory=dict, description="Milliseconds each stage spent; keys 'mask', 'anomaly', 'reviewer'."
    )
    model_versions: ModelVersions = Field(description="Model package version per stage; keys 'mask', 'anomaly', 'reviewer', and 'detector' when one found the regions.")
    product_mask: ImageBytes | None = Field(
        None,
        description=(
            "The product mask the line used, as a single-channel PNG at the frame's resolution, 255 = product; "
            "null in whole_frame mode. The monitor compares it with a label's mask (IoU)."
        ),
    )
