"""The `Alert` event: the monitor saw a figure cross its threshold over a window
(topic `alerts`): drift, a drop in mask IoU or accuracy, or too many 'review' verdicts."""

from typing import Literal

from pydantic import Field, model_validator

from lineinspect.schemas.common import Contract, Name, SafeId, SchemaVersion, Text, UtcDatetime


class Alert(Contract):
    """A monitored figure crossed its threshold over a time window."""

    schema_version: SchemaVersion = 1
    alert_id: SafeId = Field(description="Unique id of the alert: 1-128 characters of A-Z a-z 0-9 . _ -.")
    raised_at: UtcDatetime = Field(description="When the monitor raised the alert (UTC).")
    kind: Literal["drift", "iou_drop", "accuracy_drop", "review_rate"] = Field(
        description="What went wrong: input/embedding drift, mask IoU drop, accuracy drop, or too many 'review' verdicts."
    )
    severity: Literal["warning", "critical"] = Field(description="'warning' = look soon, 'critical' = act now.")
    line_id: Name | None = Field(None, description="Production line concerned; null when across lines.")
    image_type: Name = Field(description="Product/camera kind the figure was measured on.")
    figure: Name = Field(description="Name of the measured figure (e.g. 'mask_iou', 'drift_share').")
    value: float = Field(description="Measured value of the figure over the window.")
    threshold: float = Field(description="Threshold the value crossed.")
    window_start: UtcDatetime = Field(description="Start of the measured window (UTC).")
    window_end: UtcDatetime = Field(description="End of the measured window (UTC).")
    message: Text = Field(description="What happened and what to do, in plain words.")
    report_url: str | None = Field(None, description="Link to the monitor's report, when one was written.")

    @model_validator(mode="after")
    def _window_is_ordered(self) -> "Alert":
        if self.window_end < self.window_start:
            raise ValueError(f"window_end {self.window_end.isoformat()} is before window_start {self.window_start.isoformat()}")
        return self
