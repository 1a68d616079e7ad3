"""One synthetic frame: a product of an image type, optionally with one defect, and its exact
product and defect masks. Importable without files (the camera simulator and tests use it)."""

from dataclasses import dataclass

import numpy as np

from lineinspect.shared.datasets.synth.defects import draw_defect
from lineinspect.shared.datasets.synth.scene import render_scene
from lineinspect.shared.datasets.synth.styles import style_for


@dataclass(frozen=True)
class SyntheticSample:
    image: np.ndarray  # uint8 BGR (size, size, 3)
    product_mask: np.ndarray  # bool (size, size), True = product
    defect_mask: np.ndarray  # bool (size, size), all False for a normal sample
    defect_type: str | None
    image_type: str


def generate_sample(
    image_type: str,
    rng: np.random.Generator,
    size: int = 256,
    defect_type: str | None = None,
    clutter: bool = False,
) -> SyntheticSample:
    """Render one frame. The defect is drawn last, so the same generator state with
    `defect_type=None` gives the same frame without the defect (tests rely on this)."""
    scene = render_scene(style_for(image_type), rng, size, clutter)
    if defect_type is None:
        return SyntheticSample(scene.image, scene.product_mask, np.zeros_like(scene.product_mask), None, image_type)
    image, defect_mask = draw_defect(rng, scene.image, scene.product_mask, defect_type)
    return SyntheticSample(image, scene.product_mask, defect_mask, defect_type, image_type)
