"""Importers turn the folder layouts users have into manifests, and name the file at fault
when the input is bad."""

import json
from pathlib import Path

import pytest

from lineinspect.shared.datasets.manifest import read_manifest


def rows_by_name(manifest: Path, root: Path) -> dict[str, dict]:
    return {str(Path(r.path).relative_to(root)): r.model_dump() for r in read_manifest(manifest)}


# --- MVTec ---------------------------------------------------------------------------------


@pytest.fixture
def mvtec_tree(tmp_path: Path, write_image) -> Path:
    root = tmp_path / "mvtec"
    write_image(root / "train/good/000.png")
    write_image(root / "train/good/001.png")
    write_image(root / "test/good/000.png")
    write_image(root / "test/crack/000.png")
    write_image(root / "ground_truth/crack/000_mask.png", marked=True)  # MVTec naming
    write_image(root / "test/colour/01.jpg")
    write_image(root / "ground_truth/colour/01.png", marked=True)  # hazelnut_toy naming
    write_image(root / "product_masks/train/good/000.png", marked=True)
    write_image(root / "product_masks/test/colour/01.png", marked=True)
    return root


def test_mvtec_layout_gives_splits_labels_and_both_mask_namings(mvtec_tree: Path, tmp_path: Path, cli) -> None:
    out = tmp_path / "m.jsonl"
    code, stdout, _ = cli("datasets", "import", "mvtec", mvtec_tree, "--image-type", "part", "--out", out)
    assert code == 0 and str(out) in stdout
    rows = rows_by_name(out, mvtec_tree)
    assert {name: (r["split"], r["label"], r["defect_type"]) for name, r in rows.items()} == {
        "train/good/000.png": ("train", "normal", None),
        "train/good/001.png": ("train", "normal", None),
        "test/good/000.png": ("test", "normal", None),
        "test/crack/000.png": ("test", "anomaly", "crack"),
        "test/colour/01.jpg": ("test", "anomaly", "colour"),
    }
    assert rows["test/crack/000.png"]["defect_mask"] == str(mvtec_tree / "ground_truth/crack/000_mask.png")
    assert rows["test/colour/01.jpg"]["defect_mask"] == str(mvtec_tree / "ground_truth/colour/01.png")
    assert rows["train/good/000.png"]["product_mask"] == str(mvtec_tree / "product_masks/train/good/000.png")
    assert rows["test/colour/01.jpg"]["product_mask"] == str(mvtec_tree / "product_masks/test/colour/01.png")
    assert rows["train/good/001.png"]["product_mask"] is None
    assert all(Path(r["path"]).is_absolute() and r["image_type"] == "part" for r in rows.values())


def test_mvtec_anomaly_without_defect_mask_is_an_error_naming_it(mvtec_tree: Path, tmp_path: Path, cli) -> None:
    (mvtec_tree / "ground_truth/crack/000_mask.png").unlink()
    out = tmp_path / "m.jsonl"
    code, _, stderr = cli("datasets", "import", "mvtec", mvtec_tree, "--image-type", "part", "--out", out)
    assert code == 2
    assert str(mvtec_tree / "test/crack/000.png") in stderr and "--allow-missing-masks" in stderr
    assert not out.exists()

    code, _, _ = cli("datasets", "import", "mvtec", mvtec_tree, "--image-type", "part", "--out", out,
                     "--allow-missing-masks")
    assert code == 0
    assert rows_by_name(out, mvtec_tree)["test/crack/000.png"]["defect_mask"] is None


def test_mask_of_another_size_than_its_image_is_an_error(mvtec_tree: Path, tmp_path: Path, cli, write_image) -> None:
    write_image(mvtec_tree / "ground_truth/crack/000_mask.png", marked=True, size=20)
    code, _, stderr = cli("datasets", "import", "mvtec", mvtec_tree, "--image-type", "p", "--out", tmp_path / "m.jsonl")
    assert code == 2 and "000_mask.png" in stderr and "20x20" in stderr


