"""Mask-finder and reviewer accuracy with default settings.

One mask finder trained on hazelnut_toy (product masks from `product_masks/`) and three
generated image types with cluttered backgrounds at once; product-mask IoU per image type on
the test splits. Then a reviewer trained on the same training frames, evaluated on perturbed
test masks (`auc_untrustworthy`) and on real masks of the finders:
- `auc_untrustworthy_real`: the trained finder's masks of the test frames of its own image
  types together with frames of 9 generated image types that neither model saw in training
  (the other 3 product families, and all 6 in other colours and textures). A finder makes
  nearly no untrustworthy masks of its own types, so a new product reaching the line before
  the finder is retrained is where the reviewer earns its keep; the figures per part are
  reported too (`..._own_types`, `..._new_types`);
- `auc_untrustworthy_real_partly_trained_finder`: a finder stopped after 3 epochs, on the
  test frames of the trained types.
hazelnut_toy is skipped with a note when absent.

    python bench/mask_accuracy.py [--json M.json] [--keep DIR] [--no-reviewer]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import run

from lineinspect.shared.config import get_settings

# Generated image types the bench's models never train on (they train on the first three).
NEW_IMAGE_TYPES = ("ring", "hexnut", "tab", "disc2", "plate2", "bracket2", "ring2", "hexnut2", "tab2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--keep", type=Path, help="keep manifests, the package and the HTML report in this folder")
    parser.add_argument("--no-reviewer", action="store_true", help="the mask finder only")
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
        if not args.no_reviewer:
            run("datasets", "synth", "--image-types", ",".join(NEW_IMAGE_TYPES), "--count", "30", "--clutter",
                "--seed", "3", "--out", work / "synth-new")
            run("datasets", "split", work / "synth-new" / "manifest.jsonl", "--train-normal-fraction", "0", "--seed", "0",
                "--out", work / "new-types.jsonl")
            figures["reviewer"] = reviewer_figures(work, flags, ["--manifest", work / "new-types.jsonl"])
    print(f"\nmask finder: training {seconds:.0f} s; test IoU {figures['iou_mean']:.4f}; "
          f"{figures['images_per_second']:.1f} images/s")
    if "reviewer" in figures:
        reviewer = figures["reviewer"]
        print(f"reviewer: training {reviewer['training_seconds']:.0f} s; auc_untrustworthy {reviewer['auc_untrustworthy']}; "
              f"auc_untrustworthy_real {reviewer['auc_untrustworthy_real']} (trained finder; own types "
              f"{reviewer['auc_untrustworthy_real_own_types']}, new types {reviewer['auc_untrustworthy_real_new_types']}), "
              f"{reviewer['auc_untrustworthy_real_partly_trained_finder']} (finder after 3 epochs); "
              f"true grades of the real masks {reviewer['real_true_grades']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


def reviewer_figures(work: Path, flags: list[object], new_types: list[object]) -> dict[str, object]:
    began = time.perf_counter()
    run("train", "reviewer", *flags, "--out", work / "reviewer.pkg", "--no-progress")
    seconds = time.perf_counter() - began
    run("train", "mask", *flags, "--out", work / "mask.partly-trained.pkg", "--set", "epochs=3", "--no-progress")
    results = {}
    for name, manifests, package in (
        ("own_types", flags, work / "mask.pkg"),
        ("new_types", new_types, work / "mask.pkg"),
        ("all", [*flags, *new_types], work / "mask.pkg"),
        ("partly_trained", flags, work / "mask.partly-trained.pkg"),
    ):
        out = work / f"reviewer.eval.{name}.json"
        run("evaluate", "reviewer", "--package", work / "reviewer.pkg", *manifests, "--split", "test",
            "--mask-package", package, "--json", out, "--no-progress")
        results[name] = json.loads(out.read_text())
    own, new, everything, partly = (results[k] for k in ("own_types", "new_types", "all", "partly_trained"))
    return {
        "training_seconds": seconds,
        "auc_untrustworthy": own["auc_untrustworthy"],
        "confusion": own["confusion"],
        "auc_untrustworthy_real": everything["auc_untrustworthy_real"],
        "confusion_real": everything["confusion_real"],
        "real_true_grades": everything["real"]["n_per_true_grade"],
        "auc_untrustworthy_real_own_types": own["auc_untrustworthy_real"],
        "auc_untrustworthy_real_new_types": new["auc_untrustworthy_real"],
        "auc_untrustworthy_new_types": new["auc_untrustworthy"],
        "auc_untrustworthy_real_partly_trained_finder": partly["auc_untrustworthy_real"],
        "confusion_real_partly_trained_finder": partly["confusion_real"],
        "evaluation": own,
        "evaluation_new_types": new,
        "evaluation_all": everything,
        "evaluation_partly_trained_finder": partly,
    }


if __name__ == "__main__":
    main()
