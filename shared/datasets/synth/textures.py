"""Seeded noise fields for surfaces: fine grain, brushed lines, speckle, a slow mottle and a
belt weave. Each returns float32 (H, W) with zero mean and unit standard deviation."""

import cv2
import numpy as np


def _normalised(field: np.ndarray) -> np.ndarray:
    field = field - field.mean()
    return (field / (field.std() + 1e-6)).astype(np.float32)


def grain(rng: np.random.Generator, shape: tuple[int, int], sigma: float = 0.8) -> np.ndarray:
    """Isotropic fine grain, like cast or sand-blasted surfaces."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    return _normalised(cv2.GaussianBlur(noise, (0, 0), sigma))


def mottle(rng: np.random.Generator, shape: tuple[int, int], cells: int = 6) -> np.ndarray:
    """Slow, cloudy variation (a few blotches across the image)."""
    coarse = rng.standard_normal((cells, cells), dtype=np.float32)
    return _normalised(cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC))


def brushed(rng: np.random.Generator, shape: tuple[int, int], angle_deg: float, length: int) -> np.ndarray:
    """Fine parallel lines along `angle_deg`, like brushed or ground metal."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    kernel_size = 2 * (length // 2) + 1
    kernel = np.zeros((kernel_size, kernel_size), np.float32)
    centre = kernel_size // 2
    dx, dy = np.cos(np.radians(angle_deg)) * centre, np.sin(np.radians(angle_deg)) * centre
    cv2.line(kernel, (round(centre - dx), round(centre - dy)), (round(centre + dx), round(centre + dy)), 1.0, 1)
    streaks = cv2.filter2D(noise, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)
    return _normalised(streaks + 0.35 * _normalised(noise))


def speckle(rng: np.random.Generator, shape: tuple[int, int], density: float = 0.02) -> np.ndarray:
    """Grain with sparse dark and bright flecks, like a powder-coated casting."""
    flecks = (rng.random(shape, dtype=np.float32) < density) * rng.choice(
        np.array([-1.0, 1.0], np.float32), size=shape
    )
    flecks = cv2.GaussianBlur(flecks.astype(np.float32), (0, 0), 0.6)
    return _normalised(grain(rng, shape, 0.7) + 4.0 * flecks)


def belt(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A conveyor-belt weave: fine grain with faint horizontal streaks."""
    return _normalised(grain(rng, shape, 0.9) + 0.8 * brushed(rng, shape, 0.0, max(9, shape[1] // 12)))


def surface(rng: np.random.Generator, kind: str, shape: tuple[int, int], angle_deg: float) -> np.ndarray:
    """The product surface texture of a style, turned with the product."""
    if kind == "brushed":
        return brushed(rng, shape, angle_deg, max(7, shape[1] // 16))
    if kind == "speckle":
        return speckle(rng, shape)
    return grain(rng, shape)
