"""Synthetic defects drawn on the product of a rendered frame: scratch, spot, crack, stain,
dent. The defect mask is exactly the pixels the defect changed, and lies inside the product.

Each defect changes its pixels by a visible amount (tens of grey levels, several pixels wide)
relative to the pixel beneath, so the surface texture still shows through as it would.
"""

from collections.abc import Callable

import cv2
import numpy as np

from lineinspect.shared.datasets.synth import textures

DEFECT_TYPES: tuple[str, ...] = ("scratch", "spot", "crack", "stain", "dent")

# A defect smaller than this (pixels, at any size) is redrawn elsewhere: too small to label.
_MIN_PIXELS = 12


def _anchor(rng: np.random.Generator, product: np.ndarray, margin: float) -> tuple[int, int]:
    """A random product pixel at least `margin` pixels from the product's edge (or the
    innermost ones, for thin products)."""
    inside = cv2.distanceTransform(product.astype(np.uint8), cv2.DIST_L2, 3)
    ys, xs = np.nonzero(inside >= min(margin, float(inside.max())))
    k = int(rng.integers(0, len(xs)))
    return int(xs[k]), int(ys[k])


def _scratch(rng: np.random.Generator, image: np.ndarray, product: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = image.shape[0]
    x, y = _anchor(rng, product, size * 0.05)
    length = size * rng.uniform(0.10, 0.28)
    angle = rng.uniform(0, np.pi)
    bend = rng.uniform(-0.15, 0.15) * length
    t = np.linspace(-0.5, 0.5, 12)
    points = np.stack([x + t * length * np.cos(angle) - (t**2 - 0.25) * bend * np.sin(angle),
                       y + t * length * np.sin(angle) + (t**2 - 0.25) * bend * np.cos(angle)], axis=1)
    region = np.zeros(product.shape, np.uint8)
    cv2.polylines(region, [np.round(points).astype(np.int32)], False, 1, max(2, round(size / 128)))
    bright = rng.random() < 0.6  # scratches in metal mostly catch the light
    changed = image + (255.0 - image) * 0.55 if bright else image * 0.5
    return region.astype(bool), changed


def _blob(rng: np.random.Generator, shape: tuple[int, int], x: int, y: int, radius: float) -> np.ndarray:
    """An irregular blob: an ellipse whose edge is roughened by slow noise."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    aspect = rng.uniform(0.6, 1.0)
    u = (xx - x) * np.cos(angle) + (yy - y) * np.sin(angle)
    v = (-(xx - x) * np.sin(angle) + (yy - y) * np.cos(angle)) / aspect
    distance = np.sqrt(u**2 + v**2) / radius
    wobble = 0.25 * textures.mottle(rng, shape, max(4, int(shape[0] / radius)))
    return distance + wobble < 1.0


def _spot(rng: np.random.Generator, image: np.ndarray, product: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = image.shape[0]
    x, y = _anchor(rng, product, size * 0.05)
    region = _blob(rng, product.shape, x, y, size * rng.uniform(0.022, 0.045))
    dark = rng.random() < 0.7
    changed = image * rng.uniform(0.35, 0.55) if dark else image + (255.0 - image) * 0.5
    return region, changed


def _crack(rng: np.random.Generator, image: np.ndarray, product: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = image.shape[0]
    x, y = _anchor(rng, product, size * 0.06)
    heading = rng.uniform(0, 2 * np.pi)
    points = [(float(x), float(y))]
    for _ in range(int(rng.integers(8, 16))):
        heading += rng.normal(0, 0.45)  # a random walk: cracks wander but keep a direction
        step = size * rng.uniform(0.012, 0.025)
        points.append((points[-1][0] + step * np.cos(heading), points[-1][1] + step * np.sin(heading)))
    region = np.zeros(product.shape, np.uint8)
    cv2.polylines(region, [np.round(points).astype(np.int32)], False, 1, max(2, round(size / 128)))
    return region.astype(bool), image * 0.3


def _stain(rng: np.random.Generator, image: np.ndarray, product: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = image.shape[0]
    x, y = _anchor(rng, product, size * 0.07)
    region = _blob(rng, product.shape, x, y, size * rng.uniform(0.04, 0.08))
    # The tint farthest from the product's own colour, so the stain shows on every product.
    tints = np.array([(30, 70, 140), (150, 60, 40), (40, 40, 40), (60, 160, 60)], np.float32)
    local = image[region].mean(axis=0) if region.any() else image.reshape(-1, 3).mean(axis=0)
    tint = tints[int(np.argmax(np.abs(tints - local).sum(axis=1)))]
    alpha = rng.uniform(0.4, 0.55)
    return region, image * (1 - alpha) + tint[None, None, :] * alpha


def _dent(rng: np.random.Generator, image: np.ndarray, product: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = image.shape[0]
    x, y = _anchor(rng, product, size * 0.06)
    radius = size * rng.uniform(0.03, 0.06)
    region = _blob(rng, product.shape, x, y, radius)
    # A depression lit from one side: one flank darker than the other, all of it darker.
    light = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0 : product.shape[0], 0 : product.shape[1]].astype(np.float32)
    flank = np.clip(((xx - x) * np.cos(light) + (yy - y) * np.sin(light)) / radius, -1, 1)
    factor = 0.68 + 0.14 * flank
    return region, image * factor[..., None]


_DRAWERS: dict[str, Callable[[np.random.Generator, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "scratch": _scratch,
    "spot": _spot,
    "crack": _crack,
    "stain": _stain,
    "dent": _dent,
}


def draw_defect(
    rng: np.random.Generator, image: np.ndarray, product: np.ndarray, defect_type: str
) -> tuple[np.ndarray, np.ndarray]:
    """(image with the defect, defect mask). The mask is every pixel that changed, all of them
    inside the product; a defect that came out too small is redrawn."""
    if defect_type not in _DRAWERS:
        raise ValueError(f"unknown defect type {defect_type!r}; use one of {', '.join(DEFECT_TYPES)}")
    source = image.astype(np.float32)
    for _ in range(20):
        region, changed = _DRAWERS[defect_type](rng, source, product)
        region &= product
        result = image.copy()
        result[region] = np.clip(np.rint(changed[region]), 0, 255).astype(np.uint8)
        mask = (result != image).any(axis=2)
        if mask.sum() >= _MIN_PIXELS:
            return result, mask
    raise RuntimeError(f"could not place a {defect_type} on this product")  # a bug, not bad input
