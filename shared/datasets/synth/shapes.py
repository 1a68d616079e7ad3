"""Product outlines of the synthetic image types, drawn at a pose into an exact product mask
(no anti-aliasing: a pixel is product or not), plus the grooves that mark normal structure."""

from dataclasses import dataclass

import cv2
import numpy as np

# Sub-pixel vertex precision for cv2.fillPoly / polylines (coordinates * 2**_SHIFT).
_SHIFT = 4


@dataclass(frozen=True)
class Pose:
    """Where the product lies in the frame: centre in pixels, rotation, size in pixels."""

    cx: float
    cy: float
    angle_deg: float
    radius: float


@dataclass(frozen=True)
class Outline:
    """A shape in unit coordinates (about -1..1): filled body polygons, holes, grooves."""

    bodies: list[np.ndarray]
    holes: list[np.ndarray]
    grooves: list[np.ndarray]  # closed polylines drawn as dark engraved lines


def _circle(r: float, cx: float = 0.0, cy: float = 0.0, points: int = 96) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, points, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _stadium(half_length: float, half_width: float, points: int = 32) -> np.ndarray:
    right = np.linspace(-np.pi / 2, np.pi / 2, points)
    left = right + np.pi
    cap = lambda t, x0: np.stack([x0 + half_width * np.cos(t), half_width * np.sin(t)], axis=1)  # noqa: E731
    return np.concatenate([cap(right, half_length - half_width), cap(left, -(half_length - half_width))])


def _rounded_rect(half_w: float, half_h: float, corner: float, points: int = 12) -> np.ndarray:
    parts = []
    for (sx, sy), start in (((1, 1), 0.0), ((-1, 1), 0.5), ((-1, -1), 1.0), ((1, -1), 1.5)):
        t = np.linspace(start * np.pi, (start + 0.5) * np.pi, points)
        cx, cy = sx * (half_w - corner), sy * (half_h - corner)
        parts.append(np.stack([cx + corner * np.cos(t), cy + corner * np.sin(t)], axis=1))
    return np.concatenate(parts)


def outline(shape: str) -> Outline:
    """The unit outline of a product family."""
    if shape == "disc":
        return Outline([_circle(1.0)], [], [_circle(0.62)])
    if shape == "plate":
        return Outline([_rounded_rect(1.0, 0.65, 0.2)], [_circle(0.12, -0.72), _circle(0.12, 0.72)], [])
    if shape == "bracket":
        arm = np.array([(-1, -1), (1, -1), (1, -0.45), (-0.45, -0.45), (-0.45, 1), (-1, 1)], float) * 0.8
        return Outline([arm], [_circle(0.1, 0.5, -0.58), _circle(0.1, -0.58, 0.5)], [])
    if shape == "ring":
        return Outline([_circle(1.0)], [_circle(0.55)], [])
    if shape == "hexnut":
        hexagon = _circle(1.0, points=6)
        return Outline([hexagon], [_circle(0.45)], [_circle(0.78)])
    if shape == "tab":
        return Outline([_stadium(1.0, 0.5)], [_stadium(0.35, 0.12)], [])
    raise ValueError(f"unknown product shape {shape!r}")


def _to_pixels(points: np.ndarray, pose: Pose) -> np.ndarray:
    angle = np.radians(pose.angle_deg)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    xy = points @ rotation.T * pose.radius + (pose.cx, pose.cy)
    return np.round(xy * (1 << _SHIFT)).astype(np.int32)


def draw_product(shape: str, pose: Pose, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(product mask, groove mask) as bool (size, size); grooves lie inside the product."""
    unit = outline(shape)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [_to_pixels(p, pose) for p in unit.bodies], 1, cv2.LINE_8, _SHIFT)
    if unit.holes:
        cv2.fillPoly(mask, [_to_pixels(p, pose) for p in unit.holes], 0, cv2.LINE_8, _SHIFT)
    grooves = np.zeros((size, size), np.uint8)
    if unit.grooves:
        width = max(1, round(size / 160))
        cv2.polylines(grooves, [_to_pixels(p, pose) for p in unit.grooves], True, 1, width, cv2.LINE_8, _SHIFT)
    product = mask.astype(bool)
    return product, grooves.astype(bool) & product
