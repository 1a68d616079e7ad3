"""The math of the reviewer: grades a (frame, mask) pair.

Input (N, 4, S, S): the ImageNet-normalised RGB frame and the mask as a fourth channel (+1
product, -1 background), fused at the very first convolution so every layer of the
ImageNet-pretrained EfficientNet-Lite0 trunk can compare the mask's edges with the frame's.
The mask joins again at the deepest features. Output (N, 4): three grade logits
(perfect, usable, untrustworthy) and a logit of the mask's IoU with the truth.
"""

import torch
import torch.nn.functional as F
from torch import nn

from lineinspect.shared.models.backbone import BLOCK_CHANNELS, Lite0Features

GRADE_COUNT = 3


class ReviewerNet(nn.Module):
    def __init__(self, trunk_blocks: int = 8, head_channels: int = 128, pretrained: bool = True) -> None:
        super().__init__()
        self.encoder = Lite0Features((trunk_blocks - 1,), pretrained=pretrained)
        stem = self.encoder.stem[0]
        fused = nn.Conv2d(4, stem.out_channels, 3, stride=2, padding=1, bias=False)
        with torch.no_grad():
            fused.weight.zero_()
            fused.weight[:, :3] = stem.weight
            nn.init.normal_(fused.weight[:, 3:], std=0.1)
        self.encoder.stem[0] = fused
        deepest = BLOCK_CHANNELS[trunk_blocks - 1]
        self.mix = nn.Sequential(
            nn.Conv2d(deepest + 1, head_channels, 1, bias=False),
            nn.BatchNorm2d(head_channels),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.Linear(2 * head_channels, 64), nn.ReLU(inplace=True), nn.Linear(64, GRADE_COUNT + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (features,) = self.encoder(x)
        mask = F.adaptive_avg_pool2d(x[:, 3:4], features.shape[-2:])
        y = self.mix(torch.cat([features, mask], dim=1))
        pooled = torch.cat([y.mean(dim=(2, 3)), y.amax(dim=(2, 3))], dim=1)
        return self.head(pooled)


def reviewer_loss(output: torch.Tensor, grades: torch.Tensor, ious: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the grade (1..3) plus an IoU regression that teaches how far off a
    mask is, not only which side of a threshold it falls."""
    classification = F.cross_entropy(output[:, :GRADE_COUNT], grades - 1)
    regression = F.smooth_l1_loss(torch.sigmoid(output[:, GRADE_COUNT]), ious, beta=0.05)
    return classification + 4.0 * regression


def grade_probabilities(output: torch.Tensor) -> torch.Tensor:
    return torch.softmax(output[:, :GRADE_COUNT], dim=1)


def estimated_iou(output: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(output[:, GRADE_COUNT])