# --- paired -----------------------------------------------------------------------------------


def test_paired_default_suffix_pairs_jpg_with_png_mask_and_labels_by_mask(tmp_path: Path, cli, write_image) -> None:
    root = tmp_path / "paired"
    write_image(root / "a.jpg")
    write_image(root / "a.png", marked=True)
    write_image(root / "b.jpg")
    write_image(root / "b.png", marked=False)
    out = tmp_path / "p.jsonl"
    assert cli("datasets", "import", "paired", root, "--image-type", "t", "--out", out)[0] == 0
    rows = rows_by_name(out, root)
    assert set(rows) == {"a.jpg", "b.jpg"}  # the .png masks are not imported as images
    assert rows["a.jpg"]["label"] == "anomaly" and rows["a.jpg"]["defect_mask"] == str(root / "a.png")
    assert rows["b.jpg"]["label"] == "normal"


def test_paired_with_suffix_allows_png_images_and_bmp_masks(tmp_path: Path, cli, write_image) -> None:
    root = tmp_path / "paired"
    write_image(root / "x.png")
    write_image(root / "x_label.bmp", marked=True)
    write_image(root / "y.jpg")
    write_image(root / "y_label.png", marked=False)
    out = tmp_path / "p.jsonl"
    code, _, _ = cli("datasets", "import", "paired", root, "--image-type", "t", "--mask-suffix", "_label", "--out", out)
    assert code == 0
    rows = rows_by_name(out, root)
    assert {name: (r["label"], Path(r["defect_mask"]).name) for name, r in rows.items()} == {
        "x.png": ("anomaly", "x_label.bmp"),
        "y.jpg": ("normal", "y_label.png"),
    }


def test_paired_types_from_folders_follow_the_first_folder(tmp_path: Path, cli, write_image) -> None:
    root = tmp_path / "tiles"
    write_image(root / "MT_Crack/Imgs/c1.jpg")
    write_image(root / "MT_Crack/Imgs/c1.png", marked=True)
    write_image(root / "MT_Crack/Imgs/c2.jpg")
    write_image(root / "MT_Crack/Imgs/c2.png", marked=False)  # defect not outlined
    write_image(root / "MT_Free/Imgs/f1.jpg")
    write_image(root / "MT_Free/Imgs/f1.png", marked=False)
    out = tmp_path / "p.jsonl"
    code, _, _ = cli("datasets", "import", "paired", root, "--image-type", "tile", "--types-from-folders", "--out", out)
    assert code == 0
    rows = rows_by_name(out, root)
    assert rows["MT_Crack/Imgs/c1.jpg"]["label"] == "anomaly"
    assert rows["MT_Crack/Imgs/c1.jpg"]["defect_type"] == "MT_Crack"
    # The folder is the image-level label; an empty mask there carries no pixel truth.
    assert rows["MT_Crack/Imgs/c2.jpg"]["label"] == "anomaly"
    assert rows["MT_Crack/Imgs/c2.jpg"]["defect_mask"] is None
    assert (rows["MT_Free/Imgs/f1.jpg"]["label"], rows["MT_Free/Imgs/f1.jpg"]["defect_type"]) == ("normal", None)


def test_paired_image_without_mask_is_an_error_naming_it(tmp_path: Path, cli, write_image) -> None:
    root = tmp_path / "paired"
    write_image(root / "a.jpg")
    write_image(root / "a.png", marked=True)
    write_image(root / "lonely.jpg")
    code, _, stderr = cli("datasets", "import", "paired", root, "--image-type", "t", "--out", tmp_path / "p.jsonl")
    assert code == 2 and str(root / "lonely.jpg") in stderr


