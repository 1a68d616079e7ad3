"""Settings of the reviewer, recorded in each package."""

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ReviewerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input_size: int = Field(96, ge=32, le=512, description="Frame and mask are resized to this square size (pixels).")
    trunk_blocks: int = Field(8, ge=2, le=16, description="How many MBConv blocks of Lite0 the trunk keeps (8 = up to stride 16).")
    head_channels: int = Field(128, ge=8)
    perfect_iou: float = Field(0.95, gt=0, le=1, description="A mask with at least this IoU with the truth is grade 1 (perfect).")
    usable_iou: float = Field(0.8, gt=0, lt=1, description="At least this IoU is grade 2 (usable); below it, grade 3 (untrustworthy).")
    epochs: int = Field(30, ge=1, description="Most passes; each pass draws fresh perturbations.")
    samples_per_epoch: int = Field(2048, ge=8, description="Perturbed masks drawn per pass, a third of each grade.")
    validation_perturbations: int = Field(12, ge=1, description="Fixed perturbed masks per validation image.")
    patience: int = Field(6, ge=1, description="Stop after this many passes without a lower validation loss.")
    max_minutes: float = Field(15.0, gt=0, description="Stop training after this long, keeping the best pass.")
    batch_size: int = Field(32, ge=2, description="Perturbed masks per training step (inference batches are set where the model runs).")
    learning_rate: float = Field(1e-3, gt=0, description="Head learning rate; the pretrained trunk gets a quarter.")
    validation_fraction: float = Field(0.15, gt=0, lt=1, description="Share of train images held out when there is no validation split.")
    seed: int = 0

    @model_validator(mode="after")
    def _ordered(self) -> "ReviewerConfig":
        if self.usable_iou >= self.perfect_iou:
            raise ValueError(f"usable_iou ({self.usable_iou}) must be below perfect_iou ({self.perfect_iou})")
        return self
