"""Seeded synthetic products on backgrounds with exact product and defect masks, for tests,
the demo, the camera simulator and training a mask finder.

`generate_sample` makes one frame in memory; `synthesize_dataset` writes a folder and manifest.
"""

from lineinspect.shared.datasets.synth.dataset import MANIFEST_NAME, synthesize_dataset
from lineinspect.shared.datasets.synth.defects import DEFECT_TYPES
from lineinspect.shared.datasets.synth.sample import SyntheticSample, generate_sample
from lineinspect.shared.datasets.synth.styles import BASE_STYLES, image_type_names, style_for

__all__ = [
    "BASE_STYLES",
    "DEFECT_TYPES",
    "MANIFEST_NAME",
    "SyntheticSample",
    "generate_sample",
    "image_type_names",
    "style_for",
    "synthesize_dataset",
]
