"""Training masks for the reviewer without hand grading: ground-truth product masks spoiled in
the ways mask finders fail (eroded, dilated, shifted, holed, with extra blobs, parts cut off,
boundaries that wander, concave gaps bridged, thin parts lost, openings filled, another frame's
mask, empty, full), each graded by its IoU with the truth.

All functions take and return bool (H, W) masks; `strength` in 0..1 scales how far a
perturbation goes, so a sampler can aim at a grade.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from lineinspect.shared.models.mask.evaluation import mask_iou

PERFECT, USABLE, UNTRUSTWORTHY = 1, 2, 3
GRADES = (PERFECT, USABLE, UNTRUSTWORTHY)


@dataclass(frozen=True)
class GradeThresholds:
    """IoU with the truth at or above `perfect` is grade 1, at or above `usable` grade 2,
    below it grade 3."""

    perfect: float = 0.95
    usable: float = 0.8

    def __post_init__(self) -> None:
        if not 0.0 < self.usable < self.perfect <= 1.0:
            raise ValueError(f"grade thresholds need 0 < usable < perfect <= 1, got usable={self.usable}, perfect={self.perfect}")

    def grade(self, iou: float) -> int:
        if iou >= self.perfect:
            return PERFECT
        return USABLE if iou >= self.usable else UNTRUSTWORTHY


def _object_scale(mask: np.ndarray) -> float:
    """A length that grows with the product: the side of a square of the same area (>= 2 px)."""
    return max(2.0, float(np.sqrt(mask.sum())))


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def erode(mask: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    radius = max(1, round(strength * 0.25 * _object_scale(mask)))
    return cv2.erode(mask.astype(np.uint8), _disc(radius)) > 0


def dilate(mask: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    radius = max(1, round(strength * 0.25 * _object_scale(mask)))
    return cv2.dilate(mask.astype(np.uint8), _disc(radius)) > 0


def shift(mask: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    distance = max(1.0, strength * 0.6 * _object_scale(mask))
    matrix = np.float32([[1, 0, distance * np.cos(angle)], [0, 1, distance * np.sin(angle)]])
    height, width = mask.shape
    return cv2.warpAffine(mask.astype(np.uint8), matrix, (width, height), flags=cv2.INTER_NEAREST) > 0


def _random_ellipses(shape: tuple[int, int], centres: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    layer = np.zeros(shape, np.uint8)
    for x, y in centres:
        axes = tuple(int(max(1, a)) for a in radius * rng.uniform(0.4, 1.0, 2))
        cv2.ellipse(layer, (int(x), int(y)), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return layer > 0


def holes(mask: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return mask.copy()
    count = int(rng.integers(1, 5))
    picks = rng.integers(len(xs), size=count)
    radius = max(1.5, strength * 0.35 * _object_scale(mask) / np.sqrt(count))
    return mask & ~_random_ellipses(mask.shape, np.stack([xs[picks], ys[picks]], 1), radius, rng)


def blobs(mask: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """False product where there is none: blobs near the product's edge or anywhere (clutter)."""
    height, width = mask.shape
    count = int(rng.integers(1, 5))
    ring = cv2.dilate(mask.astype(np.uint8), _disc(max(2, round(0.15 * _object_scale(mask))))) > 0
    ys, xs = np.nonzero(ring & ~mask)
    centres = []
    for _ in range(count):
        if len(xs) and rng.random() < 0.6:
            pick = int(rng.integers(len(xs)))
            centres.append((xs[pick], ys[pick]))
        else:
            centres.append((rng.integers(width), rng.integers(height)))
    radius = max(1.5, strength * 0.35 * _object_scale(mask) / np.sqrt(count))
    return mask | _random_ellipses(mask.shape, np.array(centres), radius, rng)


