"""Per-frame features the monitor watches for drift: image statistics and a compact,
model-free embedding (a coarse grey layout plus edge energy), cheap enough for every frame."""

import cv2
import numpy as np

from lineinspect.schemas import ImageStats

EMBEDDING_GRID = 4  # 4x4 cells: 16 mean grey levels + 16 edge energies = 32 values


def image_stats(image: np.ndarray) -> ImageStats:
    """Statistics of a uint8 BGR frame."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    p05, p95 = np.percentile(grey, [5, 95])
    blue, green, red = (float(image[..., c].mean()) for c in range(3))
    saturation = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)[..., 1]
    return ImageStats(
        width=int(image.shape[1]),
        height=int(image.shape[0]),
        mean=float(grey.mean()),
        std=float(grey.std()),
        p05=float(p05),
        p95=float(p95),
        contrast=float(max(0.0, p95 - p05) / 255.0),
        sharpness=float(cv2.Laplacian(grey, cv2.CV_64F).var()),
        channel_means=[red, green, blue],
        saturation_mean=float(saturation.mean()),
    )


def image_embedding(image: np.ndarray) -> list[float]:
    """32 values in 0..1: the mean grey level and the mean edge magnitude of each cell of a
    4x4 grid. A shift in lighting, framing or focus moves them; the monitor compares their
    distribution over time (embedding drift)."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255.0
    edges = cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    cells = (EMBEDDING_GRID, EMBEDDING_GRID)
    layout = cv2.resize(grey, cells, interpolation=cv2.INTER_AREA)
    energy = np.clip(cv2.resize(edges, cells, interpolation=cv2.INTER_AREA) / 4.0, 0.0, 1.0)
    return [round(float(v), 5) for v in np.concatenate([layout.ravel(), energy.ravel()])]
