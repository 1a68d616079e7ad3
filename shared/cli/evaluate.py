"""`lineinspect evaluate <kind>`: accuracy of a model package on a labelled split."""

import argparse
import json
from dataclasses import replace
from pathlib import Path

from lineinspect.shared.config import prepare_torch_process
from lineinspect.shared.datasets.manifest import read_manifest
from lineinspect.shared.errors import DatasetError, LineinspectError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="evaluate a model package on a labelled split")
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    anomaly = kinds.add_parser("anomaly", help="image/pixel AUROC, F1 and per-defect-type recall of an anomaly package")
    anomaly.add_argument("--package", type=Path, required=True, help="anomaly model package directory")
    anomaly.add_argument("--manifest", type=Path, required=True)
    anomaly.add_argument("--split", default="test", help="split to evaluate (default: test)")
    anomaly.add_argument("--json", type=Path, help="write the figures as JSON here")
    anomaly.add_argument("--html", type=Path, help="write an HTML report with every image here")
    anomaly.add_argument("--scores", type=Path, help="write each image's score and decision here (JSON Lines)")
    anomaly.add_argument("--no-progress", action="store_true", help="no progress bars")
    anomaly.set_defaults(handler=_evaluate_anomaly)

    mask = kinds.add_parser(
        "mask", help="product-mask IoU per image type; repeat --manifest to check a new model on every older data set"
    )
    mask.add_argument("--package", required=True, help="mask package directory, or 'whole_frame'")
    mask.add_argument("--manifest", type=Path, action="append", required=True, help="repeatable")
    mask.add_argument("--split", default="test", help="split to evaluate (default: test)")
    mask.add_argument("--json", type=Path, help="write the figures as JSON here")
    mask.add_argument("--html", type=Path, help="write an HTML report, worst masks first")
    mask.add_argument("--no-progress", action="store_true", help="no progress bars")
    mask.set_defaults(handler=_evaluate_mask)

    reviewer = kinds.add_parser(
        "reviewer",
        help="reviewer AUROC of 'untrustworthy' and grade confusion, on perturbed masks and a mask finder's real masks",
        description=(
            "Grades perturbed product masks of the split (truth: their IoU with the product mask) and, with "
            "--mask-package, the real masks of that mask finder (truth: their real IoU)."
        ),
    )
    reviewer.add_argument("--package", type=Path, required=True, help="reviewer package directory")
    reviewer.add_argument("--manifest", type=Path, action="append", required=True, help="repeatable")
    reviewer.add_argument("--split", default="test", help="split to evaluate (default: test)")
    reviewer.add_argument("--mask-package", help="also grade the real masks of this mask package (or 'whole_frame')")
    reviewer.add_argument("--perturbations", type=int, default=12, help="perturbed masks per image (default: 12)")
    reviewer.add_argument("--seed", type=int, default=0, help="seed of the perturbations (default: 0)")
    reviewer.add_argument("--json", type=Path, help="write the figures as JSON here")
    reviewer.add_argument("--no-progress", action="store_true", help="no progress bars")
    reviewer.set_defaults(handler=_evaluate_reviewer)

    detector = kinds.add_parser(
        "detector", help="COCO mAP@0.5 and mAP@0.5:0.95 (pycocotools), AP per defect type and speed of a detector package"
    )
    detector.add_argument("--package", type=Path, required=True, help="detector package directory")
    detector.add_argument("--manifest", type=Path, action="append", required=True, help="repeatable")
    detector.add_argument("--split", default="test", help="split to evaluate (default: test)")
    detector.add_argument("--json", type=Path, help="write the figures as JSON here")
    detector.add_argument("--html", type=Path, help="write an HTML report, predictions vs truth, worst images first")
    detector.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="try an inference setting on the package without retraining (score_threshold, nms_iou, box_voting_iou, "
             "max_detections, flip_test: detector/config.py's INFERENCE_SETTINGS), e.g. --set nms_iou=0.6; recorded in the JSON",
    )
    detector.add_argument("--no-progress", action="store_true", help="no progress bars")
    detector.set_defaults(handler=_evaluate_detector)


