"""Writing a synthetic data set to disk: PNG images, product masks and defect masks per image
type, and a manifest (split `unassigned`) listing them with absolute paths."""

import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lineinspect.shared.datasets.manifest import DefectBox, ManifestRow, write_manifest
from lineinspect.shared.datasets.synth.defects import DEFECT_TYPES
from lineinspect.shared.datasets.synth.sample import SyntheticSample, generate_sample
from lineinspect.shared.datasets.synth.styles import image_type_names, style_for
from lineinspect.shared.errors import DatasetError
from lineinspect.shared.images import write_image

MANIFEST_NAME = "manifest.jsonl"


def sample_rng(seed: int, image_type: str, index: int) -> np.random.Generator:
    """The generator of one sample: keyed by image type name and index, so sample 7 of `disc`
    is the same whatever else is generated, and samples can be made in any order."""
    return np.random.default_rng([seed, zlib.crc32(image_type.encode("utf-8")), index])


def defect_plan(seed: int, image_type: str, count: int, anomaly_fraction: float,
                defect_types: Sequence[str] = DEFECT_TYPES) -> list[str | None]:
    """Which samples get which defect: round(fraction * count) anomalies at seeded positions,
    the defect types taking turns so each is about equally common."""
    n_anomalies = min(count, int(np.floor(anomaly_fraction * count + 0.5)))
    rng = np.random.default_rng([seed, zlib.crc32(image_type.encode("utf-8")), 2**32 - 1])
    plan: list[str | None] = [None] * count
    # A seeded starting point in the rotation, so small sets of several image types still
    # cover every defect type between them.
    start = int(rng.integers(len(defect_types)))
    for k, position in enumerate(rng.permutation(count)[:n_anomalies]):
        plan[int(position)] = defect_types[(start + k) % len(defect_types)]
    return plan


def _row(out_dir: Path, sample: SyntheticSample, index: int) -> ManifestRow:
    stem = f"{sample.image_type}/{sample.image_type}_{index:04d}.png"
    image_path, product_path = out_dir / "images" / stem, out_dir / "product_masks" / stem
    write_image(image_path, sample.image)
    write_image(product_path, sample.product_mask)
    defect_path, boxes = None, []
    if sample.defect_type is not None:
        defect_path = out_dir / "defect_masks" / stem
        write_image(defect_path, sample.defect_mask)
        ys, xs = np.nonzero(sample.defect_mask)
        boxes = [DefectBox(x1=int(xs.min()), y1=int(ys.min()), x2=int(xs.max()) + 1, y2=int(ys.max()) + 1,
                           defect_type=sample.defect_type)]
    return ManifestRow(
        path=str(image_path),
        label="anomaly" if sample.defect_type else "normal",
        defect_type=sample.defect_type,
        image_type=sample.image_type,
        defect_mask=str(defect_path) if defect_path else None,
        product_mask=str(product_path),
        boxes=boxes,
    )


def synthesize_dataset(
    out_dir: str | Path,
    image_types: int | Sequence[str],
    count: int,
    seed: int = 0,
    size: int = 256,
    anomaly_fraction: float = 0.3,
    clutter: bool = False,
) -> Path:
    """Generate `count` samples per image type under `out_dir`; returns the manifest path."""
    names = image_type_names(image_types) if isinstance(image_types, int) else list(image_types)
    for name in names:
        style_for(name)  # fail on a bad name before writing anything
    if count < 1 or size < 64 or not 0.0 <= anomaly_fraction <= 1.0:
        raise DatasetError(
            f"need count >= 1, size >= 64 and 0 <= anomaly fraction <= 1 (got {count}, {size}, {anomaly_fraction:g})"
        )
    out = Path(out_dir).expanduser().resolve()
    jobs = [
        (name, index, defect)
        for name in names
        for index, defect in enumerate(defect_plan(seed, name, count, anomaly_fraction))
    ]

    def make(job: tuple[str, int, str | None]) -> ManifestRow:
        name, index, defect = job
        sample = generate_sample(name, sample_rng(seed, name, index), size, defect, clutter)
        return _row(out, sample, index)

    # numpy and OpenCV release the GIL in the heavy parts; map keeps the rows in job order.
    with ThreadPoolExecutor(max_workers=8) as pool:
        rows = list(pool.map(make, jobs))
    manifest = out / MANIFEST_NAME
    write_manifest(manifest, rows)
    return manifest