def cut(mask: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A part of the product missed: everything beyond a random straight line through it."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return mask.copy()
    angle = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    projection = xs * direction[0] + ys * direction[1]
    limit = np.quantile(projection, 1.0 - 0.6 * strength)
    grid_y, grid_x = np.indices(mask.shape)
    return mask & ((grid_x * direction[0] + grid_y * direction[1]) <= limit)


def wobble(mask: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A boundary that wanders in and out, as a blurry or confused segmenter draws it: the
    signed distance to the edge plus smooth noise, thresholded at zero."""
    if not mask.any() or mask.all():
        return mask.copy()
    inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    outside = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 3)
    signed = inside - outside
    height, width = mask.shape
    cells = int(rng.integers(3, 10))
    noise = cv2.resize(rng.standard_normal((cells, cells)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    amplitude = max(1.0, strength * 0.3 * _object_scale(mask))
    return (signed + amplitude * noise) > 0


def bridge(mask: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Gaps and concave corners filled in (morphological closing), as segmenters that smooth
    too much draw the inside of an L or a fork."""
    radius = max(1, round(strength * 0.6 * _object_scale(mask)))
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, _disc(radius)) > 0


def thin_parts_lost(mask: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Narrow arms and protrusions dropped (morphological opening)."""
    radius = max(1, round(strength * 0.3 * _object_scale(mask)))
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, _disc(radius)) > 0


def fill_openings(mask: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Every opening inside the product filled in, as a segmenter that never saw a washer
    draws a disc."""
    filled = np.zeros(mask.shape, np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(filled, contours, -1, 1, -1)
    return filled > 0


def empty(mask: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    return np.zeros_like(mask)


def full(mask: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    return np.ones_like(mask)


Perturbation = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
PERTURBATIONS: dict[str, Perturbation] = {
    "erode": erode,
    "dilate": dilate,
    "shift": shift,
    "holes": holes,
    "blobs": blobs,
    "cut": cut,
    "wobble": wobble,
    "bridge": bridge,
    "thin_parts_lost": thin_parts_lost,
    "fill_openings": fill_openings,
    "empty": empty,
    "full": full,
}
# `swap` (another frame's mask) needs the other masks, so `perturb` handles it.
KINDS = ("identity", *PERTURBATIONS, "swap")


@dataclass(frozen=True)
class PerturbedMask:
    mask: np.ndarray
    kinds: tuple[str, ...]
    iou: float
    grade: int


def perturb(
    truth: np.ndarray, rng: np.random.Generator, others: Sequence[np.ndarray] = (), compose: float = 0.3
) -> tuple[np.ndarray, tuple[str, ...]]:
    """One random perturbation of `truth` (sometimes two in a row); `others` are masks of other
    frames of the same size, for `swap`."""
    weights = {"identity": 0.5, "empty": 0.25, "full": 0.25, "swap": 1.0 if len(others) else 0.0}
    names = list(KINDS)
    p = np.array([weights.get(name, 1.0) for name in names])
    kind = names[int(rng.choice(len(names), p=p / p.sum()))]
    if kind == "identity":
        return truth.copy(), (kind,)
    if kind == "swap":
        mask = others[int(rng.integers(len(others)))].copy()
    else:
        mask = PERTURBATIONS[kind](truth, float(rng.uniform(0.02, 1.0) ** 1.5), rng)
    kinds = (kind,)
    if kind not in ("empty", "full") and rng.random() < compose:
        second = str(rng.choice(["erode", "dilate", "shift", "holes", "blobs", "cut", "wobble", "bridge"]))
        mask = PERTURBATIONS[second](mask, float(rng.uniform(0.02, 0.6) ** 1.5), rng)
        kinds += (second,)
    return mask, kinds


def perturb_for_grade(
    truth: np.ndarray,
    grade: int,
    thresholds: GradeThresholds,
    rng: np.random.Generator,
    others: Sequence[np.ndarray] = (),
    attempts: int = 24,
) -> PerturbedMask:
    """A perturbed mask of the wanted grade when one is found within `attempts` draws,
    else the last draw (with its true grade): grades stay honest, balance is best effort."""
    for _ in range(attempts):
        mask, kinds = perturb(truth, rng, others)
        iou = mask_iou(mask, truth)
        if thresholds.grade(iou) == grade:
            break
    return PerturbedMask(mask, kinds, iou, thresholds.grade(iou))
