"""The `Frame` event and the result block each stage appends to it. Topics `frames`
(camera), `masked` (+mask), `scored` (+anomaly) carry a Frame; the reviewer adds `review`."""

import math
from typing import Literal

from pydantic import Field, JsonValue, model_validator

from lineinspect.schemas.common import (
    Contract,
    Fraction,
    Grade,
    ImageBytes,
    LatencyMs,
    Name,
    Region,
    SafeId,
    SchemaVersion,
    UtcDatetime,
    check_normalised,
)

# Softmax outputs in float32 sum to 1 within ~1e-6; anything further off is a bug.
_PROBABILITY_SUM_TOL = 1e-3


class MaskResult(Contract):
    """Where the product is in the frame, added by the mask_finder stage."""

    mask: ImageBytes = Field(
        description="Product mask as a single-channel PNG at the frame's resolution: 255 = product, 0 = background."
    )
    mode: Literal["model", "whole_frame"] = Field(
        description="'model' = found by the mask model; 'whole_frame' = the line is configured to treat the whole frame as product."
    )
    area_fraction: Fraction = Field(description="Fraction of the frame covered by the product, 0..1.")
    area_px: int = Field(ge=0, description="Pixels covered by the product.")
    confidence: Fraction = Field(description="Confidence of the mask, 0..1 (1.0 in whole_frame mode).")
    model_version: Name = Field(description="Version of the mask model package ('whole_frame' in whole_frame mode).")
    latency_ms: LatencyMs = Field(description="Time the mask_finder stage spent on this frame, in milliseconds.")


class AnomalyResult(Contract):
    """How anomalous the product is and where, added by the anomaly stage."""

    score: float = Field(description="Raw image anomaly score of the model (scale depends on the model).")
    threshold: float = Field(gt=0.0, description="Raw score at which an image counts as anomalous.")
    normalised_score: float = Field(
        description="score / threshold: 1.0 = at the threshold, above 1 = anomalous. Comparable across models."
    )
    decision: Literal["normal", "anomalous"] = Field(description="The anomaly model's decision for the image.")
    heatmap: ImageBytes = Field(
        description=(
            "Per-pixel anomaly map as an 8-bit single-channel PNG at the frame's resolution: "
            "pixel = clip(n / heatmap_scale, 0, 1) * 255 (rounded), where n is the pixel's normalised "
            "score; so n = pixel / 255 * heatmap_scale. Pixels outside the product mask are 0."
        )
    )
    heatmap_scale: float = Field(
        2.0, gt=0.0, description="Normalised score that maps to heatmap grey level 255 (default 2.0: the threshold is ~128)."
    )
    regions: list[Region] = Field(
        default_factory=list,
        description=(
            "Every defect region found, as boxes; empty when none. With a detector for the image type the "
            "regions are the detector's boxes (defect type and confidence)."
        ),
    )
    model_version: Name = Field(
        description="Version of the anomaly model package (of the detector package when the image type has only a detector)."
    )
    detector_version: Name | None = Field(
        None, description="Version of the detector package whose boxes are the regions; null when there is no detector."
    )
    latency_ms: LatencyMs = Field(description="Time the anomaly stage spent on this frame, in milliseconds.")

    @model_validator(mode="after")
    def _normalised_is_score_over_threshold(self) -> "AnomalyResult":
        check_normalised(self.score, self.threshold, self.normalised_score)
        return self


class ReviewResult(Contract):
    """How far the mask (and so the anomaly result) can be trusted, added by the reviewer stage."""

    grade: Grade = Field(description="1 = perfect mask, 2 = usable, 3 = untrustworthy (a person should look).")
    probabilities: list[Fraction] = Field(
        min_length=3,
        max_length=3,
        description="Probabilities of grades 1, 2 and 3, in that order; they sum to 1.",
    )
    model_version: Name = Field(description="Version of the reviewer model package.")
    latency_ms: LatencyMs = Field(description="Time the reviewer stage spent on this frame, in milliseconds.")

    @model_validator(mode="after")
    def _probabilities_sum_to_one(self) -> "ReviewResult":
        total = math.fsum(self.probabilities)
        if abs(total - 1.0) > _PROBABILITY_SUM_TOL:
            raise ValueError(f"probabilities sum to {total:.6f}, not 1; send the softmax of the three grades")
        return self


class Frame(Contract):
    """One camera image and what the stages found so far. The camera publishes it with the
    ids and the image; each stage appends its block (mask, then anomaly, then review)."""

    schema_version: SchemaVersion = 1
    frame_id: SafeId = Field(
        description="Unique id of the frame: 1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit."
    )
    line_id: Name = Field(description="Production line the camera is on.")
    camera_id: Name = Field(description="Camera that took the frame; the Kafka key, so a camera's frames stay ordered.")
    image_type: Name = Field(description="Product/camera kind; the unit models are trained for and the monitor reports on.")
    part_id: Name | None = Field(None, description="Serial number of the part for MES, when known.")
    captured_at: UtcDatetime = Field(description="When the camera captured the image (UTC).")
    published_at: UtcDatetime | None = Field(
        None, description="When the camera published the frame (UTC); start of the end-to-end latency."
    )
    image: ImageBytes = Field(description="The image as encoded PNG or JPEG bytes.")
    metadata: dict[str, JsonValue] = Field(
        default_factory=dict, description="Free JSON metadata from the camera (exposure, recipe, ...); passed on unchanged."
    )
    mask: MaskResult | None = Field(None, description="Added by mask_finder; null before.")
    anomaly: AnomalyResult | None = Field(None, description="Added by the anomaly stage; null before.")
    review: ReviewResult | None = Field(None, description="Added by the reviewer; null before.")

    @model_validator(mode="after")
    def _stages_in_order(self) -> "Frame":
        # The anomaly model scores inside the mask and the reviewer grades (frame, mask):
        # a later block without the earlier ones means a stage was skipped.
        if self.anomaly is not None and self.mask is None:
            raise ValueError("frame has an anomaly result but no mask result; mask_finder must run first")
        if self.review is not None and (self.mask is None or self.anomaly is None):
            raise ValueError("frame has a review result but lacks the mask or anomaly result; the reviewer runs last")
        return self
