"""Running the reviewer: (frame, mask) pairs in, a grade with its probabilities out."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lineinspect.shared.models.backbone import frozen_for_inference, resize_mask, resize_to, to_input_tensor
from lineinspect.shared.models.package import ModelPackage, load_package
from lineinspect.shared.models.reviewer.config import ReviewerConfig
from lineinspect.shared.models.reviewer.perturb import GradeThresholds
from lineinspect.shared.models.reviewer.torch_model import ReviewerNet, estimated_iou, grade_probabilities

GRADE_NAMES = {1: "perfect", 2: "usable", 3: "untrustworthy"}
# Frames per forward pass at inference: at the reviewer's 96 px, 8 ran fastest per frame here
# (1 thread: 2.8 ms against 3.1 in batches of 4 and 4.0 of 16).
INFERENCE_BATCH_SIZE = 8


def thresholds_of(config: ReviewerConfig) -> GradeThresholds:
    return GradeThresholds(perfect=config.perfect_iou, usable=config.usable_iou)


def reviewer_input(images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> torch.Tensor:
    """(S, S) uint8 BGR frames and bool masks at input size -> (N, 4, S, S): normalised RGB and
    the mask as +1 (product) / -1 (background)."""
    rgb = to_input_tensor(images)
    mask = torch.from_numpy(np.stack(masks).astype(np.float32) * 2.0 - 1.0)[:, None]
    return torch.cat([rgb, mask], dim=1)


@dataclass(frozen=True)
class Review:
    grade: int  # 1 perfect, 2 usable, 3 untrustworthy
    probabilities: tuple[float, float, float]  # of grades 1, 2, 3
    estimated_iou: float  # the reviewer's guess of the mask's IoU with the truth

    @property
    def grade_name(self) -> str:
        return GRADE_NAMES[self.grade]

    @property
    def untrustworthy(self) -> float:
        """Probability of grade 3: the score the reviewer's AUROC is measured on."""
        return self.probabilities[2]


class Reviewer:
    """A trained reviewer package, ready to grade (frame, mask) pairs in batches."""

    def __init__(
        self, config: ReviewerConfig, network: ReviewerNet, version: str = "unsaved", batch_size: int = INFERENCE_BATCH_SIZE
    ) -> None:
        self.config = config
        self.version = version
        self.batch_size = batch_size
        self.thresholds = thresholds_of(config)
        example = torch.zeros(1, 4, config.input_size, config.input_size)
        self.network = frozen_for_inference(network.eval(), example)

    @classmethod
    def from_package(cls, package: ModelPackage | str | Path) -> "Reviewer":
        if not isinstance(package, ModelPackage):
            package = load_package(package, expected_kind="reviewer")
        config = ReviewerConfig.model_validate(package.manifest.config)
        network = ReviewerNet(config.trunk_blocks, config.head_channels, pretrained=False)
        network.load_state_dict(package.tensors, strict=True)
        return cls(config, network, package.manifest.version)

    @torch.inference_mode()
    def review_at_input_size(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> list[Review]:
        """Frames and masks already at (input_size, input_size)."""
        reviews: list[Review] = []
        for start in range(0, len(images), self.batch_size):
            end = start + self.batch_size
            output = self.network(reviewer_input(images[start:end], masks[start:end]))
            for probs, iou in zip(grade_probabilities(output).tolist(), estimated_iou(output).tolist()):
                grade = int(np.argmax(probs)) + 1
                reviews.append(Review(grade, (probs[0], probs[1], probs[2]), iou))
        return reviews

    def review(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> list[Review]:
        """Frames (any size, uint8 BGR) with their bool product masks of the same size."""
        if len(images) != len(masks):
            raise ValueError(f"{len(images)} frames but {len(masks)} masks")
        size = self.config.input_size
        for image, mask in zip(images, masks):
            if image.shape[:2] != mask.shape[:2]:
                raise ValueError(f"mask {mask.shape[:2]} does not match its frame {image.shape[:2]}")
        return self.review_at_input_size([resize_to(i, size, size) for i in images], [resize_mask(m, size, size) for m in masks])
