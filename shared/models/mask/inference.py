"""Running the mask finder: frames in, product masks at frame resolution with area and
confidence out. `WholeFrame` is the configured alternative for lines that image bare
surfaces: the mask is the whole frame, with no model."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from lineinspect.shared.models.backbone import frozen_for_inference, resize_to, to_input_tensor
from lineinspect.shared.models.mask.config import MaskConfig
from lineinspect.shared.models.mask.torch_model import MaskNet
from lineinspect.shared.models.package import ModelPackage, load_package

WHOLE_FRAME = "whole_frame"
# Frames per forward pass at inference. Per frame the expanded early feature maps of a larger
# batch outgrow the CPU caches: on this machine, at 192 px, 23.4 ms in batches of 4 against
# 28 ms of 8 on 1 thread (14.7 vs 17.5 ms on 2); at 160 px 17.0 vs 19.6 (11.2 vs 12.4).
INFERENCE_BATCH_SIZE = 4
# What a package saved before `upsampling` was a setting was built with.
PACKAGES_BEFORE_SUBPIXEL = {"upsampling": "bilinear", "decoder_channels": (96, 64, 48, 32)}


@dataclass(frozen=True)
class MaskPrediction:
    mask: np.ndarray  # bool (H, W) at the frame's resolution, True = product
    confidence: float  # 0..1: mean certainty of the per-pixel decisions
    mode: str  # "model" | "whole_frame"

    @property
    def area_px(self) -> int:
        return int(self.mask.sum())

    @property
    def area_fraction(self) -> float:
        return self.area_px / self.mask.size if self.mask.size else 0.0


class MaskFinder:
    """A trained mask package, ready to segment frames in batches."""

    mode = "model"

    def __init__(
        self, config: MaskConfig, network: MaskNet, version: str = "unsaved", batch_size: int = INFERENCE_BATCH_SIZE
    ) -> None:
        self.config = config
        self.version = version
        self.batch_size = batch_size
        network = network.eval()
        example = torch.zeros(1, 3, config.input_size, config.input_size)
        self.network = frozen_for_inference(network, example)

    @classmethod
    def from_package(cls, package: ModelPackage | str | Path) -> "MaskFinder":
        if not isinstance(package, ModelPackage):
            package = load_package(package, expected_kind="mask")
        config = MaskConfig.model_validate({**PACKAGES_BEFORE_SUBPIXEL, **package.manifest.config})
        network = MaskNet(config.decoder_channels, config.upsampling, pretrained=False)
        network.load_state_dict(package.tensors, strict=True)
        return cls(config, network, package.manifest.version)

    @torch.inference_mode()
    def probabilities(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """(N, S, S) product probabilities at input size."""
        size = self.config.input_size
        batch = to_input_tensor([resize_to(image, size, size) for image in images])
        return torch.sigmoid(self.network(batch))[:, 0]

    def predict(self, images: Sequence[np.ndarray]) -> list[MaskPrediction]:
        predictions: list[MaskPrediction] = []
        for start in range(0, len(images), self.batch_size):
            batch = images[start : start + self.batch_size]
            for image, probs in zip(batch, self.probabilities(batch).numpy()):
                height, width = image.shape[:2]
                full = cv2.resize(probs, (width, height), interpolation=cv2.INTER_LINEAR)
                confidence = float(np.abs(2.0 * probs - 1.0).mean())
                predictions.append(MaskPrediction(full >= 0.5, confidence, self.mode))
        return predictions


class WholeFrame:
    """The mask of a line without a mask model: every pixel is product."""

    mode = WHOLE_FRAME
    version = WHOLE_FRAME

    def predict(self, images: Sequence[np.ndarray]) -> list[MaskPrediction]:
        return [MaskPrediction(np.ones(image.shape[:2], bool), 1.0, self.mode) for image in images]


def load_mask_finder(source: str | Path) -> MaskFinder | WholeFrame:
    """`whole_frame`, or the path of a mask package."""
    if str(source) == WHOLE_FRAME:
        return WholeFrame()
    return MaskFinder.from_package(source)
