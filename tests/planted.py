"""Generated frames with one planted defect box, for the detector's tests."""

from pathlib import Path

import cv2
import numpy as np

from lineinspect.shared.datasets.manifest import DefectBox, ManifestRow

DEFECT_TYPES = ("spot", "scratch")


def planted_frame(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, DefectBox]:
    """Grey textured steel with one planted defect: a bright square `spot` or a long dark
    horizontal `scratch`; returns the frame and its box."""
    image = np.clip(rng.normal(120, 12, (size, size)), 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        side = int(rng.integers(size // 5, size // 3))
        x, y = (int(v) for v in rng.integers(0, size - side, 2))
        image[y : y + side, x : x + side] = 230
        box = DefectBox(x1=x, y1=y, x2=x + side, y2=y + side, defect_type="spot")
    else:
        length, thick = int(rng.integers(size // 2, size - 4)), int(rng.integers(size // 16, size // 8))
        x, y = int(rng.integers(0, size - length)), int(rng.integers(0, size - thick))
        image[y : y + thick, x : x + length] = 25
        box = DefectBox(x1=x, y1=y, x2=x + length, y2=y + thick, defect_type="scratch")
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), box


def planted_rows(folder: Path, count: int, rng: np.random.Generator, image_type: str = "steel") -> list[ManifestRow]:
    """`count` planted frames written to `folder`, as train rows with their boxes."""
    rows = []
    for index in range(count):
        image, box = planted_frame(rng)
        path = folder / f"{index}.png"
        cv2.imwrite(str(path), image)
        rows.append(ManifestRow(path=str(path), split="train", label="anomaly", defect_type=box.defect_type,
                                image_type=image_type, boxes=[box]))
    return rows
