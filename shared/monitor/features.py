"""The flat columns the monitor compares for drift: one row per frame (live telemetry) or per
training image (the reference a model package carries). Both sides are built here, so the
names always match.

Columns
  image statistics   mean, std, p05, p95, contrast, sharpness, channel_r, channel_g,
                     channel_b, saturation_mean (see `schemas.telemetry.ImageStats`)
  mask               mask_area_fraction
  model output       normalised_score (reference: only images the memory bank did not see)
  embedding          emb_00 .. emb_31 (`shared.line.telemetry.image_embedding`)
Live rows also carry mask_confidence, mask_grade and latency_ms; a reference has no such
figures, so they are reported over time but not tested for drift against the package.
"""

from typing import Any

import numpy as np

from lineinspect.schemas import ImageStats, Telemetry
from lineinspect.shared.line.telemetry import image_embedding, image_stats

IMAGE_COLUMNS = (
    "mean", "std", "p05", "p95", "contrast", "sharpness",
    "channel_r", "channel_g", "channel_b", "saturation_mean",
)
MASK_COLUMNS = ("mask_area_fraction",)
SCORE_COLUMNS = ("normalised_score",)
LIVE_ONLY_COLUMNS = ("mask_confidence", "mask_grade", "latency_ms")
# The columns drift is tested on, in report order.
DRIFT_COLUMNS = IMAGE_COLUMNS + MASK_COLUMNS + SCORE_COLUMNS
EMBEDDING_SIZE = 32
EMBEDDING_COLUMNS = tuple(f"emb_{i:02d}" for i in range(EMBEDDING_SIZE))


def stats_columns(stats: ImageStats) -> dict[str, float]:
    red, green, blue = stats.channel_means
    return {
        "mean": stats.mean, "std": stats.std, "p05": stats.p05, "p95": stats.p95,
        "contrast": stats.contrast, "sharpness": stats.sharpness,
        "channel_r": red, "channel_g": green, "channel_b": blue,
        "saturation_mean": stats.saturation_mean,
    }


def embedding_columns(embedding: list[float]) -> dict[str, float]:
    if len(embedding) != EMBEDDING_SIZE:
        raise ValueError(f"embedding has {len(embedding)} values; the monitor compares {EMBEDDING_SIZE}")
    return dict(zip(EMBEDDING_COLUMNS, embedding, strict=True))


def telemetry_columns(telemetry: Telemetry) -> dict[str, Any]:
    """The feature row of one live frame."""
    return {
        **stats_columns(telemetry.image_stats),
        "mask_area_fraction": telemetry.mask_area_fraction,
        "normalised_score": telemetry.normalised_score,
        "mask_confidence": telemetry.mask_confidence,
        "mask_grade": telemetry.mask_grade,
        "latency_ms": telemetry.latency_ms,
        **embedding_columns(telemetry.embedding),
    }


def image_columns(image: np.ndarray, product_mask: np.ndarray | None, normalised_score: float | None) -> dict[str, Any]:
    """The feature row of one training image (uint8 BGR; bool product mask or None), as a model
    package stores it for its drift reference. Without a product mask the area is unknown
    (None), not 1.0: a line may still find masks, and the column is then left out."""
    area = None if product_mask is None else float(np.count_nonzero(product_mask)) / product_mask.size
    return {
        **stats_columns(image_stats(image)),
        "mask_area_fraction": area,
        "normalised_score": normalised_score,
        **embedding_columns(image_embedding(image)),
    }
