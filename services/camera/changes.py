"""Changes to the look of a camera's frames from some frame on, as happen on a real line: the
lighting changes, the lens loses focus, a new product finish arrives. `lineinspect demo
--drift-at K` uses them to show the monitor noticing drift."""

import itertools
from collections.abc import Callable, Iterator
from dataclasses import replace

import cv2
import numpy as np

from lineinspect.services.camera.sources import Shot


def lighting(image: np.ndarray) -> np.ndarray:
    """A brighter, flatter lamp: gain 1.3 and gamma 0.8."""
    scaled = (image.astype(np.float32) / 255.0) ** 0.8 * 255.0 * 1.3
    return np.clip(scaled, 0, 255).astype(np.uint8)


def blur(image: np.ndarray) -> np.ndarray:
    """The lens out of focus: Gaussian blur, sigma 2."""
    return cv2.GaussianBlur(image, (0, 0), 2.0)


def finish(image: np.ndarray) -> np.ndarray:
    """A new surface finish: a warmer tint and a fine grain."""
    rng = np.random.default_rng(0)
    tinted = image.astype(np.float32) * np.array([0.8, 0.95, 1.2], dtype=np.float32)  # B, G, R
    grain = rng.normal(0.0, 12.0, image.shape[:2])[..., None]
    return np.clip(tinted + grain, 0, 255).astype(np.uint8)


LOOK_CHANGES: dict[str, Callable[[np.ndarray], np.ndarray]] = {"lighting": lighting, "blur": blur, "finish": finish}


class LineCounter:
    """Frames taken so far by all cameras of a line (shared by their changed streams)."""

    def __init__(self) -> None:
        self._count = itertools.count()

    def take(self) -> int:
        return next(self._count)


def changed_after(shots: Iterator[Shot], counter: LineCounter, at_frame: int, change: str) -> Iterator[Shot]:
    """`shots` as they are until the line's frame `at_frame`, then with `change` applied."""
    if change not in LOOK_CHANGES:
        raise ValueError(f"unknown change {change!r}; choose one of {', '.join(LOOK_CHANGES)}")
    apply = LOOK_CHANGES[change]
    for shot in shots:
        if counter.take() >= at_frame:
            shot = replace(shot, image=apply(shot.image), metadata={**shot.metadata, "changed": change})
        yield shot
