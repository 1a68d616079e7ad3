"""Mask-finder accuracy with default settings: one model trained on hazelnut_toy (product
masks from `product_masks/`) and three generated image types with cluttered backgrounds at
once, then product-mask IoU per image type on the test splits. hazelnut_toy is skipped with a
note when absent.

    python bench/mask_accuracy.py [--json M.json] [--keep DIR]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from lineinspect.shared.cli.main import main as lineinspect
from lineinspect.shared.config import get_settings


def run(*args: object) -> None:
    code = lineinspect([str(a) for a in args])
    if code != 0:
        raise SystemExit(f"lineinspect {' '.join(map(str, args))} failed with exit code {code}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--keep", type=Path, help="keep manifests, the package and the HTML report in this folder")
    args = parser.parse_args()
    hazelnut = get_settings().data_dir / "hazelnut_toy"
    with tempfile.TemporaryDirectory() as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        manifests = []
        if hazelnut.is_dir():
            run("datasets", "import", "mvtec", hazelnut, "--image-type", "hazelnut", "--out", work / "hazelnut.jsonl")
            manifests.append(work / "hazelnut.jsonl")
        else:
            print(f"skipped hazelnut_toy: {hazelnut} is absent")
        run("datasets", "synth", "--image-types", "3", "--count", "100", "--clutter", "--seed", "2", "--out", work / "synth")
        run("datasets", "split", work / "synth" / "manifest.jsonl", "--train-normal-fraction", "0.7", "--seed", "0",
            "--out", work / "synth.jsonl")
        manifests.append(work / "synth.jsonl")
        flags = [item for m in manifests for item in ("--manifest", m)]
        began = time.perf_counter()
        run("train", "mask", *flags, "--out", work / "mask.pkg", "--no-progress")
        seconds = time.perf_counter() - began
        run("evaluate", "mask", "--package", work / "mask.pkg", *flags, "--split", "test",
            "--json", work / "mask.eval.json", "--html", work / "mask.report.html", "--no-progress")
        figures = json.loads((work / "mask.eval.json").read_text())
    figures["training_seconds"] = seconds
    print(f"\ntraining {seconds:.0f} s; test IoU {figures['iou_mean']:.4f}; {figures['images_per_second']:.1f} images/s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
