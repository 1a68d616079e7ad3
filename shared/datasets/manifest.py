"""The dataset manifest: JSON Lines, one `ManifestRow` per image.

Paths are stored absolute by the importers; a relative path in a hand-written manifest is
resolved against the manifest file's folder.
"""

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lineinspect.shared.errors import DatasetError

Label = Literal["normal", "anomaly", "unknown"]
# `unassigned` until `datasets split` places the row; `validation` is for early stopping.
Split = Literal["unassigned", "train", "validation", "calibration", "test"]


class DefectBox(BaseModel):
    """A labelled defect box in 0-based pixel coordinates (x1, y1 inclusive; x2, y2 exclusive),
    so its width is x2 - x1. Pascal VOC boxes are 1-based and inclusive: the VOC importer stores
    x1 = xmin - 1, x2 = xmax (same for y)."""

    model_config = ConfigDict(extra="forbid")
    x1: float
    y1: float
    x2: float
    y2: float
    defect_type: str


class ManifestRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    split: Split = "unassigned"
    label: Label
    defect_type: str | None = None
    image_type: str
    defect_mask: str | None = None
    product_mask: str | None = None
    boxes: list[DefectBox] = Field(default_factory=list)


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """All rows of a manifest, with relative paths resolved against its folder."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: manifest not found (create one with `lineinspect datasets import ...`)")
    base = path.resolve().parent
    rows: list[ManifestRow] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = ManifestRow.model_validate_json(line)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "row"
                raise DatasetError(f"{path}:{number}: invalid manifest row ({where}: {first['msg']})") from exc
            rows.append(_resolved(row, base))
    if not rows:
        raise DatasetError(f"{path}: manifest has no rows")
    return rows


def _resolved(row: ManifestRow, base: Path) -> ManifestRow:
    updates = {}
    for field in ("path", "defect_mask", "product_mask"):
        value = getattr(row, field)
        if value is not None and not Path(value).is_absolute():
            updates[field] = str(base / value)
    return row.model_copy(update=updates) if updates else row


def write_manifest(path: str | Path, rows: Iterable[ManifestRow]) -> int:
    """Write rows as JSON Lines; returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(row.model_dump_json(exclude_defaults=False) + "\n")
            count += 1
    return count


def select(rows: Iterable[ManifestRow], split: str | None = None, label: str | None = None) -> list[ManifestRow]:
    return [r for r in rows if (split is None or r.split == split) and (label is None or r.label == label)]
