"""Anomaly accuracy with the default settings on every data set we have, in one table:
magnetic_tile (seeded split, 80% of the normals train), magnetic_tile_calibrated (the same
with half of the labelled anomalies in a calibration split: the threshold is F1-optimal on them
and their defect masks teach the defect probe), hazelnut_toy (its own train/test folders) and a
generated set (3 image types, labelled anomalies in a calibration split). Real data sets that
are absent are skipped with a note.

Each data set goes through the same commands a user runs:
    lineinspect datasets import ... / datasets split ... / train anomaly / evaluate anomaly --json

    python bench/anomaly_accuracy.py [--json A.json] [--only magnetic_tile] [--keep DIR]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import run

from lineinspect.shared.config import get_settings

COLUMNS = ("image_auroc", "pixel_auroc", "f1", "precision", "recall", "images_per_second")
DATA_SETS = ("magnetic_tile", "magnetic_tile_calibrated", "hazelnut_toy", "synthetic")


def prepare(name: str, work: Path, data_dir: Path) -> Path | None:
    """The split manifest of one data set, or None when its data is absent."""
    manifest, split = work / f"{name}.jsonl", work / f"{name}.split.jsonl"
    if name in ("magnetic_tile", "magnetic_tile_calibrated"):
        if not (data_dir / "magnetic_tile").is_dir():
            return None
        run("datasets", "import", "paired", data_dir / "magnetic_tile", "--image-type", "tile", "--types-from-folders", "--out", manifest)
        calibration = ["--calibration-fraction", "0.5"] if name == "magnetic_tile_calibrated" else []
        run("datasets", "split", manifest, "--train-normal-fraction", "0.8", *calibration, "--seed", "0", "--out", split)
        return split
    if name == "hazelnut_toy":
        if not (data_dir / "hazelnut_toy").is_dir():
            return None
        run("datasets", "import", "mvtec", data_dir / "hazelnut_toy", "--image-type", "hazelnut", "--out", split)
        return split
    if name == "synthetic":
        run("datasets", "synth", "--image-types", "3", "--count", "120", "--seed", "5", "--out", work / "synth")
        run("datasets", "split", work / "synth" / "manifest.jsonl", "--train-normal-fraction", "0.7",
            "--calibration-fraction", "0.5", "--seed", "0", "--out", split)
        return split
    raise ValueError(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write all figures here")
    parser.add_argument("--only", action="append", choices=DATA_SETS)
    parser.add_argument("--keep", type=Path, help="keep manifests, packages and HTML reports in this folder")
    args = parser.parse_args()
    names = args.only or list(DATA_SETS)
    data_dir = get_settings().data_dir
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        for name in names:
            split = prepare(name, work, data_dir)
            if split is None:
                print(f"skipped {name}: {data_dir / name} is absent")
                continue
            began = time.perf_counter()
            run("train", "anomaly", "--manifest", split, "--out", work / f"{name}.pkg", "--no-progress")
            train_seconds = time.perf_counter() - began
            run("evaluate", "anomaly", "--package", work / f"{name}.pkg", "--manifest", split, "--split", "test",
                "--json", work / f"{name}.eval.json", "--html", work / f"{name}.report.html", "--no-progress")
            figures = json.loads((work / f"{name}.eval.json").read_text())
            figures["training_seconds"] = train_seconds
            results[name] = figures
    print()
    print(f"{'data set':<26}" + "".join(f"{c:>19}" for c in COLUMNS) + f"{'train s':>10}")
    for name, figures in results.items():
        cells = "".join(f"{'n/a':>19}" if figures.get(c) is None else f"{figures[c]:>19.4f}" for c in COLUMNS)
        print(f"{name:<26}{cells}{figures['training_seconds']:>10.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
