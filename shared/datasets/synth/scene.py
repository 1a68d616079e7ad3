"""Rendering a defect-free frame: textured background, optional clutter, the product with its
surface texture, edge shading and shadow, then lighting and sensor noise.

Every random draw comes from the generator passed in, in a fixed order, so a generator state
gives one frame; defects are drawn afterwards by defects.py.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from lineinspect.shared.datasets.synth import textures
from lineinspect.shared.datasets.synth.shapes import Pose, draw_product
from lineinspect.shared.datasets.synth.styles import ProductStyle


@dataclass(frozen=True)
class Scene:
    """A rendered defect-free frame and what is where in it."""

    image: np.ndarray  # uint8 BGR (size, size, 3)
    product_mask: np.ndarray  # bool (size, size)
    pose: Pose


def random_pose(rng: np.random.Generator, style: ProductStyle, size: int) -> Pose:
    """A little shift, any rotation, +-10 % scale: products never sit exactly the same."""
    return Pose(
        cx=size * (0.5 + rng.uniform(-0.05, 0.05)),
        cy=size * (0.5 + rng.uniform(-0.05, 0.05)),
        angle_deg=float(rng.uniform(0.0, 360.0)),
        radius=size * style.radius * float(rng.uniform(0.9, 1.1)),
    )


def _jittered(colour: tuple[int, int, int], rng: np.random.Generator, spread: float) -> np.ndarray:
    return np.asarray(colour, np.float32) + rng.uniform(-spread, spread, 3).astype(np.float32)


def _background(rng: np.random.Generator, style: ProductStyle, size: int) -> np.ndarray:
    shape = (size, size)
    if style.background_texture == "belt":
        field = 6.0 * textures.belt(rng, shape) + 4.0 * textures.mottle(rng, shape, 4)
    else:
        field = 9.0 * textures.mottle(rng, shape, 8) + 3.5 * textures.grain(rng, shape, 1.2)
    return _jittered(style.background, rng, 6.0)[None, None, :] + field[..., None]


def _clutter(rng: np.random.Generator, image: np.ndarray, keep_out: np.ndarray) -> None:
    """Distracting objects on the belt (screws, offcuts, wires, tape), drawn behind the product
    only, so the product mask stays exact while whole-frame scores get noisy."""
    size = image.shape[0]
    layer = np.zeros_like(image)
    covered = np.zeros((size, size), np.uint8)
    grain = 1 + 0.08 * textures.grain(rng, (size, size), 0.8)[..., None]
    for _ in range(int(rng.integers(3, 9))):
        item = np.zeros((size, size), np.uint8)
        kind = int(rng.integers(0, 4))
        x, y = (int(v) for v in rng.integers(0, size, 2))
        r = int(size * rng.uniform(0.03, 0.09))
        if kind == 0:  # washer or screw head
            cv2.circle(item, (x, y), r, 1, -1)
        elif kind == 1:  # offcut
            box = ((x, y), (2 * r, r * rng.uniform(0.4, 1.2)), rng.uniform(0, 180))
            cv2.fillPoly(item, [cv2.boxPoints(box).astype(np.int32)], 1)
        elif kind == 2:  # wire
            points = np.cumsum(rng.normal(0, size * 0.04, (6, 2)), axis=0) + (x, y)
            cv2.polylines(item, [points.astype(np.int32)], False, 1, max(3, size // 64))
        else:  # tape
            triangle = rng.integers(-2 * r, 2 * r, (3, 2)) + (x, y)
            cv2.fillPoly(item, [triangle.astype(np.int32)], 1)
        colour = rng.uniform(20, 235, 3).astype(np.float32)
        layer[item.astype(bool)] = colour
        covered |= item
    where = covered.astype(bool) & ~keep_out
    image[where] = (layer * grain)[where]


def render_scene(style: ProductStyle, rng: np.random.Generator, size: int, clutter: bool) -> Scene:
    """A defect-free frame of `style` with its exact product mask."""
    pose = random_pose(rng, style, size)
    product, grooves = draw_product(style.shape, pose, size)
    image = _background(rng, style, size)
    # Clutter draws from its own generator, taken whether or not it is used, so the same state
    # renders the same product with and without clutter.
    clutter_rng = np.random.default_rng(rng.integers(2**63))
    if clutter:
        _clutter(clutter_rng, image, product)

    # A soft shadow cast down-right; it falls on the background only.
    shadow = cv2.GaussianBlur(product.astype(np.float32), (0, 0), size * 0.015)
    shift = np.float32([[1, 0, size * 0.02], [0, 1, size * 0.025]])
    shadow = cv2.warpAffine(shadow, shift, (size, size))
    image *= 1.0 - 0.3 * shadow[..., None]

    # The product: its colour, its surface texture turned with it, darker bevelled edges, and
    # engraved grooves as part of its normal look.
    shape2d = (size, size)
    surface = style.texture_strength * textures.surface(rng, style.texture, shape2d, pose.angle_deg)
    surface += 0.6 * style.texture_strength * textures.mottle(rng, shape2d, 5)
    inside = cv2.distanceTransform(product.astype(np.uint8), cv2.DIST_L2, 3)
    bevel = 1.0 - 0.22 * np.exp(-inside / (size * 0.012))
    body = (_jittered(style.colour, rng, 5.0)[None, None, :] + surface[..., None]) * bevel[..., None]
    body[grooves] *= 0.7
    image[product] = body[product]

    # Lighting: overall gain, a linear gradient across the frame and a slight colour cast.
    gain = rng.uniform(0.88, 1.12)
    direction = rng.uniform(0, 2 * np.pi)
    slope = rng.uniform(0.0, 0.25)
    axis = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    ramp = np.cos(direction) * axis[None, :] + np.sin(direction) * axis[:, None]
    light = gain * (1.0 + slope * ramp)
    cast = rng.uniform(0.97, 1.03, 3).astype(np.float32)
    image *= light[..., None] * cast[None, None, :]

    image += 1.8 * rng.standard_normal(image.shape, dtype=np.float32)  # sensor noise
    return Scene(np.clip(np.rint(image), 0, 255).astype(np.uint8), product, pose)
