"""`lineinspect datasets ...`: import folders into manifests, split them, show their counts,
and generate synthetic data sets. The work lives in `lineinspect.shared.datasets`."""

import argparse
import json
from pathlib import Path

from structlog.typing import FilteringBoundLogger

from lineinspect.shared.datasets.importers import import_folder, import_mvtec, import_paired, import_voc
from lineinspect.shared.datasets.manifest import ManifestRow, read_manifest, write_manifest
from lineinspect.shared.datasets.split import SplitPlan, split_rows
from lineinspect.shared.datasets.summary import format_summary, summarize
from lineinspect.shared.datasets.synth import DEFECT_TYPES, image_type_names, synthesize_dataset
from lineinspect.shared.logs import get_logger


def _log() -> FilteringBoundLogger:
    # Made per use: a logger bound at import keeps the stderr of that moment, which tests and
    # a re-configured CLI replace.
    return get_logger(__name__, stage="datasets")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _image_types(text: str) -> int | list[str]:
    """A count (`3`: disc, plate, bracket) or a comma-separated list of names (`disc,ring`)."""
    if text.strip().isdigit():
        return int(text)
    return [name.strip() for name in text.split(",") if name.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "datasets",
        help="import, split, show and synthesize datasets (JSON Lines manifests)",
        description="Build and inspect dataset manifests: one JSON line per image.",
    )
    commands = parser.add_subparsers(dest="datasets_command", metavar="COMMAND", required=True)
    _register_import(commands)
    _register_split(commands)
    _register_show(commands)
    _register_synth(commands)


