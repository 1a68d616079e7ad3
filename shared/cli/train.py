"""`lineinspect train <kind>`: train a model from a manifest and save it as a model package."""

import argparse
import json
from pathlib import Path

from pydantic import BaseModel, ValidationError

from lineinspect.shared.config import prepare_torch_process
from lineinspect.shared.datasets.manifest import read_manifest
from lineinspect.shared.errors import LineinspectError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a model package from a manifest")
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    anomaly = kinds.add_parser(
        "anomaly",
        help="anomaly model from normal images (PatchCore-style memory bank)",
        description=(
            "Builds the memory bank from normal images of split 'train'. The threshold is F1-optimal on split "
            "'calibration' when it holds labelled anomalies, else a quantile of held-back training normals plus a margin "
            "(--set normal_quantile=Q --set normal_margin=M; lower them to flag more frames)."
        ),
    )
    anomaly.add_argument("--manifest", type=Path, required=True, help="manifest with a 'train' split")
    anomaly.add_argument("--out", type=Path, required=True, help="package directory to write (replaced if present)")
    anomaly.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a setting of shared/models/anomaly/config.py, e.g. --set taps=4,10,14 (recorded in the package)",
    )
    anomaly.add_argument("--no-progress", action="store_true", help="no progress bars")
    anomaly.set_defaults(handler=_train_anomaly)

    mask = kinds.add_parser(
        "mask",
        help="mask finder: product vs background, one model for every image type in the manifest",
        description=(
            "Trains on (image, product mask) pairs of split 'train' of all image types at once, with augmentation "
            "and early stopping on split 'validation' (or a held-out share of train)."
        ),
    )
    mask.add_argument("--manifest", type=Path, action="append", required=True,
                      help="manifest with product masks; repeat to train on several data sets at once")
    mask.add_argument("--out", type=Path, required=True, help="package directory to write (replaced if present)")
    mask.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a setting of shared/models/mask/config.py, e.g. --set max_minutes=5")
    mask.add_argument("--no-progress", action="store_true", help="no progress bars")
    mask.set_defaults(handler=_train_mask)

    reviewer = kinds.add_parser(
        "reviewer",
        help="reviewer: grades how far a product mask can be trusted (1 perfect, 2 usable, 3 untrustworthy)",
        description=(
            "Needs no hand grading: trains on ground-truth product masks of split 'train', spoiled in the ways mask "
            "finders fail (eroded, dilated, shifted, holes, blobs, parts cut, wandering edges, another frame's mask, "
            "empty, full) and graded by their IoU with the truth (grade thresholds: --set perfect_iou=, usable_iou=; "
            "recorded in the package). Early stopping on fixed perturbed masks of split 'validation' (or a held-out share of train)."
        ),
    )
    reviewer.add_argument("--manifest", type=Path, action="append", required=True,
                          help="manifest with product masks; repeat to train on several data sets at once")
    reviewer.add_argument("--out", type=Path, required=True, help="package directory to write (replaced if present)")
    reviewer.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                          help="override a setting of shared/models/reviewer/config.py, e.g. --set usable_iou=0.85")
    reviewer.add_argument("--no-progress", action="store_true", help="no progress bars")
    reviewer.set_defaults(handler=_train_reviewer)

    detector = kinds.add_parser(
        "detector",
        help="supervised defect detector: boxes, defect type and confidence, from labelled boxes",
        description=(
            "Trains an anchor-free detector (FCOS-style, with GFL's IoU-aware class scores, distance distributions "
            "and ATSS assignment) on the labelled boxes of split 'train' (from "
            "`datasets import voc`, split with --train-anomaly-fraction), with augmentation and early stopping on "
            "mAP@0.5:0.95 of split 'validation' (or a held-out share of train). The deployed confidence is the "
            "F1-best on validation. Training stops after --set max_minutes=40 at the latest, learning rate annealed."
        ),
    )
    detector.add_argument("--manifest", type=Path, action="append", required=True,
                          help="manifest with labelled boxes; repeat to train on several data sets at once")
    detector.add_argument("--out", type=Path, required=True, help="package directory to write (replaced if present)")
    detector.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                          help="override a setting of shared/models/detector/config.py, e.g. --set max_minutes=20")
    detector.add_argument("--no-progress", action="store_true", help="no progress bars")
    detector.set_defaults(handler=_train_detector)


