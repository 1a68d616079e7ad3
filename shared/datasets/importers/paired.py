"""Importer for folders where every image has its defect mask beside it (e.g. magnetic_tile:
`Imgs/NAME.jpg` + `Imgs/NAME.png`); an empty mask means a normal image.

Which file is the mask: with `--mask-suffix S` (non-empty), a file named `<stem>S.<ext>` is the
mask of the image `<stem>.<other ext>` in the same folder. With the default empty suffix, files
that share a stem pair up as image + mask, and the mask is the one in a lossless format
(`.png`, else `.bmp`/`.tif`): `a.jpg` + `a.png` works, `a.png` + `a.bmp` is ambiguous (name the
masks with a suffix then). Any image without exactly one mask is an error naming it.
"""

from collections import Counter, defaultdict
from pathlib import Path

from structlog.typing import FilteringBoundLogger

from lineinspect.shared.datasets.importers.files import check_images, image_files, require_folder, require_images
from lineinspect.shared.datasets.manifest import Label, ManifestRow
from lineinspect.shared.errors import DatasetError
from lineinspect.shared.logs import get_logger


def _log() -> FilteringBoundLogger:
    # Made per use: a logger bound at import keeps the stderr of that moment, which tests and
    # a re-configured CLI replace.
    return get_logger(__name__)


# Masks must be lossless, so with an empty suffix the lossless file of a pair is the mask.
_LOSSLESS = (".png", ".bmp", ".tif", ".tiff")


def import_paired(
    folder: str | Path,
    image_type: str,
    mask_suffix: str = "",
    types_from_folders: bool = False,
) -> list[ManifestRow]:
    """Rows for every (image, mask) pair under `folder`, labelled by the mask or, with
    `types_from_folders`, by the first folder under `folder` (see `_labels_from_folders`)."""
    root = require_folder(folder)
    files_by_folder: dict[Path, list[Path]] = defaultdict(list)
    for path in image_files(root):
        files_by_folder[path.parent].append(path)
    pairs: list[tuple[Path, Path]] = []
    for files in files_by_folder.values():
        pairs.extend(pair_folder(files, mask_suffix))
    require_images(len(pairs), root, "expected images with their defect masks beside them")
    pairs.sort()

    checked = check_images([image for image, _ in pairs], [mask for _, mask in pairs])
    has_defect = [bool(c.has_defect_pixels) for c in checked]
    if types_from_folders:
        labels = _labels_from_folders(root, pairs, has_defect)
    else:
        labels = [("anomaly" if defect else "normal", None, True) for defect in has_defect]
    return [
        ManifestRow(
            path=str(image),
            label=label,
            defect_type=defect_type,
            image_type=image_type,
            defect_mask=str(mask) if keep_mask else None,
        )
        for (image, mask), (label, defect_type, keep_mask) in zip(pairs, labels)
    ]


def pair_folder(files: list[Path], mask_suffix: str) -> list[tuple[Path, Path]]:
    """(image, mask) pairs among the image files of one folder; raises for unpaired files."""
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        by_stem[path.stem].append(path)
    if mask_suffix:
        return _pair_by_suffix(by_stem, mask_suffix)
    return _pair_by_extension(by_stem)


def _pair_by_suffix(by_stem: dict[str, list[Path]], suffix: str) -> list[tuple[Path, Path]]:
    pairs = []
    for stem, paths in by_stem.items():
        if stem.endswith(suffix) and stem[: -len(suffix)] in by_stem:
            continue  # a mask; picked up from its image below
        if stem.endswith(suffix):
            raise DatasetError(f"{paths[0]}: mask without an image (no {stem[: -len(suffix)]}.* beside it)")
        if len(paths) > 1:
            raise DatasetError(f"{paths[0]}: several images share the name {stem!r} ({_names(paths)}); keep one")
        image = paths[0]
        masks = by_stem.get(stem + suffix, [])
        if not masks:
            raise DatasetError(f"{image}: image has no defect mask beside it (expected {stem}{suffix}.png or .bmp)")
        if len(masks) > 1:
            raise DatasetError(f"{image}: several defect masks match ({_names(masks)}); keep one")
        pairs.append((image, masks[0]))
    return pairs


def _pair_by_extension(by_stem: dict[str, list[Path]]) -> list[tuple[Path, Path]]:
    pairs = []
    for stem, paths in by_stem.items():
        if len(paths) == 1:
            raise DatasetError(
                f"{paths[0]}: image has no defect mask beside it (expected {stem}.png beside a .jpg image, "
                "or name masks with a suffix and pass --mask-suffix)"
            )
        lossless = [p for p in paths if p.suffix.lower() in _LOSSLESS]
        if len(paths) > 2 or len(lossless) != 1:
            raise DatasetError(
                f"{paths[0]}: cannot tell image from mask among {_names(paths)}; "
                "name the masks with a suffix (e.g. NAME_mask.png) and pass --mask-suffix"
            )
        mask = lossless[0]
        image = next(p for p in paths if p != mask)
        pairs.append((image, mask))
    return pairs


def _labels_from_folders(
    root: Path, pairs: list[tuple[Path, Path]], has_defect: list[bool]
) -> list[tuple[Label, str | None, bool]]:
    """(label, defect type, keep the defect mask) per pair, from the first folder under root.

    A first-level folder whose masks are all empty holds normal images (magnetic_tile's
    MT_Free); any other folder names a defect type and every image in it is an anomaly, even one
    with an empty mask: the folder is the image-level label, and such a mask only says the
    defect was not outlined, so it is dropped (no pixel truth) rather than read as "no defect".
    Images directly in root are labelled by their mask, with no type.
    """
    def type_of(image: Path) -> str | None:
        parts = image.relative_to(root).parts
        return parts[0] if len(parts) > 1 else None

    types = [type_of(image) for image, _ in pairs]
    defect_folders = {t for t, defect in zip(types, has_defect) if t is not None and defect}
    labels: list[tuple[Label, str | None, bool]] = []
    unoutlined: Counter[str] = Counter()
    for folder_type, defect in zip(types, has_defect):
        if folder_type in defect_folders:
            labels.append(("anomaly", folder_type, defect))
            if not defect:
                unoutlined[folder_type] += 1
        else:
            labels.append(("anomaly" if defect else "normal", None, True))
    for folder_type, count in sorted(unoutlined.items()):
        _log().warning(
            "anomaly images with an empty defect mask; kept as anomalies without a mask",
            defect_type=folder_type,
            count=count,
        )
    return labels


def _names(paths: list[Path]) -> str:
    return ", ".join(p.name for p in paths)