def _register_import(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("import", help="build a manifest from a folder layout")
    layouts = parser.add_subparsers(dest="layout", metavar="LAYOUT", required=True)

    def layout(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = layouts.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("folder", type=Path, metavar="DIR")
        sub.add_argument("--image-type", required=True, help="image type of every row (product/camera kind)")
        sub.add_argument("--out", type=Path, required=True, help="manifest to write (.jsonl)")
        return sub

    mvtec = layout("mvtec", "MVTec-style: train/good, test/good, test/<type>, ground_truth/<type>, product_masks/")
    mvtec.add_argument("--allow-missing-masks", action="store_true",
                       help="warn instead of failing when an anomaly image has no defect mask")
    mvtec.set_defaults(handler=_import_mvtec)

    paired = layout("paired", "each image with its defect mask beside it; an empty mask means normal")
    paired.add_argument("--mask-suffix", default="",
                        help="mask = image stem + this + image extension (default: none, a.jpg + a.png)")
    paired.add_argument("--types-from-folders", action="store_true",
                        help="defect type = first folder under DIR; a folder of empty masks holds normal images")
    paired.set_defaults(handler=_import_paired)

    folder = layout("folder", "flat folder of images, or one subfolder per label (good/, unknown/, <defect type>/)")
    folder.add_argument("--label", choices=("normal", "anomaly", "unknown"), default="normal",
                        help="label of a flat folder's images (default normal)")
    folder.set_defaults(handler=_import_folder)

    voc = layout("voc", "Pascal VOC: XML box annotations beside an images folder (e.g. neu_det)")
    voc.set_defaults(handler=_import_voc)


def _register_split(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "split",
        help="seeded train/validation/calibration/test split per image type",
        description="Assign splits per image type; rows already `test` stay test, `unknown` rows go to train.",
    )
    parser.add_argument("manifest", type=Path, metavar="MANIFEST")
    parser.add_argument("--train-normal-fraction", type=_fraction, required=True,
                        help="share of normal images that go to train")
    parser.add_argument("--train-anomaly-fraction", type=_fraction, default=0.0,
                        help="share of labelled anomalies (per defect type) that go to train, for a supervised "
                             "detector (e.g. neu_det: --train-normal-fraction 0.8 --train-anomaly-fraction 0.8)")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--calibration-fraction", type=_fraction, default=0.0,
                        help="share of labelled anomalies (per defect type) and of the normals left after "
                             "train that go to calibration")
    parser.add_argument("--validation-fraction", type=_fraction, default=0.0,
                        help="share of the train normals (and of the train anomalies, per defect type) moved to validation")
    parser.add_argument("--out", type=Path, required=True, help="manifest to write (.jsonl)")
    parser.set_defaults(handler=_split)


def _register_show(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("show", help="counts per split, label, defect type and image type")
    parser.add_argument("manifest", type=Path, metavar="MANIFEST")
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    parser.set_defaults(handler=_show)


def _register_synth(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "synth",
        help="generate synthetic products with exact product and defect masks",
        description=f"Seeded synthetic products; defect types: {', '.join(DEFECT_TYPES)}.",
    )
    parser.add_argument("--image-types", type=_image_types, default=3,
                        help=f"how many image types ({', '.join(image_type_names(6))}, ...) or a comma list")
    parser.add_argument("--count", type=int, required=True, help="images per image type")
    parser.add_argument("--out", type=Path, required=True, help="folder to write; the manifest is OUT/manifest.jsonl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--anomaly-fraction", type=_fraction, default=0.3)
    parser.add_argument("--clutter", action="store_true", help="scatter distracting objects on the background")
    parser.set_defaults(handler=_synth)


def _write_rows(rows: list[ManifestRow], out: Path, what: str) -> int:
    count = write_manifest(out, rows)
    _log().info("manifest written", manifest=str(out), rows=count, source=what)
    print(format_summary(summarize(rows)))
    print(f"wrote {count} rows ({what}) to {out}")
    return 0


def _import_mvtec(args: argparse.Namespace) -> int:
    rows = import_mvtec(args.folder, args.image_type, allow_missing_masks=args.allow_missing_masks)
    with_product = sum(r.product_mask is not None for r in rows)
    print(f"product masks found for {with_product} of {len(rows)} images")
    return _write_rows(rows, args.out, f"mvtec layout from {args.folder}")


def _import_paired(args: argparse.Namespace) -> int:
    rows = import_paired(args.folder, args.image_type, args.mask_suffix, args.types_from_folders)
    return _write_rows(rows, args.out, f"paired layout from {args.folder}")


def _import_folder(args: argparse.Namespace) -> int:
    rows = import_folder(args.folder, args.image_type, args.label)
    return _write_rows(rows, args.out, f"folder layout from {args.folder}")


def _import_voc(args: argparse.Namespace) -> int:
    rows = import_voc(args.folder, args.image_type)
    boxes = sum(len(r.boxes) for r in rows)
    print(f"{boxes} boxes; {sum(r.split == 'test' for r in rows)} rows from held-out folders marked test")
    return _write_rows(rows, args.out, f"voc layout from {args.folder}")


def _split(args: argparse.Namespace) -> int:
    plan = SplitPlan(args.train_normal_fraction, args.calibration_fraction, args.validation_fraction,
                     args.train_anomaly_fraction)
    rows = split_rows(read_manifest(args.manifest), plan, args.seed)
    return _write_rows(rows, args.out, f"split of {args.manifest}, seed {args.seed}")


def _show(args: argparse.Namespace) -> int:
    summary = summarize(read_manifest(args.manifest))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{args.manifest}: {summary['rows']} rows")
        print(format_summary(summary))
    return 0


def _synth(args: argparse.Namespace) -> int:
    manifest = synthesize_dataset(
        args.out, args.image_types, args.count, seed=args.seed, size=args.size,
        anomaly_fraction=args.anomaly_fraction, clutter=args.clutter,
    )
    rows = read_manifest(manifest)
    _log().info("synthetic dataset written", manifest=str(manifest), rows=len(rows))
    print(format_summary(summarize(rows)))
    print(f"wrote {len(rows)} images with product and defect masks under {Path(args.out)}; manifest: {manifest}")
    return 0
