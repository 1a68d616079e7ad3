"""`datasets split`: seeded, per image type, stratified calibration with both classes, held-out
test rows kept, unknown rows trained on; the same seed and input give the same output."""

import random
from collections import Counter
from pathlib import Path

import pytest

from lineinspect.shared.datasets.manifest import ManifestRow, read_manifest, write_manifest
from lineinspect.shared.datasets.split import SplitPlan, split_rows
from lineinspect.shared.errors import DatasetError


def make_rows(image_type: str = "disc", normals: int = 100, anomalies: dict[str, int] | None = None,
              unknown: int = 0, test: int = 0) -> list[ManifestRow]:
    def row(name: str, **fields: object) -> ManifestRow:
        return ManifestRow(path=f"/d/{image_type}/{name}.png", image_type=image_type, **fields)

    rows = [row(f"n{i}", label="normal") for i in range(normals)]
    for defect_type, count in (anomalies or {}).items():
        rows += [row(f"{defect_type}{i}", label="anomaly", defect_type=defect_type) for i in range(count)]
    rows += [row(f"u{i}", label="unknown") for i in range(unknown)]
    rows += [row(f"t{i}", label="anomaly", defect_type="held", split="test") for i in range(test)]
    return rows


def counts(rows: list[ManifestRow]) -> Counter[tuple[str, str]]:
    return Counter((r.split, r.label) for r in rows)


def test_fractions_place_the_expected_numbers() -> None:
    rows = make_rows(normals=100, anomalies={"scratch": 20, "spot": 10, "crack": 2})
    out = split_rows(rows, SplitPlan(0.6, calibration_fraction=0.5, validation_fraction=0.25), seed=1)
    assert counts(out) == {
        ("train", "normal"): 45,  # 60 to train, a quarter of them then to validation
        ("validation", "normal"): 15,
        ("calibration", "normal"): 20,  # half of the 40 normals not in train
        ("calibration", "anomaly"): 16,  # half of each defect type: 10 + 5 + 1
        ("test", "normal"): 20,
        ("test", "anomaly"): 16,
    }
    calibration_types = Counter(r.defect_type for r in out if r.split == "calibration" and r.label == "anomaly")
    assert calibration_types == {"scratch": 10, "spot": 5, "crack": 1}


def test_a_share_of_each_defect_type_can_go_to_train_for_a_detector() -> None:
    rows = make_rows(normals=0, anomalies={"scratch": 40, "spot": 20, "crack": 10}, test=6)
    out = split_rows(rows, SplitPlan(0.8, validation_fraction=0.25, train_anomaly_fraction=0.8), seed=2)
    placed = Counter((r.split, r.defect_type) for r in out)
    # 80% of each type to train, a quarter of those to validation, the rest and the held-out rows to test.
    assert placed == {
        ("train", "scratch"): 24, ("validation", "scratch"): 8, ("test", "scratch"): 8,
        ("train", "spot"): 12, ("validation", "spot"): 4, ("test", "spot"): 4,
        ("train", "crack"): 6, ("validation", "crack"): 2, ("test", "crack"): 2,
        ("test", "held"): 6,
    }
    # Without the option labelled anomalies are never trained on (the anomaly model learns from normals).
    mixed = make_rows(normals=30, anomalies={"scratch": 10, "spot": 6})
    out = split_rows(mixed, SplitPlan(0.6, calibration_fraction=0.5, validation_fraction=0.2), seed=3)
    assert not any(r.split in ("train", "validation") and r.label == "anomaly" for r in out)


def test_calibration_gets_both_classes_even_when_small() -> None:
    rows = make_rows(normals=10, anomalies={"a": 2, "b": 3})
    out = split_rows(rows, SplitPlan(0.8, calibration_fraction=0.1), seed=0)
    calibration = [r for r in out if r.split == "calibration"]
    assert {r.label for r in calibration} == {"normal", "anomaly"}
    assert {r.defect_type for r in calibration if r.label == "anomaly"} == {"a", "b"}


def test_same_seed_same_output_different_seed_different(tmp_path: Path, cli) -> None:
    source = tmp_path / "m.jsonl"
    write_manifest(source, make_rows(anomalies={"scratch": 30}))
    args = ("--train-normal-fraction", "0.5", "--calibration-fraction", "0.3", "--validation-fraction", "0.1")
    outputs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        out = tmp_path / f"{name}.jsonl"
        code, stdout, _ = cli("datasets", "split", source, *args, "--seed", seed, "--out", out)
        assert code == 0 and str(out) in stdout and "calibration" in stdout
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0] != outputs[2]


def test_split_does_not_depend_on_row_order() -> None:
    rows = make_rows(anomalies={"scratch": 30, "spot": 11})
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    plan = SplitPlan(0.5, calibration_fraction=0.3)
    first = {r.path: r.split for r in split_rows(rows, plan, seed=5)}
    second = {r.path: r.split for r in split_rows(shuffled, plan, seed=5)}
    assert first == second


def test_each_image_type_is_split_on_its_own() -> None:
    disc = make_rows("disc", normals=50)
    plate = make_rows("plate", normals=10)
    plan = SplitPlan(0.4)
    alone = {r.path: r.split for r in split_rows(disc, plan, seed=2)}
    together = split_rows(disc + plate, plan, seed=2)
    assert counts([r for r in together if r.image_type == "plate"])[("train", "normal")] == 4
    # Adding another image type leaves this one's assignment unchanged.
    assert {r.path: r.split for r in together if r.image_type == "disc"} == alone


def test_held_out_test_rows_stay_test_and_unknown_rows_train() -> None:
    rows = make_rows(normals=20, anomalies={"scratch": 10}, unknown=5, test=4)
    out = split_rows(rows, SplitPlan(1.0, calibration_fraction=0.5), seed=0)
    assert all(r.split == "test" for r in out if r.defect_type == "held")
    assert all(r.split == "train" for r in out if r.label == "unknown")
    assert [r.path for r in out] == [r.path for r in rows]  # rows keep their order


def test_split_of_magnetic_tile_style_manifest_keeps_every_row(tmp_path: Path, cli) -> None:
    source = tmp_path / "m.jsonl"
    write_manifest(source, make_rows(normals=40, anomalies={"MT_Crack": 9, "MT_Fray": 4}))
    out = tmp_path / "s.jsonl"
    code, _, _ = cli("datasets", "split", source, "--train-normal-fraction", "0.5", "--seed", "0", "--out", out)
    assert code == 0
    rows = read_manifest(out)
    assert len(rows) == 53 and counts(rows)[("train", "normal")] == 20
    assert {r.split for r in rows} == {"train", "test"}


def test_fractions_outside_zero_to_one_are_refused(tmp_path: Path, cli) -> None:
    with pytest.raises(DatasetError):
        SplitPlan(1.5)
    source = tmp_path / "m.jsonl"
    write_manifest(source, make_rows(normals=4))
    with pytest.raises(SystemExit) as exit_info:  # argparse refuses it before any work
        cli("datasets", "split", source, "--train-normal-fraction", "2", "--seed", "0", "--out", tmp_path / "o.jsonl")
    assert exit_info.value.code == 2
