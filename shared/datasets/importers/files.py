"""Finding image files under a dataset folder and checking that every image and mask decodes.

Every importer goes through here, so a corrupt or mismatched file is reported at import time,
naming the file, instead of half-way through training.
"""

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2

from lineinspect.shared.errors import DatasetError, ImageReadError
from lineinspect.shared.images import IMAGE_EXTENSIONS, read_mask

# Folder names that mean "defect-free" or "not labelled" wherever a layout labels by folder.
NORMAL_FOLDER_NAMES = frozenset({"good", "normal", "ok"})
UNKNOWN_FOLDER_NAMES = frozenset({"unknown", "unlabelled", "unlabeled"})


def require_folder(path: str | Path) -> Path:
    """The folder as an absolute path; DatasetError when it is not a folder."""
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise DatasetError(f"{folder}: dataset folder not found")
    return folder


def is_image_file(path: Path) -> bool:
    # Hidden files (macOS `._x.png`, editor backups) are never images of the data set.
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def image_files(folder: Path, recursive: bool = True) -> list[Path]:
    """Image files in a folder (and its subfolders), sorted so imports are reproducible."""
    if not folder.is_dir():
        return []
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in candidates if is_image_file(p) and not is_hidden(p, folder))


def is_hidden(path: Path, root: Path) -> bool:
    """Inside a hidden folder under root (`.ipynb_checkpoints/`, `.cache/`): not data."""
    return any(part.startswith(".") for part in path.relative_to(root).parts[:-1])


def subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


@dataclass(frozen=True)
class CheckedImage:
    """What the check learned about one image and its masks."""

    height: int
    width: int
    # None when no defect mask was given; else whether any mask pixel is > 127.
    has_defect_pixels: bool | None


def _image_size(path: Path) -> tuple[int, int]:
    if not path.is_file():
        raise ImageReadError(f"{path}: image file not found")
    # IMREAD_UNCHANGED skips colour conversion: the check only needs a full, successful decode.
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageReadError(f"{path}: not a readable image (corrupt or unsupported format); fix or remove it")
    return int(image.shape[0]), int(image.shape[1])


def _check_one(item: tuple[Path, Path | None, Path | None]) -> CheckedImage:
    image_path, defect_mask, product_mask = item
    height, width = _image_size(image_path)
    has_defect: bool | None = None
    for mask_path, kind in ((defect_mask, "defect"), (product_mask, "product")):
        if mask_path is None:
            continue
        mask = read_mask(mask_path)
        if mask.shape != (height, width):
            raise DatasetError(
                f"{mask_path}: {kind} mask is {mask.shape[1]}x{mask.shape[0]} but its image {image_path} "
                f"is {width}x{height}; a mask must match its image's size"
            )
        if kind == "defect":
            has_defect = bool(mask.any())
    return CheckedImage(height, width, has_defect)


def check_images(
    images: Sequence[Path],
    defect_masks: Sequence[Path | None] | None = None,
    product_masks: Sequence[Path | None] | None = None,
) -> list[CheckedImage]:
    """Decode every image and mask (in threads: OpenCV releases the GIL while decoding).

    Raises the error of the first bad file in input order, so the message is reproducible.
    """
    count = len(images)
    defect_masks = list(defect_masks) if defect_masks is not None else [None] * count
    product_masks = list(product_masks) if product_masks is not None else [None] * count
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_check_one, zip(images, defect_masks, product_masks)))


def require_images(rows_found: int, folder: Path, what: str) -> None:
    if rows_found == 0:
        raise DatasetError(f"{folder}: no images found ({what})")
