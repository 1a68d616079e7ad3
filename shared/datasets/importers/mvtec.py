"""Importer for MVTec-AD-style folders: `train/good`, `test/good`, `test/<type>`, with defect
masks in `ground_truth/<type>/` and optional product masks in `product_masks/`.

Defect masks may be named `<name>_mask.png` (MVTec) or `<name>.png` (e.g. hazelnut_toy).
"""

from pathlib import Path

from structlog.typing import FilteringBoundLogger

from lineinspect.shared.datasets.importers.files import (
    NORMAL_FOLDER_NAMES,
    check_images,
    image_files,
    require_folder,
    require_images,
    subfolders,
)
from lineinspect.shared.datasets.manifest import Label, ManifestRow, Split
from lineinspect.shared.errors import DatasetError
from lineinspect.shared.logs import get_logger


def _log() -> FilteringBoundLogger:
    # Made per use: a logger bound at import keeps the stderr of that moment, which tests and
    # a re-configured CLI replace.
    return get_logger(__name__)


def defect_mask_candidates(root: Path, defect_type: str, image: Path) -> list[Path]:
    """Where the defect mask of `test/<defect_type>/<image>` may be, in order of preference."""
    folder = root / "ground_truth" / defect_type
    return [folder / f"{image.stem}_mask.png", folder / f"{image.stem}.png"]


def product_mask_path(root: Path, image: Path) -> Path:
    """`product_masks/<image path relative to root, with .png>`."""
    return (root / "product_masks" / image.relative_to(root)).with_suffix(".png")


def import_mvtec(folder: str | Path, image_type: str, allow_missing_masks: bool = False) -> list[ManifestRow]:
    """Rows for every image: train/good -> normal/train, test/good -> normal/test, test/<type> ->
    anomaly/test with its defect mask. A missing defect mask is an error unless allowed."""
    root = require_folder(folder)
    if not (root / "train").is_dir() and not (root / "test").is_dir():
        raise DatasetError(f"{root}: not an MVTec-style folder (expected train/good/ and test/<type>/ inside)")

    entries: list[tuple[Path, Split, Label, str | None, Path | None]] = []
    for image in image_files(root / "train" / "good"):
        entries.append((image, "train", "normal", None, None))
    test = root / "test"
    for type_folder in subfolders(test) if test.is_dir() else []:
        normal = type_folder.name in NORMAL_FOLDER_NAMES
        for image in image_files(type_folder):
            if normal:
                entries.append((image, "test", "normal", None, None))
                continue
            mask = _find_defect_mask(root, type_folder.name, image, allow_missing_masks)
            entries.append((image, "test", "anomaly", type_folder.name, mask))
    require_images(len(entries), root, "looked in train/good/ and test/*/")

    product_masks = [product_mask_path(root, image) for image, *_ in entries]
    product_masks = [p if p.is_file() else None for p in product_masks]
    missing_products = sum(p is None for p in product_masks)
    if (root / "product_masks").is_dir() and missing_products:
        _log().warning("some images have no product mask", folder=str(root), missing=missing_products)

    check_images([e[0] for e in entries], [e[4] for e in entries], product_masks)
    return [
        ManifestRow(
            path=str(image),
            split=split,
            label=label,
            defect_type=defect_type,
            image_type=image_type,
            defect_mask=str(mask) if mask else None,
            product_mask=str(product) if product else None,
        )
        for (image, split, label, defect_type, mask), product in zip(entries, product_masks)
    ]


def _find_defect_mask(root: Path, defect_type: str, image: Path, allow_missing: bool) -> Path | None:
    candidates = defect_mask_candidates(root, defect_type, image)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = " or ".join(str(c.relative_to(root)) for c in candidates)
    if not allow_missing:
        raise DatasetError(
            f"{image}: anomaly image has no defect mask (looked for {looked}); "
            "add it or pass --allow-missing-masks"
        )
    _log().warning("anomaly image has no defect mask", image=str(image), looked_for=looked)
    return None
