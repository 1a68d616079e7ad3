"""Supervised defect detector on NEU-DET (`../shared/data/neu_det`) with default settings.

Imports the VOC layout, makes a seeded split stratified by defect type (80 % of `IMAGES/` to
train, of which the trainer holds 10 % out for early stopping; the other 20 % plus
`Validation_Images/` to test), trains with `lineinspect train detector` and evaluates the
test split with `lineinspect evaluate detector`: COCO mAP@0.5 and mAP@0.5:0.95 (pycocotools),
AP per defect type, inference images/s on 200-px frames (2 cores), and training minutes.

    python bench/detector_accuracy.py [--json D.json] [--keep DIR] [--seed N] [--set KEY=VALUE ...]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import machine, print_figures, run

from lineinspect.shared.config import get_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--keep", type=Path, help="keep the manifests, the package and the HTML report in this folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="passed to `train detector --set` (e.g. max_minutes=10 for a quick look)")
    args = parser.parse_args()
    neu = get_settings().data_dir / "neu_det"
    if not neu.is_dir():
        raise SystemExit(f"{neu} is absent: this benchmark needs NEU-DET (see shared/data/DATA.md)")
    with tempfile.TemporaryDirectory() as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        run("datasets", "import", "voc", neu, "--image-type", "neu_steel", "--out", work / "neu.jsonl")
        run("datasets", "split", work / "neu.jsonl", "--train-normal-fraction", "0.8", "--train-anomaly-fraction", "0.8",
            "--seed", args.seed, "--out", work / "neu.split.jsonl")
        overrides = [item for pair in args.overrides for item in ("--set", pair)]
        began = time.perf_counter()
        run("train", "detector", "--manifest", work / "neu.split.jsonl", "--out", work / "detector.pkg", *overrides, "--no-progress")
        training_minutes = (time.perf_counter() - began) / 60
        run("evaluate", "detector", "--package", work / "detector.pkg", "--manifest", work / "neu.split.jsonl",
            "--split", "test", "--json", work / "detector.eval.json", "--html", work / "detector.report.html", "--no-progress")
        evaluation = json.loads((work / "detector.eval.json").read_text())
        manifest = json.loads((work / "detector.pkg" / "manifest.json").read_text())
    figures = {
        "map50": evaluation["map50"],
        "map50_95": evaluation["map50_95"],
        "images_per_second": evaluation["images_per_second"],
        "training_minutes": training_minutes,
        "epochs_run": manifest["training_data"]["epochs_run"],
        "best_epoch": manifest["training_data"]["best_epoch"],
        "validation_map50": manifest["metrics"]["validation_map50"],
        "validation_map50_95": manifest["metrics"]["validation_map50_95"],
        "test_images": evaluation["n_images"],
        "test_boxes": evaluation["n_truth_boxes"],
        "input_size": evaluation["input_size"],
        "confidence": evaluation["at_confidence"]["confidence"],
        "split_seed": args.seed,
        "machine": machine(),
    }
    print()
    print_figures(figures, None)
    print(f"{'defect type':<20} {'boxes':>6} {'AP@0.5':>8} {'AP@.5:.95':>10}")
    for name, row in evaluation["ap_per_class"].items():
        ap50, ap = ("n/a" if v is None else f"{v:.4f}" for v in (row["ap50"], row["ap50_95"]))
        print(f"{name:<20} {row['truths']:>6} {ap50:>8} {ap:>10}")
    figures["ap_per_class"] = evaluation["ap_per_class"]
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
