"""Importer for Pascal VOC detection data: XML annotation files with boxes, each naming its
image, which lies in a sibling images folder (e.g. neu_det: ANNOTATIONS/ + IMAGES/,
Validation_Annotations/ + Validation_Images/)."""

import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from lineinspect.shared.datasets.importers.files import (
    check_images,
    is_hidden,
    is_image_file,
    require_folder,
    require_images,
)
from lineinspect.shared.datasets.manifest import DefectBox, ManifestRow, Split
from lineinspect.shared.errors import DatasetError
from lineinspect.shared.images import IMAGE_EXTENSIONS

# An image folder whose name has one of these words holds a published held-out set: its rows
# are marked `test` so that `datasets split` keeps them out of training.
_HELD_OUT_WORDS = frozenset({"val", "validation", "test", "testing"})


def import_voc(folder: str | Path, image_type: str) -> list[ManifestRow]:
    """One row per XML file under `folder`: anomaly with its boxes (defect type = the most
    frequent box type), or normal when the XML has no boxes."""
    root = require_folder(folder)
    annotations = sorted(
        p for p in root.rglob("*.xml") if p.is_file() and not p.name.startswith(".") and not is_hidden(p, root)
    )
    require_images(len(annotations), root, "no Pascal VOC .xml annotation files")
    rows: list[ManifestRow] = []
    for xml_path in annotations:
        filename, boxes = read_annotation(xml_path)
        image = find_image(xml_path, filename)
        types = Counter(box.defect_type for box in boxes)
        rows.append(
            ManifestRow(
                path=str(image),
                split=held_out_split(image.parent),
                label="anomaly" if boxes else "normal",
                # most_common keeps first-seen order on ties, so the choice is reproducible.
                defect_type=types.most_common(1)[0][0] if boxes else None,
                image_type=image_type,
                boxes=boxes,
            )
        )
    duplicates = [path for path, n in Counter(r.path for r in rows).items() if n > 1]
    if duplicates:
        raise DatasetError(f"{duplicates[0]}: image is named by more than one annotation file; keep one")
    check_images([Path(r.path) for r in rows])
    return rows


def read_annotation(xml_path: Path) -> tuple[str, list[DefectBox]]:
    """The image file name and the boxes of one VOC XML file.

    VOC pixel indices are 1-based and inclusive (the devkit's convention; neu_det's boxes run
    from 1 to 200 on 200-px images), so x1 = xmin - 1 and x2 = xmax: 0-based, x2 exclusive.
    """
    try:
        tree = ET.parse(xml_path)
    except ET.ParseError as exc:
        raise DatasetError(f"{xml_path}: not a valid VOC XML file ({exc})") from exc
    root = tree.getroot()
    filename = (root.findtext("filename") or "").strip()
    if not filename:
        raise DatasetError(f"{xml_path}: annotation has no <filename>")
    boxes = []
    for number, obj in enumerate(root.iter("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        try:
            xmin, ymin, xmax, ymax = (float(obj.findtext(f"bndbox/{k}", "")) for k in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError as exc:
            raise DatasetError(f"{xml_path}: object {number} has no valid <bndbox> (xmin, ymin, xmax, ymax)") from exc
        if not name or xmax < xmin or ymax < ymin:
            raise DatasetError(f"{xml_path}: object {number} needs a <name> and xmax >= xmin, ymax >= ymin")
        boxes.append(DefectBox(x1=max(xmin - 1, 0.0), y1=max(ymin - 1, 0.0), x2=xmax, y2=ymax, defect_type=name))
    return filename, boxes


def image_folders_for(annotation_folder: Path) -> list[Path]:
    """Folders to look for the images of one annotation folder, most likely first: the sibling
    named like it with "Annotations" -> "Images", VOC's JPEGImages, the folder itself, then every
    other sibling."""
    parent = annotation_folder.parent
    twin = re.sub("annotations?", "images", annotation_folder.name, flags=re.IGNORECASE)
    siblings = sorted(p for p in parent.iterdir() if p.is_dir() and p != annotation_folder)
    by_lower = {p.name.lower(): p for p in siblings}
    ordered = [by_lower.get(twin.lower()), by_lower.get("jpegimages"), annotation_folder, *siblings]
    unique: list[Path] = []
    for folder in ordered:
        if folder is not None and folder not in unique:
            unique.append(folder)
    return unique


def find_image(xml_path: Path, filename: str) -> Path:
    """The image an annotation names. Some files omit the extension (neu_det's `patches_104`)."""
    name = Path(filename).name
    names = [name] if Path(name).suffix.lower() in IMAGE_EXTENSIONS else []
    names += [Path(name).stem + ext for ext in IMAGE_EXTENSIONS] + [name + ext for ext in IMAGE_EXTENSIONS]
    folders = image_folders_for(xml_path.parent)
    for folder in folders:
        for candidate in names:
            path = folder / candidate
            if is_image_file(path):
                return path
    raise DatasetError(
        f"{xml_path}: image {filename!r} not found (looked in {', '.join(f.name + '/' for f in folders)})"
    )


def held_out_split(image_folder: Path) -> Split:
    """`test` for an image folder named as a validation/test set (Validation_Images), else
    `unassigned`."""
    words = {w for w in re.split(r"[^a-z0-9]+", image_folder.name.lower()) if w}
    return "test" if words & _HELD_OUT_WORDS else "unassigned"