def _evaluate_mask(args: argparse.Namespace) -> int:
    from lineinspect.shared.models.mask.evaluation import evaluate_masks, render_mask_report
    from lineinspect.shared.models.mask.inference import load_mask_finder

    prepare_torch_process()
    rows = [row for path in args.manifest for row in read_manifest(path) if row.split == args.split and row.product_mask]
    if not rows:
        raise DatasetError(f"no images with a product mask in split {args.split!r} of {', '.join(map(str, args.manifest))}")
    finder = load_mask_finder(args.package)
    figures, results = evaluate_masks(finder, rows, progress=not args.no_progress, keep_masks=args.html is not None)
    figures = {"package": str(args.package), "version": finder.version, "split": args.split,
               "manifests": [str(p) for p in args.manifest], **figures}
    print(f"{'image type':<20} {'n':>5} {'IoU mean':>9} {'IoU min':>8}")
    for name, row in figures["per_image_type"].items():
        print(f"{name:<20} {row['n']:>5} {row['iou_mean']:>9.4f} {row['iou_min']:>8.4f}")
    print(f"{'all':<20} {figures['n_images']:>5} {figures['iou_mean']:>9.4f}   ({figures['images_per_second']:.1f} images/s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {args.json}")
    if args.html:
        render_mask_report(figures, results, finder, args.html, f"Mask evaluation: {finder.version} ({args.split})")
        print(f"report written to {args.html}")
    return 0


def _evaluate_detector(args: argparse.Namespace) -> int:
    from lineinspect.shared.models.detector.evaluation import evaluate_detector, render_detector_report
    from lineinspect.shared.models.detector.inference import Detector

    prepare_torch_process()
    changed = inference_overrides(args.overrides)
    rows = [row for path in args.manifest for row in read_manifest(path) if row.split == args.split and row.label != "unknown"]
    if not rows:
        raise DatasetError(f"no labelled images in split {args.split!r} of {', '.join(map(str, args.manifest))}")
    detector = Detector.from_package(args.package)
    detector.config = detector.config.model_copy(update=changed)
    figures, results = evaluate_detector(detector, rows, progress=not args.no_progress)
    figures = {"package": str(args.package), "split": args.split, "manifests": [str(p) for p in args.manifest],
               "inference_overrides": changed, **figures}
    print(format_detector_figures(figures))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {args.json}")
    if args.html:
        render_detector_report(figures, results, args.html, f"Detector evaluation: {detector.version} ({args.split})")
        print(f"report written to {args.html}")
    return 0


def inference_overrides(pairs: list[str]) -> dict[str, object]:
    """`--set KEY=VALUE` pairs for a saved detector -> validated values, inference settings only."""
    from lineinspect.shared.cli.train import parse_overrides
    from lineinspect.shared.models.detector.config import INFERENCE_SETTINGS, DetectorConfig

    parsed = parse_overrides(pairs, DetectorConfig)
    fixed = sorted(parsed.model_fields_set - set(INFERENCE_SETTINGS))
    if fixed:
        raise LineinspectError(
            f"--set {', '.join(fixed)}: fixed when the package was trained; evaluate can change only "
            f"{', '.join(INFERENCE_SETTINGS)} (retrain with `lineinspect train detector --set` for the others)"
        )
    return {key: getattr(parsed, key) for key in sorted(parsed.model_fields_set)}


