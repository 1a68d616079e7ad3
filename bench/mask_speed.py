"""Mask-finder + reviewer inference speed on this machine, at default settings.

Times, in one run and on the same generated frames, the line's work for each frame: the mask
finder's product mask at frame resolution, then the reviewer's grade of that (frame, mask)
pair (`images_per_second`), and each part alone (`mask_images_per_second`,
`reviewer_images_per_second`), in turn over five rounds, each keeping its best
(`timing_spread`: its slowest round over its fastest, as in anomaly_speed.py). Speed does
not depend on the weights, so by default both packages are trained for a few steps on
generated frames; pass trained packages to time those instead.

    python bench/mask_speed.py --json S.json [--mask-package M --reviewer-package R]
"""

import argparse
import tempfile
from pathlib import Path

import torch

from lineinspect.shared.config import prepare_torch_process
from lineinspect.shared.datasets.manifest import read_manifest
from lineinspect.shared.datasets.split import SplitPlan, split_rows
from lineinspect.shared.datasets.synth import generate_sample, synthesize_dataset
from lineinspect.shared.datasets.synth.dataset import sample_rng
from lineinspect.shared.logs import configure_logging
from lineinspect.shared.models.mask.inference import MaskFinder
from lineinspect.shared.models.mask.training import train_mask
from lineinspect.shared.models.reviewer.inference import Reviewer
from lineinspect.shared.models.reviewer.training import train_reviewer
from common import machine, print_figures, timed_rates

IMAGE_TYPES = ["disc", "plate", "bracket"]


def packages(scratch: Path, size: int) -> tuple[Path, Path]:
    manifest = synthesize_dataset(scratch / "frames", IMAGE_TYPES, count=8, seed=1, size=size, anomaly_fraction=0.0,
                                  clutter=True)
    rows = split_rows(read_manifest(manifest), SplitPlan(0.75), seed=0)
    train_mask(rows, scratch / "mask", progress=False, max_steps=2)
    train_reviewer(rows, scratch / "reviewer", progress=False, max_steps=2)
    return scratch / "mask", scratch / "reviewer"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--frames", type=int, default=200, help="frames timed per run")
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels")
    parser.add_argument("--mask-package", type=Path, help="time this mask package (default: a briefly trained one)")
    parser.add_argument("--reviewer-package", type=Path, help="time this reviewer package (default: a briefly trained one)")
    args = parser.parse_args()
    configure_logging(level="WARNING")
    prepare_torch_process()
    with tempfile.TemporaryDirectory() as scratch:
        mask_dir, reviewer_dir = args.mask_package, args.reviewer_package
        if mask_dir is None or reviewer_dir is None:
            trained_mask, trained_reviewer = packages(Path(scratch), args.size)
            mask_dir, reviewer_dir = mask_dir or trained_mask, reviewer_dir or trained_reviewer
        finder = MaskFinder.from_package(mask_dir)
        reviewer = Reviewer.from_package(reviewer_dir)

    samples = [generate_sample(IMAGE_TYPES[i % 3], sample_rng(7, "bench", i), args.size, None, clutter=True)
               for i in range(args.frames)]
    images = [s.image for s in samples]
    masks = [p.mask for p in finder.predict(images)]

    def both() -> None:
        found = [p.mask for p in finder.predict(images)]
        reviewer.review(images, found)

    rates, spread = timed_rates(
        {
            "images_per_second": both,
            "mask_images_per_second": lambda: finder.predict(images),
            "reviewer_images_per_second": lambda: reviewer.review(images, masks),
        },
        len(images),
    )
    figures = {
        **rates,
        "timing_spread": spread,
        "frame_size": [args.size, args.size],
        "mask_input_size": finder.config.input_size,
        "reviewer_input_size": reviewer.config.input_size,
        "mask_batch_size": finder.batch_size,
        "reviewer_batch_size": reviewer.batch_size,
        "torch_threads": torch.get_num_threads(),
        "machine": machine(),
    }
    print_figures(figures, args.json)


if __name__ == "__main__":
    main()
