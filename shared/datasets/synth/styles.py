"""The catalogue of synthetic image types: what product each one shows (shape, colour,
surface texture) and on what background, so that image types look clearly different."""

import re
from dataclasses import dataclass, replace

import cv2
import numpy as np

from lineinspect.shared.errors import DatasetError

Colour = tuple[int, int, int]  # BGR, like every image inside lineinspect


@dataclass(frozen=True)
class ProductStyle:
    """How one image type looks. Sizes are fractions of the image side."""

    name: str
    shape: str  # disc | plate | bracket | ring | hexnut | tab (see shapes.py)
    colour: Colour
    texture: str  # grain | brushed | speckle (see textures.py)
    texture_strength: float  # std of the surface texture, in grey levels
    background: Colour
    background_texture: str  # belt | mottled
    radius: float = 0.3  # product half-size


# The base families. More image types reuse a family with another colour and texture.
BASE_STYLES: tuple[ProductStyle, ...] = (
    ProductStyle("disc", "disc", (175, 170, 165), "brushed", 9.0, (70, 55, 40), "belt"),
    ProductStyle("plate", "plate", (185, 125, 60), "grain", 8.0, (60, 70, 70), "mottled"),
    ProductStyle("bracket", "bracket", (50, 130, 200), "speckle", 10.0, (95, 95, 95), "belt"),
    ProductStyle("ring", "ring", (60, 60, 65), "grain", 6.0, (165, 180, 185), "mottled", radius=0.32),
    ProductStyle("hexnut", "hexnut", (70, 150, 70), "brushed", 9.0, (40, 45, 45), "belt"),
    ProductStyle("tab", "tab", (210, 215, 212), "grain", 7.0, (90, 60, 110), "mottled"),
)
_TEXTURES = ("grain", "brushed", "speckle")


def image_type_names(count: int) -> list[str]:
    """The first `count` image type names: disc, plate, bracket, ring, hexnut, tab, disc2, ..."""
    if count < 1:
        raise DatasetError(f"need at least one image type, got {count}")
    names = []
    for index in range(count):
        base = BASE_STYLES[index % len(BASE_STYLES)].name
        generation = index // len(BASE_STYLES)
        names.append(base if generation == 0 else f"{base}{generation + 1}")
    return names


def style_for(image_type: str) -> ProductStyle:
    """The style of a catalogue name; `<family><n>` (n >= 2) is the family with its hue turned
    and another texture, so any number of distinct-looking image types can be made."""
    match = re.fullmatch(r"([a-z]+)(\d*)", image_type)
    bases = {s.name: s for s in BASE_STYLES}
    if not match or match.group(1) not in bases or match.group(2) in ("0", "1"):
        known = ", ".join(bases)
        raise DatasetError(f"unknown synthetic image type {image_type!r}; use one of {known} (or e.g. disc2)")
    base = bases[match.group(1)]
    generation = int(match.group(2) or 1) - 1
    if generation == 0:
        return base
    texture = _TEXTURES[(_TEXTURES.index(base.texture) + generation) % len(_TEXTURES)]
    return replace(
        base,
        name=image_type,
        colour=_turn_hue(base.colour, 37 * generation),
        background=_turn_hue(base.background, 61 * generation),
        texture=texture,
    )


def _turn_hue(colour: Colour, degrees: int) -> Colour:
    hsv = cv2.cvtColor(np.uint8([[colour]]), cv2.COLOR_BGR2HSV)[0, 0].astype(int)
    hsv[0] = (hsv[0] + degrees // 2) % 180  # OpenCV hue runs 0..179
    hsv[1] = max(hsv[1], 90)  # grey families gain some colour, or a turned hue would not show
    bgr = cv2.cvtColor(np.uint8([[hsv]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])
