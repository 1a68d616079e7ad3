"""Importer for plain folders: a flat folder of images with one label, or one subfolder per
label (`good`/`normal`/`ok` = normal, `unknown`/`unlabelled` = unknown, any other name = an
anomaly of that defect type)."""

from pathlib import Path

from lineinspect.shared.datasets.importers.files import (
    NORMAL_FOLDER_NAMES,
    UNKNOWN_FOLDER_NAMES,
    check_images,
    image_files,
    require_folder,
    require_images,
    subfolders,
)
from lineinspect.shared.datasets.manifest import Label, ManifestRow
from lineinspect.shared.errors import DatasetError


def label_of_folder(name: str) -> tuple[Label, str | None]:
    """(label, defect type) that a label folder's name stands for."""
    lowered = name.lower()
    if lowered in NORMAL_FOLDER_NAMES:
        return "normal", None
    if lowered in UNKNOWN_FOLDER_NAMES:
        return "unknown", None
    return "anomaly", name


def import_folder(folder: str | Path, image_type: str, label: Label = "normal") -> list[ManifestRow]:
    """Rows for a flat folder (every image gets `label`) or a folder of label folders
    (images found recursively inside each; `label` is then not used)."""
    root = require_folder(folder)
    top_images = image_files(root, recursive=False)
    label_folders = [f for f in subfolders(root) if image_files(f)]
    if top_images and label_folders:
        raise DatasetError(
            f"{root}: has both images and subfolders of images; use a flat folder of images or one "
            f"subfolder per label (move {top_images[0].name} and the others into good/ or a defect-type folder)"
        )
    entries: list[tuple[Path, Label, str | None]] = []
    if top_images:
        defect_type = None
        entries = [(image, label, defect_type) for image in top_images]
    for label_folder in label_folders:
        folder_label, defect_type = label_of_folder(label_folder.name)
        entries.extend((image, folder_label, defect_type) for image in image_files(label_folder))
    require_images(len(entries), root, "expected images, or subfolders such as good/ holding images")
    check_images([image for image, _, _ in entries])
    return [
        ManifestRow(path=str(image), label=row_label, defect_type=defect_type, image_type=image_type)
        for image, row_label, defect_type in entries
    ]
