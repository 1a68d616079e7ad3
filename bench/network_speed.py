"""Float32 inference speed of each network, as shipped against how it ran before its paddings
were folded.

CPUs without native bfloat16 (AVX2 machines, many plant PCs) run every network as float32
TorchScript, frozen and optimised for oneDNN (`backbone.frozen_for_inference`). Lite0's
symmetric "same" paddings are now done by the convolutions themselves; before, each was an
explicit pad: a dense op between oneDNN convolutions, costing a zero fill, a copy and two
layout conversions. For each network at its default input size and inference batch this
times the shipped form (`<kind>_images_per_second`) and the unfolded one
(`<kind>_unfolded_images_per_second`) in turn, five rounds, best round each, so the ratio
holds on a machine whose speed drifts; `<kind>_max_difference` is the largest difference
between their outputs (the same numbers up to float rounding). The process computes in
float32 whatever the CPU offers (LINEINSPECT_COMPUTE_PRECISION=float32).

    python bench/network_speed.py --json N.json
"""

import argparse
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from lineinspect.shared.config import get_settings, prepare_torch_process
from lineinspect.shared.logs import configure_logging
from lineinspect.shared.models.anomaly.config import AnomalyConfig
from lineinspect.shared.models.anomaly.torch_model import PatchFeatures
from lineinspect.shared.models.backbone import frozen_for_inference, torchscript_frozen
from lineinspect.shared.models.detector.config import DetectorConfig
from lineinspect.shared.models.detector.inference import INFERENCE_BATCH_SIZE as DETECTOR_BATCH
from lineinspect.shared.models.detector.torch_model import DetectorNet
from lineinspect.shared.models.mask.config import MaskConfig
from lineinspect.shared.models.mask.inference import INFERENCE_BATCH_SIZE as MASK_BATCH
from lineinspect.shared.models.mask.torch_model import MaskNet
from lineinspect.shared.models.precision import compute_precision
from lineinspect.shared.models.reviewer.config import ReviewerConfig
from lineinspect.shared.models.reviewer.inference import INFERENCE_BATCH_SIZE as REVIEWER_BATCH
from lineinspect.shared.models.reviewer.torch_model import ReviewerNet
from common import machine, print_figures, timed_rates

# Detector classes as on NEU-DET; the count only sizes the last convolution of the class head.
DETECTOR_CLASSES = 6


def networks() -> dict[str, tuple[nn.Module, torch.Tensor]]:
    """Each network with pretrained Lite0 weights and a batch of its inputs."""
    anomaly, mask, reviewer, detector = AnomalyConfig(), MaskConfig(), ReviewerConfig(), DetectorConfig()

    def batch(count: int, channels: int, side: int) -> torch.Tensor:
        return torch.rand(count, channels, side, side)

    return {
        "anomaly_features": (PatchFeatures(anomaly.taps, anomaly.aggregate), batch(anomaly.batch_size, 3, anomaly.input_size)),
        "mask_finder": (MaskNet(mask.decoder_channels, mask.upsampling), batch(MASK_BATCH, 3, mask.input_size)),
        "reviewer": (ReviewerNet(), batch(REVIEWER_BATCH, 4, reviewer.input_size)),
        "detector": (DetectorNet.for_config(DETECTOR_CLASSES, detector), batch(DETECTOR_BATCH, 3, detector.input_size)),
    }


def outputs_of(module: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    with torch.inference_mode():
        result = module(images)
    return list(result) if isinstance(result, tuple) else [result]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--batches", type=int, default=8, help="batches timed per round")
    args = parser.parse_args()
    configure_logging(level="WARNING")
    os.environ["LINEINSPECT_COMPUTE_PRECISION"] = "float32"
    get_settings.cache_clear()
    prepare_torch_process()
    figures: dict[str, object] = {}
    for kind, (network, images) in networks().items():
        forms = {"": frozen_for_inference(network.eval(), images[:1]), "_unfolded": torchscript_frozen(network, images[:1])}

        def timed(form: nn.Module) -> Callable[[], None]:
            def work() -> None:
                with torch.inference_mode():
                    for _ in range(args.batches):
                        form(images)
            return work

        rates, spread = timed_rates({suffix: timed(form) for suffix, form in forms.items()}, args.batches * len(images))
        shipped, before = (outputs_of(form, images) for form in forms.values())
        figures[f"{kind}_images_per_second"] = rates[""]
        figures[f"{kind}_unfolded_images_per_second"] = rates["_unfolded"]
        figures[f"{kind}_ratio"] = rates[""] / rates["_unfolded"]
        # Printed as text: a difference of float rounding (~1e-5) would show as 0.00 with two decimals.
        figures[f"{kind}_max_difference"] = f"{max(float((a - b).abs().max()) for a, b in zip(shipped, before)):.1e}"
        figures[f"{kind}_timing_spread"] = spread
    figures.update(compute_precision=compute_precision(), torch_threads=torch.get_num_threads(), machine=machine())
    print_figures(figures, args.json)


if __name__ == "__main__":
    main()
