"""The math of the defect detector: a one-stage, anchor-free (FCOS-style) head on a small
feature pyramid over the ImageNet-pretrained EfficientNet-Lite0 encoder.

(N, 3, S, S) images -> per location of every level: class logits (N, P, C), box side
distances in input pixels (N, P, 4) and a centre-ness logit (N, P). The loss is GIoU for
boxes and binary cross-entropy for centre-ness, as in FCOS; for classes focal loss (FCOS)
or, by default, GFL's quality focal loss for IoU-aware class scores, which then rank boxes
alone (centre-ness is still learnt beside the boxes, as measured, but not used). By default
each side is also a distribution over distance bins learnt with GFL's distribution focal
loss.
"""

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from lineinspect.shared.models.backbone import Lite0Features
from lineinspect.shared.models.detector.boxes import Locations, Targets, centreness, decode
from lineinspect.shared.models.detector.config import DetectorConfig

# Encoder blocks feeding the pyramid: strides 8, 16, 32.
PYRAMID_TAPS = (4, 10, 15)
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
PRIOR_PROBABILITY = 0.01
# GFL's weight of the distribution focal loss beside the GIoU loss.
DISTRIBUTION_LOSS_WEIGHT = 0.25


class Pyramid(nn.Module):
    """Feature pyramid: 1x1 lateral projections, top-down sums, a 3x3 smoothing conv per level;
    with `bottom_up`, then a path back up (PANet): each coarser level adds a stride-2 3x3
    convolution of the finer one, so fine detail reaches the levels that box large defects."""

    def __init__(self, in_channels: tuple[int, ...], width: int, bottom_up: bool = False) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in in_channels)
        self.down = nn.ModuleList(nn.Conv2d(width, width, 3, stride=2, padding=1) for _ in in_channels[1:]) if bottom_up else None

    def forward(self, features: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral, features)]
        for index in range(len(laterals) - 2, -1, -1):
            laterals[index] = laterals[index] + F.interpolate(laterals[index + 1], size=laterals[index].shape[-2:], mode="nearest")
        levels = [conv(x) for conv, x in zip(self.smooth, laterals)]
        if self.down is not None:
            for index, conv in enumerate(self.down, start=1):
                levels[index] = levels[index] + conv(levels[index - 1])
        return levels