def test_paired_two_lossless_files_without_suffix_are_ambiguous(tmp_path: Path, cli, write_image) -> None:
    root = tmp_path / "paired"
    write_image(root / "a.png")
    write_image(root / "a.bmp", marked=True)
    code, _, stderr = cli("datasets", "import", "paired", root, "--image-type", "t", "--out", tmp_path / "p.jsonl")
    assert code == 2 and "--mask-suffix" in stderr


# --- folder -------------------------------------------------------------------------------------


def test_flat_folder_takes_the_given_label(tmp_path: Path, cli, write_image) -> None:
    root = tmp_path / "flat"
    for name in ("1.png", "2.jpg", "3.bmp"):
        write_image(root / name)
    (root / "notes.txt").write_text("not an image")
    out = tmp_path / "f.jsonl"
    assert cli("datasets", "import", "folder", root, "--image-type", "t", "--out", out)[0] == 0
    assert [r.label for r in read_manifest(out)] == ["normal"] * 3
    assert cli("datasets", "import", "folder", root, "--image-type", "t", "--label", "unknown", "--out", out)[0] == 0
    assert [r.label for r in read_manifest(out)] == ["unknown"] * 3


def test_label_subfolders_map_to_labels_and_defect_types(tmp_path: Path, cli, write_image) -> None:
    root = tmp_path / "labelled"
    write_image(root / "good/1.png")
    write_image(root / "ok/day2/2.png")
    write_image(root / "unlabelled/3.png")
    write_image(root / "scratch/4.png")
    out = tmp_path / "f.jsonl"
    assert cli("datasets", "import", "folder", root, "--image-type", "t", "--out", out)[0] == 0
    rows = rows_by_name(out, root)
    assert {name: (r["label"], r["defect_type"]) for name, r in rows.items()} == {
        "good/1.png": ("normal", None),
        "ok/day2/2.png": ("normal", None),
        "unlabelled/3.png": ("unknown", None),
        "scratch/4.png": ("anomaly", "scratch"),
    }


