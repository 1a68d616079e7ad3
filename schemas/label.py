"""The `Label` event: ground truth an engineer gives for one frame (topic `labels`); the
monitor joins it to telemetry by frame_id to measure accuracy and mask IoU."""

from typing import Literal

from pydantic import Field

from lineinspect.schemas.common import Contract, ImageBytes, Name, SafeId, SchemaVersion, Text, UtcDatetime


class Label(Contract):
    """An engineer's ground truth for one frame."""

    schema_version: SchemaVersion = 1
    frame_id: SafeId = Field(description="Id of the labelled frame.")
    labelled_at: UtcDatetime = Field(description="When the label was given (UTC).")
    labelled_by: Name | None = Field(None, description="Who gave the label, when known.")
    decision: Literal["pass", "fail"] = Field(description="The true decision: 'pass' = good part, 'fail' = defective.")
    defect_type: Name | None = Field(None, description="Defect type name for a failed part, when known.")
    product_mask: ImageBytes | None = Field(
        None, description="True product mask as a single-channel PNG at the frame's resolution, 255 = product; null when not drawn."
    )
    note: Text | None = Field(None, description="Free comment.")