def tower(width: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.GroupNorm(16 if width % 16 == 0 else 1, width), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class DetectorNet(nn.Module):
    """With `distance_bins` > 0 each box side is a distribution over 0..bins strides (GFL's
    general distribution) whose expectation is the distance, instead of one regressed value."""

    def __init__(
        self, num_classes: int, width: int = 96, head_convs: int = 2, pretrained: bool = True, distance_bins: int = 0, bottom_up: bool = False
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.distance_bins = distance_bins
        self.encoder = Lite0Features(PYRAMID_TAPS, pretrained=pretrained)
        self.strides = self.encoder.strides()
        self.pyramid = Pyramid(self.encoder.channels(), width, bottom_up)
        self.class_tower = tower(width, head_convs)
        self.box_tower = tower(width, head_convs)
        self.class_logits = nn.Conv2d(width, num_classes, 3, padding=1)
        self.box_distances = nn.Conv2d(width, 4 * (distance_bins + 1) if distance_bins else 4, 3, padding=1)
        self.register_buffer("bin_values", torch.arange(distance_bins + 1, dtype=torch.float32), persistent=False)
        self.centre_logit = nn.Conv2d(width, 1, 3, padding=1)
        if not distance_bins:
            # One learnt scale per level for the regressed box distances (in strides).
            self.level_scales = nn.Parameter(torch.ones(len(self.strides)))
        for conv in (self.class_logits, self.box_distances, self.centre_logit):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        # Start every class at a low probability so background does not swamp the first steps.
        nn.init.constant_(self.class_logits.bias, -torch.log(torch.tensor((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)).item())

    @classmethod
    def for_config(cls, num_classes: int, config: DetectorConfig, pretrained: bool = True) -> "DetectorNet":
        """The network a detector config describes."""
        return cls(num_classes, config.fpn_channels, config.head_convs, pretrained, config.distance_bins, config.pyramid == "pan")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        classes, distances, centres, _ = zip(*self._levels(x))
        return torch.cat(classes, 1), torch.cat(distances, 1), torch.cat(centres, 1)

    def forward_for_training(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The three outputs of `forward` and, with distance bins, the logits of each side's
        bins (N, P, 4, bins + 1) that the distribution focal loss needs."""
        classes, distances, centres, side_logits = zip(*self._levels(x))
        outputs = (torch.cat(classes, 1), torch.cat(distances, 1), torch.cat(centres, 1))
        return (*outputs, torch.cat(side_logits, 1)) if self.distance_bins else outputs

    def _levels(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """Per pyramid level: class logits, side distances in pixels, centre-ness logits and
        the side bins' logits (None without bins), each flattened over the level's locations."""
        for level, (stride, feature) in enumerate(zip(self.strides, self.pyramid(self.encoder(x)))):
            class_feature = self.class_tower(feature)
            box_feature = self.box_tower(feature)
            n = feature.shape[0]
            classes = self.class_logits(class_feature).flatten(2).transpose(1, 2)
            centres = self.centre_logit(box_feature).reshape(n, -1)
            sides = self.box_distances(box_feature)
            if self.distance_bins:
                logits = sides.reshape(n, 4, self.distance_bins + 1, -1).permute(0, 3, 1, 2)
                yield classes, (logits.softmax(-1) @ self.bin_values.to(logits.dtype)) * stride, centres, logits
            else:
                yield classes, (F.relu(sides * self.level_scales[level]) * stride).flatten(2).transpose(1, 2), centres, None


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed focal loss (RetinaNet) of class logits against one-hot targets."""
    probs = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probs * targets + (1 - probs) * (1 - targets)
    alpha_t = FOCAL_ALPHA * targets + (1 - FOCAL_ALPHA) * (1 - targets)
    return (alpha_t * ce * (1 - p_t) ** FOCAL_GAMMA).sum()


def quality_focal_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed quality focal loss (GFL): cross-entropy against soft targets (0 for background,
    the box's IoU for its class), scaled by how far the probability is from the target."""
    probs = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (ce * (probs - targets).abs() ** FOCAL_GAMMA).sum()


def pairwise_iou(predicted: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and generalised IoU of each predicted (x1, y1, x2, y2) box with its target box."""
    area_p = (predicted[:, 2] - predicted[:, 0]).clamp_min(0) * (predicted[:, 3] - predicted[:, 1]).clamp_min(0)
    area_t = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    top_left = torch.maximum(predicted[:, :2], target[:, :2])
    bottom_right = torch.minimum(predicted[:, 2:], target[:, 2:])
    intersection = (bottom_right - top_left).clamp_min(0).prod(1)
    union = area_p + area_t - intersection
    iou = intersection / union.clamp_min(1e-6)
    hull = (torch.maximum(predicted[:, 2:], target[:, 2:]) - torch.minimum(predicted[:, :2], target[:, :2])).clamp_min(0).prod(1)
    return iou, iou - (hull - union) / hull.clamp_min(1e-6)


def complete_iou(predicted: torch.Tensor, target: torch.Tensor, iou: torch.Tensor) -> torch.Tensor:
    """CIoU (Zheng et al. 2020, as YOLOv5 and YOLOv8 use it) of each predicted box with its
    target: the IoU less the squared centre distance over the enclosing box's squared diagonal,
    less an aspect-ratio term that counts once the boxes overlap."""
    hull = torch.maximum(predicted[:, 2:], target[:, 2:]) - torch.minimum(predicted[:, :2], target[:, :2])
    diagonal = hull.pow(2).sum(1).clamp_min(1e-6)
    centre_gap = ((predicted[:, :2] + predicted[:, 2:]) - (target[:, :2] + target[:, 2:])).pow(2).sum(1) / 4
    size_p = (predicted[:, 2:] - predicted[:, :2]).clamp_min(1e-6)
    size_t = (target[:, 2:] - target[:, :2]).clamp_min(1e-6)
    shape_gap = (4 / torch.pi**2) * (torch.atan(size_t[:, 0] / size_t[:, 1]) - torch.atan(size_p[:, 0] / size_p[:, 1])).pow(2)
    with torch.no_grad():
        trade_off = shape_gap / (1 - iou + shape_gap).clamp_min(1e-6)
    return iou - centre_gap / diagonal - trade_off * shape_gap


def distribution_focal_loss(side_logits: torch.Tensor, target_strides: torch.Tensor) -> torch.Tensor:
    """Per-location DFL (GFL): cross-entropy of each side's bins against the two bins either
    side of the true distance (in strides), weighted by nearness; mean over the four sides."""
    bins = side_logits.shape[-1] - 1
    target = target_strides.clamp(0, bins - 0.01)
    left = target.floor().long()
    right_weight = target - left
    log_p = F.log_softmax(side_logits, dim=-1)
    left_loss = -log_p.gather(-1, left[..., None]).squeeze(-1)
    right_loss = -log_p.gather(-1, (left + 1)[..., None]).squeeze(-1)
    return ((1 - right_weight) * left_loss + right_weight * right_loss).mean(dim=-1)


def box_weights_of(box_weighting: str, centre_target: torch.Tensor, positive_class_logits: torch.Tensor) -> torch.Tensor:
    """Weight of each positive location's box losses: its centre-ness target ('centreness':
    locations near a box's edge say less about it) or its highest class probability, not
    back-propagated ('score', GFL)."""
    if box_weighting == "centreness":
        return centre_target
    if box_weighting == "score":
        return positive_class_logits.detach().sigmoid().amax(-1)
    raise ValueError(f"box_weighting is 'centreness' or 'score', got {box_weighting!r}")


def detection_loss(
    outputs: tuple[torch.Tensor, ...],
    targets: list[Targets],
    where: Locations,
    box_weight: float = 1.0,
    quality_focal: bool = False,
    box_weighting: str = "centreness",
    box_overlap: str = "giou",
) -> dict[str, torch.Tensor]:
    """FCOS losses of a batch, each normalised by the number of positive locations. With
    `quality_focal` the class score of a positive location learns the IoU of its predicted
    box with the truth (GFL) instead of 1, so the score ranks boxes by how well they fit.
    `outputs` are `DetectorNet.forward_for_training`'s: with distance bins, a fourth output
    adds the distribution focal loss. Each positive location's box losses are weighted by the
    centre-ness of its place in the box (FCOS, ATSS) or, with `box_weighting="score"`, by its
    own highest class probability (GFL): the boxes that will be kept are the ones to fit.
    Targets of the task-aligned assignment carry their own soft class targets and box
    weights (TOOD's normalised alignment), which take the place of both. The box loss is
    1 - GIoU or, with `box_overlap="ciou"`, 1 - CIoU."""
    class_logits, distances, centre_logits = outputs[:3]
    aligned = all(t.alignment is not None for t in targets)
    labels = torch.stack([t.labels for t in targets])  # (N, P)
    target_distances = torch.stack([t.distances for t in targets])  # (N, P, 4)
    positive = labels >= 0
    positives = max(int(positive.sum()), 1)
    class_targets = torch.zeros_like(class_logits)
    class_targets[positive] = F.one_hot(labels[positive], class_logits.shape[-1]).to(class_targets.dtype)
    if positive.any():
        points = where.points[None].expand(labels.shape[0], -1, -1)[positive]
        centre_target = centreness(target_distances[positive])
        predicted_boxes = decode(points, distances[positive])
        target_boxes = decode(points, target_distances[positive])
        iou, giou = pairwise_iou(predicted_boxes, target_boxes)
        if aligned:
            alignment = torch.stack([t.alignment for t in targets])[positive]
            class_targets[positive] *= alignment[:, None]
            box_weights = alignment
        else:
            if quality_focal:
                class_targets[positive] *= iou.detach().clamp_min(0)[:, None]
            box_weights = box_weights_of(box_weighting, centre_target, class_logits[positive])
        box_weights = box_weights / box_weights.sum().clamp_min(1e-6)
        if box_overlap not in ("giou", "ciou"):
            raise ValueError(f"box_overlap is 'giou' or 'ciou', got {box_overlap!r}")
        overlap = complete_iou(predicted_boxes, target_boxes, iou) if box_overlap == "ciou" else giou
        losses = {"boxes": ((1 - overlap) * box_weights).sum()}
        if len(outputs) > 3:
            strides = where.strides[None].expand(labels.shape[0], -1)[positive]
            sides = distribution_focal_loss(outputs[3][positive], target_distances[positive] / strides[:, None])
            losses["sides"] = (sides * box_weights).sum()
        losses["centreness"] = F.binary_cross_entropy_with_logits(centre_logits[positive], centre_target, reduction="sum") / positives
    else:
        zero = distances.sum() * 0 + centre_logits.sum() * 0
        losses = {"boxes": zero, "centreness": zero}
        if len(outputs) > 3:
            losses["sides"] = outputs[3].sum() * 0
    class_loss = quality_focal_loss if quality_focal or aligned else sigmoid_focal_loss
    losses["classes"] = class_loss(class_logits, class_targets) / positives
    losses["total"] = losses["classes"] + box_weight * losses["boxes"] + losses["centreness"] + DISTRIBUTION_LOSS_WEIGHT * losses.get("sides", 0.0)
    return losses