def test_corrupt_image_is_an_error_naming_it(tmp_path: Path, cli, write_image) -> None:
    root = tmp_path / "flat"
    write_image(root / "fine.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    code, _, stderr = cli("datasets", "import", "folder", root, "--image-type", "t", "--out", tmp_path / "f.jsonl")
    assert code == 2 and str(root / "broken.png") in stderr


def test_empty_or_missing_folder_is_an_error_naming_it(tmp_path: Path, cli) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for layout in ("folder", "paired", "mvtec", "voc"):
        code, _, stderr = cli("datasets", "import", layout, empty, "--image-type", "t", "--out", tmp_path / "x.jsonl")
        assert code == 2 and str(empty) in stderr, layout
    missing = tmp_path / "nope"
    code, _, stderr = cli("datasets", "import", "folder", missing, "--image-type", "t", "--out", tmp_path / "x.jsonl")
    assert code == 2 and "nope" in stderr


# --- Pascal VOC --------------------------------------------------------------------------------


def voc_xml(filename: str, boxes: list[tuple[str, int, int, int, int]]) -> str:
    objects = "".join(
        f"<object><name>{name}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
        f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for name, x1, y1, x2, y2 in boxes
    )
    size = "<size><width>16</width><height>16</height></size>"
    return f"<annotation><filename>{filename}</filename>{size}{objects}</annotation>"


@pytest.fixture
def voc_tree(tmp_path: Path, write_image) -> Path:
    root = tmp_path / "voc"
    (root / "ANNOTATIONS").mkdir(parents=True)
    (root / "Validation_Annotations").mkdir(parents=True)
    boxes = [("scratch", 1, 1, 10, 4), ("spot", 5, 5, 8, 8), ("scratch", 2, 9, 16, 16)]
    (root / "ANNOTATIONS/a.xml").write_text(voc_xml("a.jpg", boxes))
    (root / "ANNOTATIONS/b.xml").write_text(voc_xml("b.jpg", []))
    (root / "Validation_Annotations/c.xml").write_text(voc_xml("c", [("spot", 3, 3, 6, 6)]))  # no extension
    write_image(root / "IMAGES/a.jpg")
    write_image(root / "IMAGES/b.jpg")
    write_image(root / "Validation_Images/c.jpg")
    return root


def test_voc_boxes_labels_and_held_out_folder(voc_tree: Path, tmp_path: Path, cli) -> None:
    out = tmp_path / "v.jsonl"
    assert cli("datasets", "import", "voc", voc_tree, "--image-type", "steel", "--out", out)[0] == 0
    rows = rows_by_name(out, voc_tree)
    assert set(rows) == {"IMAGES/a.jpg", "IMAGES/b.jpg", "Validation_Images/c.jpg"}
    a = rows["IMAGES/a.jpg"]
    assert (a["label"], a["defect_type"], a["split"]) == ("anomaly", "scratch", "unassigned")
    # VOC's 1-based inclusive (1..10) becomes 0-based with x2 exclusive (0..10): 10 px wide.
    assert a["boxes"][0] == {"x1": 0.0, "y1": 0.0, "x2": 10.0, "y2": 4.0, "defect_type": "scratch"}
    assert [b["defect_type"] for b in a["boxes"]] == ["scratch", "spot", "scratch"]
    assert (rows["IMAGES/b.jpg"]["label"], rows["IMAGES/b.jpg"]["boxes"]) == ("normal", [])
    assert rows["Validation_Images/c.jpg"]["split"] == "test"


def test_voc_annotation_whose_image_is_missing_is_an_error_naming_it(voc_tree: Path, tmp_path: Path, cli) -> None:
    (voc_tree / "IMAGES/b.jpg").unlink()
    code, _, stderr = cli("datasets", "import", "voc", voc_tree, "--image-type", "s", "--out", tmp_path / "v.jsonl")
    assert code == 2 and str(voc_tree / "ANNOTATIONS/b.xml") in stderr and "'b.jpg'" in stderr


def test_show_prints_counts_as_table_and_json(voc_tree: Path, tmp_path: Path, cli) -> None:
    out = tmp_path / "v.jsonl"
    cli("datasets", "import", "voc", voc_tree, "--image-type", "steel", "--out", out)
    code, table, _ = cli("datasets", "show", out)
    assert code == 0 and "steel" in table and "unassigned" in table
    code, text, _ = cli("datasets", "show", out, "--json")
    summary = json.loads(text)
    assert summary["rows"] == 3
    assert summary["by_split"] == {"unassigned": 2, "test": 1}
    assert summary["by_label"] == {"normal": 1, "anomaly": 2}
    assert summary["by_defect_type"] == {"scratch": 1, "spot": 1}
    assert summary["by_image_type"] == {"steel": 3}


def test_invalid_voc_xml_is_an_error_naming_it(voc_tree: Path, tmp_path: Path, cli) -> None:
    (voc_tree / "ANNOTATIONS/a.xml").write_text("<annotation><filename>a.jpg</filename>")
    code, _, stderr = cli("datasets", "import", "voc", voc_tree, "--image-type", "s", "--out", tmp_path / "v.jsonl")
    assert code == 2 and str(voc_tree / "ANNOTATIONS/a.xml") in stderr


def test_folder_with_images_and_label_subfolders_is_refused(tmp_path: Path, cli, write_image) -> None:
    root = tmp_path / "mixed"
    write_image(root / "loose.png")
    write_image(root / "good/1.png")
    code, _, stderr = cli("datasets", "import", "folder", root, "--image-type", "t", "--out", tmp_path / "f.jsonl")
    assert code == 2 and "loose.png" in stderr


def test_show_of_a_missing_manifest_is_an_error_naming_it(tmp_path: Path, cli) -> None:
    code, _, stderr = cli("datasets", "show", tmp_path / "absent.jsonl")
    assert code == 2 and "absent.jsonl" in stderr
