"""Importers on the real data sets under the data dir (skipped when they are absent): the
counts published in shared/data/DATA.md come out of the commands as documented."""

from collections import Counter
from pathlib import Path

import pytest

from lineinspect.shared.datasets.manifest import read_manifest

pytestmark = pytest.mark.slow


def test_magnetic_tile_paired_import_gives_published_counts(real_data, tmp_path: Path, cli) -> None:
    out = tmp_path / "m.jsonl"
    code, _, _ = cli("datasets", "import", "paired", real_data("magnetic_tile"), "--image-type", "tile",
                     "--types-from-folders", "--out", out)
    assert code == 0
    rows = read_manifest(out)
    assert Counter(r.label for r in rows) == {"normal": 952, "anomaly": 392}
    assert Counter(r.defect_type for r in rows if r.label == "anomaly") == {
        "MT_Blowhole": 115, "MT_Break": 85, "MT_Crack": 57, "MT_Fray": 32, "MT_Uneven": 103,
    }
    assert all(r.defect_type is None for r in rows if r.label == "normal")
    assert all(r.path.endswith(".jpg") for r in rows)


def test_neu_det_voc_import_finds_every_image_and_keeps_validation_as_test(real_data, tmp_path: Path, cli) -> None:
    out = tmp_path / "n.jsonl"
    code, _, _ = cli("datasets", "import", "voc", real_data("neu_det"), "--image-type", "steel", "--out", out)
    assert code == 0
    rows = read_manifest(out)
    assert len(rows) == 1800 and len({r.path for r in rows}) == 1800
    assert all(r.label == "anomaly" and r.boxes for r in rows)
    assert Counter(r.split for r in rows) == {"unassigned": 1770, "test": 30}
    assert all("Validation_Images" in r.path for r in rows if r.split == "test")
    assert {r.defect_type for r in rows} == {
        "crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches",
    }
    assert all(0 <= b.x1 < b.x2 <= 200 and 0 <= b.y1 < b.y2 <= 200 for r in rows for b in r.boxes)


def test_hazelnut_toy_mvtec_import_finds_every_mask(real_data, tmp_path: Path, cli) -> None:
    out = tmp_path / "h.jsonl"
    code, _, _ = cli("datasets", "import", "mvtec", real_data("hazelnut_toy"), "--image-type", "hazelnut", "--out", out)
    assert code == 0
    rows = read_manifest(out)
    assert Counter((r.split, r.label) for r in rows) == {("train", "normal"): 28, ("test", "normal"): 6,
                                                          ("test", "anomaly"): 17}
    assert all(r.product_mask and Path(r.product_mask).is_file() for r in rows)
    assert all(r.defect_mask and Path(r.defect_mask).is_file() for r in rows if r.label == "anomaly")
