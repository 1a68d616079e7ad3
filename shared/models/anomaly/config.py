"""Settings of the anomaly model: one set of defaults for every dataset, recorded in each
package's manifest so inference runs exactly as training did."""

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lineinspect.shared.models.backbone import BLOCK_STRIDES

INPUT_MULTIPLE = 32  # the backbone's coarsest stride: input sides are multiples of it


class AnomalyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input_size: int = Field(
        224, ge=64, le=1024,
        description="The backbone sees about input_size x input_size pixels of each image (see `resize`).",
    )
    resize: Literal["keep_aspect", "square"] = Field(
        "keep_aspect",
        description=(
            "keep_aspect: the image is scaled to about input_size^2 pixels with its aspect ratio kept, sides "
            "rounded to multiples of 32 (the backbone's stride), so long parts keep their texture scale "
            "(magnetic_tile, sides 0.36-2.6 : 1: image AUROC 0.929 -> 0.937, pixel 0.812 -> 0.819); "
            "square: squashed to input_size x input_size (packages saved before this setting existed)."
        ),
    )
    taps: tuple[int, ...] = Field(
        (4, 10),
        description=(
            "EfficientNet-Lite0 blocks whose outputs form the patch features (stride 8 and 16). Adding block 14 "
            "(stride 32) helped texture surfaces (magnetic_tile image AUROC 0.88 -> 0.92 with a peak-only image "
            "score) but blurred localisation "
            "on objects (synthetic 0.98 -> 0.95, hazelnut pixel AUROC 0.986 -> 0.973); see bench/anomaly_accuracy.py."
        ),
    )
    channel_norm: bool = Field(True, description="Scale each feature channel to unit std (set on the bank images).")
    tap_balance: float = Field(
        0.0, ge=0.0, le=1.0,
        description="With channel_norm: taps' shares of the distance, from proportional to their widths (0) to equal (1).",
    )
    aggregate: int = Field(3, ge=1, description="Neighbourhood (k x k average) each patch feature is pooled over.")
    coreset_fraction: float = Field(
        0.25, gt=0.0, le=1.0, description="Share of each training image's patches kept in the memory bank (greedy k-centre)."
    )
    max_bank: int = Field(400_000, ge=1000, description="Cap on memory-bank patches; above it a seeded random subset is kept.")
    exact_search_limit: int = Field(
        2048, ge=1, description="Banks up to this size are searched exactly; larger ones with an IVF index."
    )
    search_dims: int = Field(
        128, ge=0,
        description=(
            "Project features onto this many principal axes of the bank for the search (0 = no projection). With "
            "exact_rerank, of the 152-d features: 96 axes gave magnetic_tile image / pixel AUROC 0.9505 / 0.8257, "
            "128 0.9535 / 0.8269 at 7.5 % less speed there, all 152 0.9536 / 0.8270 at 18 % less; hazelnut_toy and "
            "synthetic were as good or slightly better at 128 (bench/anomaly_accuracy.py)."
        ),
    )
    ivf_probes: int = Field(8, ge=1, description="Inverted lists searched per query in IVF search.")
    exact_rerank: int = Field(
        8, ge=0,
        description=(
            "With IVF search, this many patches of each image, those farthest from the bank, are searched again "
            "exactly (0 = off). An IVF search can only overestimate a distance (the nearest patch may sit in a list "
            "it did not probe), and the farthest patches make the image score. magnetic_tile (127,600-patch bank, "
            "96 search dims): image AUROC 0.948 with 8 probes alone, 0.9515 with every list probed (3.0 instead of 31 images/s), "
            "0.9505 with 8 patches re-searched at 7-12 % less speed; pixel AUROC 0.8255 -> 0.8257; hazelnut_toy "
            "and synthetic unchanged (bench/anomaly_accuracy.py)."
        ),
    )
    edge_rings: int = Field(
        3, ge=0, le=8,
        description=(
            "Patch distances are levelled by their place relative to the frame's edges, this many grid cells deep "
            "(see torch_model.edge_profile; 0 = off). 189 of 190 normal magnetic tiles peaked at an edge (153 in a corner); "
            "levelled, magnetic_tile image AUROC 0.937 -> 0.948, pixel 0.819 -> 0.826, hazelnut_toy and synthetic "
            "unchanged (hazelnut_toy's profile is all 1: its frame edges lie outside the product mask); "
            "bench/anomaly_accuracy.py."
        ),
    )
    blur_sigma: float = Field(4.0, ge=0.0, description="Gaussian smoothing of the heatmap, in pixels at input_size.")
    defect_probe: bool = Field(
        True,
        description=(
            "When calibration anomalies come with defect masks (at least training.MIN_PROBE_IMAGES of them), a "
            "linear probe on the patch features learns which patches are defect, and the heatmap's patch distances "
            "are raised x (1 + probe_gain x its probability); see probe.py. It shapes heatmaps and regions only: "
            "image scores, the threshold and decisions do not use it. magnetic_tile with half of its labelled "
            "anomalies calibrating: test pixel AUROC 0.817 -> 0.912 (bench/anomaly_accuracy.py). Without such masks "
            "nothing changes."
        ),
    )
    probe_gain: float = Field(
        3.0, ge=0.0,
        description=(
            "How far the probe can raise a patch distance: x (1 + gain) at probability 1. magnetic_tile (as in "
            "defect_probe): 1 gave pixel AUROC 0.900, 3 0.912, 10 0.915."
        ),
    )
    probe_strength: float = Field(
        0.01, gt=0.0, description="Inverse L2 penalty of the probe's logistic regression on standardised features."
    )
    holdout_fraction: float = Field(
        0.15, gt=0.0, lt=1.0, description="Share of training normals held back to set the threshold when no calibration split exists."
    )
    normal_quantile: float = Field(
        0.99, ge=0.5, le=1.0,
        description=(
            "With no labelled anomalies to calibrate on, the threshold is this quantile of the held-back normal "
            "images' scores, raised by normal_margin: how many good frames a line may flag is the plant's call. "
            "Calibration on labelled anomalies (F1-optimal) ignores it. magnetic_tile's quickstart split (114 "
            "held-back normals): 0.99 with margin 0.1 flagged 0 of 190 normal test tiles and caught 20 % of the "
            "defective ones, 0.99 with no margin 2 and 52 %, 0.95 12 and 73 %, 0.9 19 and 83 % (docs/anomaly.md)."
        ),
    )
    normal_margin: float = Field(
        0.10, ge=-0.5, le=2.0,
        description=(
            "Share added to (or, negative, taken off) normal_quantile's score to make the threshold. It guards small "
            "training sets: 30 normals hold back 4 or 5, whose 0.99 quantile is nearly their maximum."
        ),
    )
    batch_size: int = Field(8, ge=1, description="Images per backbone batch.")
    seed: int = 0

    @field_validator("taps")
    @classmethod
    def _valid_taps(cls, taps: tuple[int, ...]) -> tuple[int, ...]:
        if not taps or any(t < 0 or t >= len(BLOCK_STRIDES) for t in taps):
            raise ValueError(f"taps must be block indices 0..{len(BLOCK_STRIDES) - 1}")
        return tuple(sorted(set(taps)))

    def input_shape(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) the backbone sees for an image of this size."""
        if self.resize == "square":
            return self.input_size, self.input_size
        scale = self.input_size / math.sqrt(height * width)
        return (max(INPUT_MULTIPLE, round(height * scale / INPUT_MULTIPLE) * INPUT_MULTIPLE),
                max(INPUT_MULTIPLE, round(width * scale / INPUT_MULTIPLE) * INPUT_MULTIPLE))

    @property
    def grid_stride(self) -> int:
        """Stride of the patch grid: that of the finest tap."""
        return BLOCK_STRIDES[min(self.taps)]
