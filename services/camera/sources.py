"""Where simulated cameras get their images: a folder, a video file, a manifest (with its
labels as ground truth), or the seeded synthetic generator (with exact ground truth)."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count as counter
from pathlib import Path

import cv2
import numpy as np

from lineinspect.shared.datasets.manifest import read_manifest
from lineinspect.shared.datasets.synth.dataset import defect_plan, sample_rng
from lineinspect.shared.datasets.synth.sample import generate_sample
from lineinspect.shared.errors import ImageReadError, LineinspectError
from lineinspect.shared.images import IMAGE_EXTENSIONS, decode_image, encoded_format, read_mask


@dataclass(frozen=True)
class Shot:
    """One image a camera is about to publish, with what is known about it."""

    image: np.ndarray  # uint8 BGR
    image_type: str
    truth: str | None = None  # "normal" | "anomaly" when known (manifest, synthetic)
    source: str = ""
    metadata: dict = field(default_factory=dict)
    product_mask: np.ndarray | None = None  # bool, when the true product mask is known (labels)
    # The image as a PNG or JPEG file already has it: published as it is, when the camera's
    # encoding matches, instead of encoded again (no CPU, no second JPEG loss).
    encoded: bytes | None = None


def read_shot_image(path: Path) -> tuple[np.ndarray, bytes | None]:
    """The image of a file, read once: decoded, and the file's bytes when a frame can carry
    them as they are (a PNG or JPEG, not a BMP or TIFF)."""
    if not path.is_file():
        raise ImageReadError(f"{path}: image file not found")
    data = path.read_bytes()
    return decode_image(data, what=str(path)), (data if encoded_format(data) is not None else None)


def folder_shots(folder: Path, image_type: str) -> Iterator[Shot]:
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise LineinspectError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    for path in paths:
        image, encoded = read_shot_image(path)
        yield Shot(image, image_type, source=str(path), encoded=encoded)


def video_shots(path: Path, image_type: str) -> Iterator[Shot]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise LineinspectError(f"{path}: not a video OpenCV can read")
    try:
        for index in counter():
            ok, image = capture.read()
            if not ok:
                return
            yield Shot(image, image_type, source=f"{path}#{index}")
    finally:
        capture.release()


def manifest_shots(path: Path, split: str | None = None) -> Iterator[Shot]:
    rows = [row for row in read_manifest(path) if split is None or row.split == split]
    if not rows:
        raise LineinspectError(f"{path}: no rows" + (f" in split {split!r}" if split else ""))
    for row in rows:
        truth = row.label if row.label in ("normal", "anomaly") else None
        metadata = {"defect_type": row.defect_type} if row.defect_type else {}
        image, encoded = read_shot_image(Path(row.path))
        yield Shot(image, row.image_type, truth, row.path, metadata,
                   read_mask(row.product_mask) if row.product_mask else None, encoded)


def synthetic_shots(image_type: str, seed: int = 1000, size: int = 256, anomaly_fraction: float = 0.3) -> Iterator[Shot]:
    """An endless seeded stream of one image type; the seed differs from training data's (0)."""
    block = 100
    for start in counter(0, block):
        plan = defect_plan(seed + start, image_type, block, anomaly_fraction)
        for offset, defect in enumerate(plan):
            sample = generate_sample(image_type, sample_rng(seed, image_type, start + offset), size, defect)
            yield Shot(
                sample.image, image_type, "anomaly" if defect else "normal", f"synthetic:{image_type}:{start + offset}",
                {"defect_type": defect} if defect else {}, sample.product_mask,
            )
