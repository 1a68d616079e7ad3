"""The anomaly result's heatmap on the wire: an 8-bit PNG of normalised scores."""

import numpy as np

from lineinspect.shared.images import encode_png

HEATMAP_SCALE = 2.0  # normalised score at grey level 255: the threshold sits at ~128


def heatmap_png(heatmap: np.ndarray, scale: float = HEATMAP_SCALE) -> bytes:
    """The contract's 8-bit heatmap: pixel = round(clip(n / scale, 0, 1) * 255)."""
    grey = np.rint(np.clip(heatmap / scale, 0.0, 1.0) * 255.0).astype(np.uint8)
    return encode_png(grey)
