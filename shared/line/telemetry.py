"""Per-frame features the monitor watches for drift: image statistics and a compact,
model-free embedding (a coarse grey layout plus edge energy), cheap enough for every frame."""

from collections.abc import Sequence

import cv2
import numpy as np

from lineinspect.schemas import ImageStats

EMBEDDING_GRID = 4  # 4x4 cells: 16 mean grey levels + 16 edge energies = 32 values


def grey_percentiles(grey: np.ndarray, percents: Sequence[float]) -> list[float]:
    """np.percentile(grey, percents) (linear interpolation) of a uint8 image, read off its
    histogram instead of sorting the pixels: the same values, 20x faster at 256 x 256."""
    counts = np.cumsum(cv2.calcHist([grey], [0], None, [256], [0, 256]).ravel())
    total = int(counts[-1])
    values = []
    for percent in percents:
        position = percent / 100.0 * (total - 1)
        below = int(np.floor(position))
        # the k-th smallest pixel (0-based) is the first grey level whose cumulative count passes k
        low = int(np.searchsorted(counts, below, side="right"))
        high = int(np.searchsorted(counts, min(below + 1, total - 1), side="right"))
        values.append(low + (position - below) * (high - low))
    return values


def image_stats(image: np.ndarray) -> ImageStats:
    """Statistics of a uint8 BGR frame (about 0.5 ms at 256 x 256; it runs for every frame)."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    p05, p95 = grey_percentiles(grey, [5, 95])
    blue, green, red = cv2.mean(image)[:3]
    mean, std = (float(v[0, 0]) for v in cv2.meanStdDev(grey))
    saturation = cv2.mean(cv2.cvtColor(image, cv2.COLOR_BGR2HSV))[1]
    return ImageStats(
        width=int(image.shape[1]),
        height=int(image.shape[0]),
        mean=mean,
        std=std,
        p05=float(p05),
        p95=float(p95),
        contrast=float(max(0.0, p95 - p05) / 255.0),
        sharpness=float(cv2.Laplacian(grey, cv2.CV_64F).var()),
        channel_means=[float(red), float(green), float(blue)],
        saturation_mean=float(saturation),
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
