"""Settings of the mask finder, recorded in each package."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Upsampling = Literal["subpixel", "bilinear"]


class MaskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input_size: int = Field(192, ge=64, le=1024, description="Frames are resized to this square size (pixels).")
    decoder_channels: tuple[int, ...] = Field(
        (96, 64, 48), description="Decoder widths from stride 16 upwards: 3 stages end at stride 4, 4 at stride 2."
    )
    upsampling: Upsampling = Field(
        "subpixel", description="From the last decoder stage to full size: 'subpixel' (learnt per pixel) or 'bilinear'."
    )
    epochs: int = Field(60, ge=1, description="Most passes over the training images.")
    patience: int = Field(
        15, ge=1,
        description=(
            "Stop after this many epochs without a better validation IoU. Under the one-cycle learning rate the IoU "
            "can stall for several epochs while the rate is high; 8 stopped a demo training at epoch 18 of 60."
        ),
    )
    max_minutes: float = Field(15.0, gt=0, description="Stop training after this long, keeping the best epoch.")
    batch_size: int = Field(16, ge=1, description="Frames per training step (inference batches are set where the model runs).")
    learning_rate: float = Field(2e-3, gt=0, description="Decoder learning rate; the pretrained encoder gets a quarter.")
    validation_fraction: float = Field(0.15, gt=0, lt=1, description="Share of train images held out when there is no validation split.")
    seed: int = 0
