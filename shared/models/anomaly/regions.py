"""Defect regions from an anomaly heatmap: every connected area above the threshold becomes a
box with its peak score and pixel area (hysteresis, so a box covers the whole defect and not
only its hottest pixels)."""

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class DefectRegion:
    x1: int
    y1: int
    x2: int  # exclusive
    y2: int  # exclusive
    score: float  # peak normalised score inside the region (1.0 = at the threshold)
    area_px: int
    defect_type: str = "unknown"
    type_confidence: float | None = None
    component: np.ndarray | None = None  # bool (H, W) pixels of the region; not serialised


def find_regions(
    normalised_map: np.ndarray,
    *,
    seed_level: float = 1.0,
    extent_level: float = 0.75,
    min_area_px: int = 4,
    max_regions: int = 100,
    keep_components: bool = False,
) -> list[DefectRegion]:
    """Regions of `normalised_map` (score / threshold per pixel, 0 outside the product),
    strongest first.

    Every connected area >= `seed_level` seeds a region. The region grows to the connected
    pixels above its half-height: halfway between the image's typical level (median of the
    non-zero map) and the region's peak, kept within [`extent_level`, `seed_level`]. So a
    strong defect on a quiet product gets a box around its whole extent, and a faint one on
    a busy product does not spread over the product. Regions smaller than `min_area_px` are
    dropped; beyond `max_regions` the weaker seeds are reported at their seed extent.
    """
    seeds = (normalised_map >= seed_level).astype(np.uint8)
    if not seeds.any():
        return []
    count, seed_labels, seed_stats, _ = cv2.connectedComponentsWithStats(seeds, connectivity=8)
    values = normalised_map.astype(np.float32)
    flat_labels, flat_values = seed_labels.ravel(), values.ravel()
    peaks = np.full(count, -np.inf, np.float32)
    np.maximum.at(peaks, flat_labels, flat_values)
    # Where each seed's peak is: the last pixel (in value order) of each label.
    order = np.lexsort((flat_values, flat_labels))
    last = np.r_[np.nonzero(np.diff(flat_labels[order]))[0], len(order) - 1]
    peak_at = {int(flat_labels[order[i]]): int(order[i]) for i in last}
    # The typical level, from a subsample on big maps (a median of millions of pixels is slow).
    step = max(1, round((values.size / 65536) ** 0.5))
    sample = values[::step, ::step]
    positive = sample[sample > 0]
    floor = float(np.median(positive)) if positive.size else 0.0
    by_level: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    taken = np.zeros(values.shape, bool)
    regions: list[DefectRegion] = []
    for rank, index in enumerate(sorted(range(1, count), key=lambda i: -peaks[i])):
        peak = float(peaks[index])
        level = float(np.clip(floor + 0.5 * (peak - floor), extent_level, seed_level))
        level = seed_level if rank >= max_regions else np.floor(level * 20) / 20  # few distinct levels
        if level >= seed_level:
            labels, stats, label = seed_labels, seed_stats, index
        else:
            if level not in by_level:
                _, level_labels, level_stats, _ = cv2.connectedComponentsWithStats(
                    (values >= level).astype(np.uint8), connectivity=8
                )
                by_level[level] = (level_labels, level_stats)
            labels, stats = by_level[level]
            label = int(labels.ravel()[peak_at[index]])
        component = labels == label
        if level < seed_level and (component & taken).any():
            # Would merge with a stronger region already reported: keep to the seed itself.
            labels, stats, label, component = seed_labels, seed_stats, index, seed_labels == index
        if (component & taken).any():
            continue
        x, y, w, h, area = (int(v) for v in stats[label])
        if area < min_area_px:
            continue
        taken |= component
        regions.append(
            DefectRegion(
                x1=x, y1=y, x2=x + w, y2=y + h, score=peak, area_px=area,
                component=component if keep_components else None,
            )
        )
    return regions