def format_detector_figures(figures: dict) -> str:
    def ap(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    counts = figures["at_confidence"]
    lines = [f"mAP@0.5 {figures['map50']:.4f}   mAP@0.5:0.95 {figures['map50_95']:.4f}   "
             f"{figures['n_images']} images, {figures['n_truth_boxes']} boxes, {figures['images_per_second']:.1f} images/s",
             f"at confidence {counts['confidence']:.2f}: {counts['found']} found, {counts['missed']} missed, {counts['false']} false",
             f"{'defect type':<20} {'boxes':>6} {'AP@0.5':>8} {'AP@.5:.95':>10}"]
    for name, row in figures["ap_per_class"].items():
        lines.append(f"{name:<20} {row['truths']:>6} {ap(row['ap50']):>8} {ap(row['ap50_95']):>10}")
    return "\n".join(lines)


def _evaluate_reviewer(args: argparse.Namespace) -> int:
    from lineinspect.shared.models.mask.inference import load_mask_finder
    from lineinspect.shared.models.reviewer.evaluation import evaluate_reviewer
    from lineinspect.shared.models.reviewer.inference import Reviewer

    prepare_torch_process()
    rows = [row for path in args.manifest for row in read_manifest(path) if row.split == args.split and row.product_mask]
    if not rows:
        raise DatasetError(f"no images with a product mask in split {args.split!r} of {', '.join(map(str, args.manifest))}")
    reviewer = Reviewer.from_package(args.package)
    finder = load_mask_finder(args.mask_package) if args.mask_package else None
    figures = evaluate_reviewer(reviewer, rows, finder, args.perturbations, args.seed, progress=not args.no_progress)
    figures = {"package": str(args.package), "mask_package": args.mask_package, "split": args.split,
               "manifests": [str(p) for p in args.manifest], **figures}
    print(format_review_figures(figures))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {args.json}")
    return 0


def format_review_figures(figures: dict[str, object]) -> str:
    def auc(value: object) -> str:
        return "n/a (one grade side only)" if value is None else f"{value:.4f}"

    def confusion(matrix: list[list[int]]) -> list[str]:
        lines = [f"    {'true grade / predicted':<24} {'1':>6} {'2':>6} {'3':>6}"]
        lines += [f"    {'grade ' + str(g):<24} " + " ".join(f"{c:>6}" for c in row) for g, row in zip((1, 2, 3), matrix)]
        return lines

    perturbed = figures["perturbed"]
    lines = [f"perturbed masks ({perturbed['n']}): auc_untrustworthy {auc(figures['auc_untrustworthy'])}, "
             f"grade accuracy {perturbed['grade_accuracy']:.4f}", *confusion(figures["confusion"])]
    lines.append(f"    {'perturbation':<18} {'n':>6} {'accuracy':>9} {'auc':>7}")
    for name, row in perturbed["per_perturbation"].items():
        value = "n/a" if row["auc_untrustworthy"] is None else f"{row['auc_untrustworthy']:.4f}"
        lines.append(f"    {name:<18} {row['n']:>6} {row['grade_accuracy']:>9.4f} {value:>7}")
    if "real" in figures:
        real = figures["real"]
        lines += [f"real masks of {real['mask_model_version']} ({real['n']}, mean IoU {real['mask_iou_mean']:.4f}): "
                  f"auc_untrustworthy_real {auc(figures['auc_untrustworthy_real'])}, true grades {real['n_per_true_grade']}",
                  *confusion(figures["confusion_real"])]
    return "\n".join(lines)


def _evaluate_anomaly(args: argparse.Namespace) -> int:
    from lineinspect.shared.models.anomaly.evaluation import evaluate_anomaly
    from lineinspect.shared.models.anomaly.inference import AnomalyModel

    prepare_torch_process()
    rows = [row for row in read_manifest(args.manifest) if row.split == args.split]
    labelled = [row for row in rows if row.label in ("normal", "anomaly")]
    if not labelled:
        raise DatasetError(f"{args.manifest}: no labelled (normal/anomaly) images in split {args.split!r}")
    model = AnomalyModel.from_package(args.package)
    evaluation = evaluate_anomaly(model, labelled, progress=not args.no_progress, keep_images=args.html is not None)
    figures = {"package": str(args.package), "split": args.split, **evaluation.figures}
    print(format_figures(figures))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {args.json}")
    if args.scores:
        args.scores.parent.mkdir(parents=True, exist_ok=True)
        with args.scores.open("w", encoding="utf-8") as handle:
            for image in evaluation.scored:
                handle.write(json.dumps({
                    "path": image.image_id, "label": "anomaly" if image.is_anomaly else "normal",
                    "score": image.score, "normalised_score": image.score / model.threshold,
                    "decision": "anomalous" if image.predicted_anomaly else "normal",
                }) + "\n")
        print(f"per-image scores written to {args.scores}")
    if args.html:
        from lineinspect.shared.models.anomaly.report import render_report

        evaluation = replace(evaluation, figures=figures)
        render_report(evaluation, args.html, f"Anomaly evaluation: {model.version} on {args.manifest.name} ({args.split})")
        print(f"report written to {args.html}")
    return 0


def format_figures(figures: dict[str, object]) -> str:
    lines = []
    for name, value in figures.items():
        if isinstance(value, dict):
            continue
        lines.append(f"{name:<20} {value:.4f}" if isinstance(value, float) else f"{name:<20} {value}")
    per_type = figures.get("per_defect_type") or {}
    if per_type:
        lines.append(f"{'defect type':<20} {'n':>5} {'recall':>7} {'typing':>7}")
        for name, row in per_type.items():
            typing = "n/a" if row["typing_accuracy"] is None else f"{row['typing_accuracy']:.3f}"
            lines.append(f"{name:<20} {row['n']:>5} {row['recall']:>7.3f} {typing:>7}")
    return "\n".join(lines)