def _train_mask(args: argparse.Namespace) -> int:
    from lineinspect.shared.models.mask.config import MaskConfig
    from lineinspect.shared.models.mask.training import train_mask

    prepare_torch_process()
    config = parse_overrides(args.overrides, MaskConfig)
    rows = [row for path in args.manifest for row in read_manifest(path)]
    package = train_mask(rows, args.out, config, progress=not args.no_progress,
                         manifest_path=",".join(str(p.resolve()) for p in args.manifest))
    metrics = package.manifest.metrics
    print(f"mask package {package.manifest.version} written to {package.path}")
    print(f"validation IoU {metrics['validation_iou_mean']:.4f}")
    for name, row in metrics["validation_per_image_type"].items():
        print(f"  {name:<20} IoU mean {row['iou_mean']:.4f}  min {row['iou_min']:.4f}  n {row['n']}")
    return 0


def _train_reviewer(args: argparse.Namespace) -> int:
    from lineinspect.shared.models.reviewer.config import ReviewerConfig
    from lineinspect.shared.models.reviewer.training import train_reviewer

    prepare_torch_process()
    config = parse_overrides(args.overrides, ReviewerConfig)
    rows = [row for path in args.manifest for row in read_manifest(path)]
    package = train_reviewer(rows, args.out, config, progress=not args.no_progress,
                             manifest_path=",".join(str(p.resolve()) for p in args.manifest))
    validation = package.manifest.metrics["validation"]
    print(f"reviewer package {package.manifest.version} written to {package.path}")
    print(f"validation (perturbed masks): auc_untrustworthy {validation['auc_untrustworthy']:.4f}, "
          f"grade accuracy {validation['grade_accuracy']:.4f}, n {validation['n']}")
    return 0


def _train_detector(args: argparse.Namespace) -> int:
    from lineinspect.shared.models.detector.config import DetectorConfig
    from lineinspect.shared.models.detector.training import train_detector

    prepare_torch_process()
    config = parse_overrides(args.overrides, DetectorConfig)
    rows = [row for path in args.manifest for row in read_manifest(path)]
    package = train_detector(rows, args.out, config, progress=not args.no_progress,
                             manifest_path=",".join(str(p.resolve()) for p in args.manifest))
    manifest = package.manifest
    print(f"detector package {manifest.version} written to {package.path}")
    print(f"validation mAP@0.5 {manifest.metrics['validation_map50']:.4f}, mAP@0.5:0.95 "
          f"{manifest.metrics['validation_map50_95']:.4f}; deployed confidence {manifest.thresholds['confidence']:.2f}; "
          f"{manifest.training_data['epochs_run']} epochs in {manifest.training_data['training_seconds'] / 60:.1f} min")
    return 0


def parse_overrides(pairs: list[str], model: type[BaseModel]) -> BaseModel:
    """`KEY=VALUE` strings -> a validated settings model; lists are comma-separated."""
    values: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or key not in model.model_fields:
            raise LineinspectError(
                f"--set {pair!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(model.model_fields))}"
            )
        values[key] = value.split(",") if "," in value or key == "taps" else value
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise LineinspectError(f"--set {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def _train_anomaly(args: argparse.Namespace) -> int:
    from lineinspect.shared.models.anomaly.config import AnomalyConfig
    from lineinspect.shared.models.anomaly.training import MIN_PROBE_IMAGES, train_anomaly

    prepare_torch_process()
    config = parse_overrides(args.overrides, AnomalyConfig)
    rows = read_manifest(args.manifest)
    package = train_anomaly(
        rows, args.out, config, progress=not args.no_progress, manifest_path=str(args.manifest.resolve())
    )
    manifest = package.manifest
    calibration = manifest.thresholds["calibration"]
    print(f"anomaly package {manifest.version} written to {package.path}")
    print(f"threshold {calibration['value']:.5g} ({calibration['method']}): {calibration['explanation']}")
    probe = manifest.training_data.get("defect_probe")
    if probe:
        print(f"defect probe: learnt from the defect masks of {probe['calibration_anomalies']} calibration anomalies "
              f"({probe['defect_patches']} defect patches); it sharpens heatmaps, not scores")
    elif config.defect_probe:
        print(f"no defect probe: it needs at least {MIN_PROBE_IMAGES} calibration anomalies whose defect masks "
              "cover a patch (`datasets split --calibration-fraction`)")
    print(json.dumps({"training_data": manifest.training_data}, indent=2))
    return 0
