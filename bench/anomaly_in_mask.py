"""Anomaly scoring inside the product mask vs on the whole frame, on hazelnut_toy and on a
generated set with cluttered backgrounds: the same training and evaluation, once with the
manifests' product masks and once with them removed. hazelnut_toy is skipped when absent.

    python bench/anomaly_in_mask.py [--json I.json]
"""

import argparse
import json
import tempfile
from pathlib import Path

from common import run

from lineinspect.shared.config import get_settings
from lineinspect.shared.datasets.manifest import read_manifest, write_manifest


def evaluate(manifest: Path, work: Path, name: str) -> dict:
    run("train", "anomaly", "--manifest", manifest, "--out", work / f"{name}.pkg", "--no-progress")
    run("evaluate", "anomaly", "--package", work / f"{name}.pkg", "--manifest", manifest, "--split", "test",
        "--json", work / f"{name}.json", "--no-progress")
    return json.loads((work / f"{name}.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        manifests = {}
        hazelnut = get_settings().data_dir / "hazelnut_toy"
        if hazelnut.is_dir():
            run("datasets", "import", "mvtec", hazelnut, "--image-type", "hazelnut", "--out", work / "hazelnut.jsonl")
            manifests["hazelnut_toy"] = work / "hazelnut.jsonl"
        else:
            print(f"skipped hazelnut_toy: {hazelnut} is absent")
        run("datasets", "synth", "--image-types", "3", "--count", "100", "--clutter", "--seed", "7", "--out", work / "synth")
        run("datasets", "split", work / "synth" / "manifest.jsonl", "--train-normal-fraction", "0.7",
            "--calibration-fraction", "0.5", "--seed", "0", "--out", work / "cluttered.jsonl")
        manifests["synthetic_cluttered"] = work / "cluttered.jsonl"
        for name, manifest in manifests.items():
            whole = work / f"{name}.whole.jsonl"
            write_manifest(whole, [row.model_copy(update={"product_mask": None}) for row in read_manifest(manifest)])
            results[name] = {"inside_mask": evaluate(manifest, work, f"{name}.mask"),
                             "whole_frame": evaluate(whole, work, f"{name}.whole")}
    print(f"\n{'data set':<22}{'mode':<13}{'image_auroc':>12}{'pixel_auroc':>12}{'f1':>8}")
    for name, modes in results.items():
        for mode, figures in modes.items():
            print(f"{name:<22}{mode:<13}{figures['image_auroc']:>12.4f}{figures['pixel_auroc']:>12.4f}{figures['f1']:>8.4f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
