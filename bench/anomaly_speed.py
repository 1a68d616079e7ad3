"""Anomaly inference speed on this machine, at default settings.

Trains a model on 200 generated normal frames (timed: `training_seconds_200_images`), then
times, in the same run and on the same frames, full inference (score, heatmap at input
resolution, typed regions) with product masks as in the line (`images_per_second`) and
without (`images_per_second_whole_frame`), and feature extraction alone
(`backbone_images_per_second`), so the ratio shows how close the whole is to its backbone.
The three run in turn, five rounds, and each keeps its best round; `timing_spread` is how far
one's slowest round was from its fastest (a shared machine's speed can drift 1.5-2x within a
minute: then the ratios still hold where the absolute figures do not).

    python bench/anomaly_speed.py --json S.json
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from lineinspect.shared.config import prepare_torch_process
from lineinspect.shared.datasets.manifest import read_manifest
from lineinspect.shared.datasets.synth import generate_sample, synthesize_dataset
from lineinspect.shared.datasets.synth.dataset import sample_rng
from lineinspect.shared.logs import configure_logging
from lineinspect.shared.models.anomaly.inference import AnomalyModel, prepare_image
from lineinspect.shared.models.anomaly.training import train_anomaly
from common import machine, print_figures, timed_rates

IMAGE_TYPES = ["disc", "plate", "bracket"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--frames", type=int, default=200, help="frames timed per run")
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels")
    args = parser.parse_args()
    configure_logging(level="WARNING")
    prepare_torch_process()
    with tempfile.TemporaryDirectory() as scratch:
        manifest = synthesize_dataset(Path(scratch) / "train", IMAGE_TYPES, count=67, seed=1, size=args.size, anomaly_fraction=0.0)
        rows = [row.model_copy(update={"split": "train"}) for row in read_manifest(manifest)][:200]
        began = time.perf_counter()
        package = train_anomaly(rows, Path(scratch) / "package", progress=False)
        training_seconds = time.perf_counter() - began
        model = AnomalyModel.from_package(package)

    samples = [generate_sample(IMAGE_TYPES[i % 3], sample_rng(7, "bench", i), args.size, "spot" if i % 4 == 0 else None)
               for i in range(args.frames)]
    images = [s.image for s in samples]
    masks = [s.product_mask for s in samples]
    batch = model.config.batch_size

    def full() -> None:
        model.predict(images, masks)

    def whole_frame() -> None:
        model.predict(images)

    def backbone() -> None:  # batched as predict batches it
        for start in range(0, len(images), batch):
            model.patch_features([prepare_image(image, model.config) for image in images[start : start + batch]])

    rates, spread = timed_rates(
        {"images_per_second": full, "images_per_second_whole_frame": whole_frame, "backbone_images_per_second": backbone}, len(images)
    )
    figures = {
        **rates,
        "timing_spread": spread,
        "training_seconds_200_images": training_seconds,
        "memory_bank_patches": len(model.search),
        "frame_size": [args.size, args.size],
        "input_size": model.config.input_size,
        "batch_size": batch,
        "torch_threads": torch.get_num_threads(),
        "machine": machine(),
    }
    figures["ratio_to_backbone"] = figures["images_per_second"] / figures["backbone_images_per_second"]
    print_figures(figures, args.json)


if __name__ == "__main__":
    main()
