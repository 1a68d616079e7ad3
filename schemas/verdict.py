"""The `Verdict` event: what MES reads for one frame (topic `verdicts`, keyed by frame_id).
It carries no images; the heatmap and mask stay on the `scored` frame."""

from typing import Literal

from pydantic import Field, model_validator

from lineinspect.schemas.common import (
    Contract,
    Grade,
    LatencyMs,
    ModelVersions,
    Name,
    Region,
    SafeId,
    SchemaVersion,
    StageLatencies,
    Text,
    UtcDatetime,
    check_normalised,
)

VerdictDecision = Literal["pass", "fail", "review"]


class Verdict(Contract):
    """The decision for one frame. 'review' means a person should look: the mask is not
    trusted (grade 3) or the score is too close to the threshold to decide."""

    schema_version: SchemaVersion = 1
    frame_id: SafeId = Field(description="Id of the frame this verdict is for (the Kafka key of this event).")
    line_id: Name = Field(description="Production line the camera is on.")
    camera_id: Name = Field(description="Camera that took the frame.")
    image_type: Name = Field(description="Product/camera kind of the frame.")
    part_id: Name | None = Field(None, description="Serial number of the part, when the camera sent one.")
    captured_at: UtcDatetime = Field(description="When the camera captured the image (UTC).")
    decided_at: UtcDatetime = Field(description="When this verdict was made (UTC).")
    decision: VerdictDecision = Field(
        description="'pass' = good part, 'fail' = defective part, 'review' = a person should look."
    )
    reasons: list[Text] = Field(
        min_length=1, description="Why, in plain words, for the operator (e.g. 'anomaly score 1.8x the threshold')."
    )
    score: float = Field(description="Raw image anomaly score.")
    threshold: float = Field(gt=0.0, description="Raw score at which an image counts as anomalous.")
    normalised_score: float = Field(description="score / threshold: 1.0 = at the threshold.")
    regions: list[Region] = Field(default_factory=list, description="Defect regions found; empty when none.")
    mask_grade: Grade | None = Field(
        description="Reviewer's grade of the product mask: 1 perfect, 2 usable, 3 untrustworthy; null when not graded."
    )
    model_versions: ModelVersions = Field(
        description="Model package version per stage; keys 'mask', 'anomaly', 'reviewer', and 'detector' when one found the regions."
    )
    latency_ms: LatencyMs = Field(
        description="End-to-end latency in milliseconds: decided_at minus published_at (captured_at when not published)."
    )
    stage_latency_ms: StageLatencies = Field(
        default_factory=dict, description="Milliseconds each stage spent; keys 'mask', 'anomaly', 'reviewer'."
    )

    @model_validator(mode="after")
    def _normalised_is_score_over_threshold(self) -> "Verdict":
        check_normalised(self.score, self.threshold, self.normalised_score)
        return self
