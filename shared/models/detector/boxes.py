"""Box geometry of the FCOS-style detector: the locations each pyramid level predicts at,
encoding a box as distances from a location to its four sides and back, choosing which
box each location learns (FCOS centre sampling, ATSS, or TOOD's task alignment), and
non-maximum suppression.

Boxes are (x1, y1, x2, y2) float pixels, x2/y2 exclusive (the manifest's convention).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

# The boxes each level learns, by the largest distance from a location to a side of the box
# (about half the box's longer side near its centre). FCOS uses 8 strides per level on
# 800-px images; our frames are ~4x smaller, so 4: stride 8 learns distances up to 32 px
# (boxes up to ~64 px), stride 16 up to 64 px, stride 32 beyond.
LEVEL_RANGE_PER_STRIDE = 4.0
# Locations given to a box that the rules above leave without any (see `_cover_thin_boxes`).
THIN_BOX_LOCATIONS = 9
# ATSS: candidates per level nearest a box's centre, and the anchor side in strides (the paper's 9 and 8).
ATSS_CANDIDATES_PER_LEVEL = 9
ATSS_ANCHOR_SCALE = 8.0
# Task-aligned assignment (TOOD): locations per box, and the powers of class score and IoU in
# the alignment metric score^alpha x IoU^beta (the paper's 13, 1 and 6).
ALIGNED_TOP_K = 13
ALIGNED_ALPHA = 1.0
ALIGNED_BETA = 6.0


@dataclass(frozen=True)
class Locations:
    """Centres of every output cell of every level, flattened level after level."""

    points: torch.Tensor  # (P, 2) x, y in input pixels
    strides: torch.Tensor  # (P,) the stride of each point's level
    ranges: torch.Tensor  # (P, 2) smallest and largest side distance the point's level learns


def locations(input_size: int, strides: Sequence[int]) -> Locations:
    points, point_strides, ranges = [], [], []
    for index, stride in enumerate(strides):
        cells = -(-input_size // stride)
        centres = (torch.arange(cells, dtype=torch.float32) + 0.5) * stride
        ys, xs = torch.meshgrid(centres, centres, indexing="ij")
        points.append(torch.stack([xs.flatten(), ys.flatten()], dim=1))
        point_strides.append(torch.full((cells * cells,), float(stride)))
        low = 0.0 if index == 0 else LEVEL_RANGE_PER_STRIDE * strides[index - 1]
        high = float("inf") if index == len(strides) - 1 else LEVEL_RANGE_PER_STRIDE * stride
        ranges.append(torch.tensor([[low, high]]).expand(cells * cells, 2))
    return Locations(torch.cat(points), torch.cat(point_strides), torch.cat(ranges))


def mirrored(where: Locations, axis: str) -> torch.Tensor:
    """For every location, the index of the location at its mirror image across the frame's
    vertical centre line (axis 'x', a left-right flip) or horizontal one ('y'): (P,)."""
    if axis not in ("x", "y"):
        raise ValueError(f"axis is 'x' or 'y', got {axis!r}")
    indices, start = [], 0
    for count in torch.unique_consecutive(where.strides, return_counts=True)[1].tolist():
        cells = round(count**0.5)
        grid = torch.arange(start, start + count).reshape(cells, cells)
        indices.append((grid.flip(1) if axis == "x" else grid.flip(0)).flatten())
        start += count
    return torch.cat(indices)


def encode(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Distances (left, top, right, bottom) from each point to the sides of its box: (P, 4)."""
    return torch.stack(
        [points[:, 0] - boxes[:, 0], points[:, 1] - boxes[:, 1], boxes[:, 2] - points[:, 0], boxes[:, 3] - points[:, 1]],
        dim=1,
    )


def decode(points: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
    """The inverse of `encode`: boxes (..., P, 4) from points (P, 2) and distances (..., P, 4)."""
    return torch.stack(
        [
            points[:, 0] - distances[..., 0],
            points[:, 1] - distances[..., 1],
            points[:, 0] + distances[..., 2],
            points[:, 1] + distances[..., 3],
        ],
        dim=-1,
    )


def centreness(distances: torch.Tensor) -> torch.Tensor:
    """FCOS centre-ness of encoded targets: 1 at a box's centre, falling to 0 at its sides."""
    left_right, top_bottom = distances[:, [0, 2]], distances[:, [1, 3]]
    ratio = (left_right.min(1).values / left_right.max(1).values.clamp_min(1e-6)) * (
        top_bottom.min(1).values / top_bottom.max(1).values.clamp_min(1e-6)
    )
    return ratio.clamp_min(0).sqrt()


@dataclass(frozen=True)
class Targets:
    labels: torch.Tensor  # (P,) class index, -1 = background
    distances: torch.Tensor  # (P, 4) encoded box of positive points (0 elsewhere)
    # Task-aligned assignment only: each positive point's normalised alignment, the soft target
    # of its class score and the weight of its box losses (0 elsewhere); None for the others.
    alignment: torch.Tensor | None = None


def assign(where: Locations, boxes: torch.Tensor, labels: torch.Tensor, centre_radius: float) -> Targets:
    """Which box each location learns: a location inside a box and within `centre_radius`
    strides of its centre, on the level whose range holds the box's size there; the smallest
    such box when several qualify. A box left without any location gets the free ones inside
    it nearest its centre."""
    if boxes.numel() == 0:
        return _background(where)
    points = where.points
    distances, inside, centres = _box_geometry(points, boxes)
    radius = where.strides[:, None] * centre_radius
    near_centre = ((points[:, None, :] - centres[None]).abs() < radius[..., None]).all(dim=2)
    reach = distances.max(dim=2).values
    on_level = (reach >= where.ranges[:, None, 0]) & (reach <= where.ranges[:, None, 1])
    candidate = inside & near_centre & on_level
    areas = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].expand(len(points), -1)
    areas = torch.where(candidate, areas, torch.full_like(areas, float("inf")))
    smallest_area, chosen = areas.min(dim=1)
    positive = torch.isfinite(smallest_area)
    return _targets(points, distances, centres, inside, positive, chosen, labels)


def assign_adaptive(where: Locations, boxes: torch.Tensor, labels: torch.Tensor) -> Targets:
    """ATSS (Zhang et al. 2020): on every level, the locations nearest a box's centre are its
    candidates; those whose anchor (a square of `ATSS_ANCHOR_SCALE` strides) overlaps the box
    by at least the mean + standard deviation of the candidates' IoUs, and that lie inside the
    box, learn it; the box it overlaps most when several qualify. The levels a box is learnt
    on follow from its shape and size instead of fixed ranges."""
    if boxes.numel() == 0:
        return _background(where)
    points = where.points
    distances, inside, centres = _box_geometry(points, boxes)
    half = where.strides[:, None] * ATSS_ANCHOR_SCALE / 2
    overlap = torch.from_numpy(box_iou(torch.cat([points - half, points + half], dim=1).numpy(), boxes.numpy())).float()  # (P, M)
    to_centre = torch.cdist(points, centres)  # (P, M)
    candidate = torch.zeros_like(overlap, dtype=torch.bool)
    columns = torch.arange(len(boxes))
    start = 0
    for count in torch.unique_consecutive(where.strides, return_counts=True)[1].tolist():
        nearest = to_centre[start : start + count].topk(min(ATSS_CANDIDATES_PER_LEVEL, count), dim=0, largest=False).indices
        candidate[start + nearest, columns] = True
        start += count
    candidate_overlap = torch.where(candidate, overlap, torch.zeros_like(overlap))
    candidates = candidate.sum(dim=0)
    mean = candidate_overlap.sum(dim=0) / candidates
    spread = ((candidate_overlap - mean) ** 2 * candidate).sum(dim=0) / (candidates - 1).clamp_min(1)
    chosen_for_box = candidate & inside & (overlap >= mean + spread.sqrt())
    best, chosen = torch.where(chosen_for_box, overlap, torch.full_like(overlap, -1.0)).max(dim=1)
    return _targets(points, distances, centres, inside, best >= 0, chosen, labels)


def assign_task_aligned(
    where: Locations, boxes: torch.Tensor, labels: torch.Tensor, class_probabilities: torch.Tensor, predicted_boxes: torch.Tensor
) -> Targets:
    """TOOD's task-aligned assignment (Feng et al. 2021), from the network's own current
    predictions: among the locations inside a box, the `ALIGNED_TOP_K` whose class score for
    the box's type and predicted box's IoU with it are jointly highest (score^alpha x IoU^beta)
    learn it; the box its prediction overlaps most when several qualify. Each positive's
    alignment, scaled so that the box's best-aligned location gets the highest IoU among the
    box's locations, becomes its soft class target and box-loss weight: the locations that
    already classify and localise a box well are the ones trained to rank first. A box holding no location centre (a thin one)
    takes the `THIN_BOX_LOCATIONS` nearest its centre as candidates."""
    if boxes.numel() == 0:
        background = _background(where)
        return Targets(background.labels, background.distances, torch.zeros(len(where.points)))
    points = where.points
    distances, inside, centres = _box_geometry(points, boxes)
    candidate = inside.clone()
    for box in torch.nonzero(~candidate.any(dim=0)).flatten().tolist():
        candidate[(points - centres[box]).norm(dim=1).argsort()[:THIN_BOX_LOCATIONS], box] = True
    overlap = torch.from_numpy(box_iou(predicted_boxes.numpy(), boxes.numpy())).float()  # (P, M)
    metric = class_probabilities[:, labels].float() ** ALIGNED_ALPHA * overlap**ALIGNED_BETA * candidate
    top = metric.topk(min(ALIGNED_TOP_K, len(points)), dim=0).indices  # (K, M)
    chosen_for_box = torch.zeros_like(candidate)
    chosen_for_box[top, torch.arange(len(boxes))] = True
    chosen_for_box &= candidate & (metric > 0)
    best, chosen = torch.where(chosen_for_box, overlap, torch.full_like(overlap, -1.0)).max(dim=1)
    positive = best >= 0
    targets = _targets(points, distances, centres, inside, positive, chosen, labels)
    # Normalised per box: alignment / the box's best alignment x the box's best IoU.
    kept = torch.nonzero(targets.labels >= 0).flatten()
    owner = chosen[kept]
    kept_metric, kept_overlap = metric[kept, owner], overlap[kept, owner]
    best_metric = torch.zeros(len(boxes)).scatter_reduce(0, owner, kept_metric, "amax")
    best_overlap = torch.zeros(len(boxes)).scatter_reduce(0, owner, kept_overlap, "amax")
    alignment = torch.zeros(len(points))
    alignment[kept] = kept_metric / best_metric[owner].clamp_min(1e-9) * best_overlap[owner]
    return Targets(targets.labels, targets.distances, alignment)


def _background(where: Locations) -> Targets:
    count = where.points.shape[0]
    return Targets(torch.full((count,), -1, dtype=torch.long), torch.zeros(count, 4))


def _box_geometry(points: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distances (left, top, right, bottom) from every point to every box (P, M, 4), whether
    each point lies inside each box (P, M), and the boxes' centres (M, 2)."""
    distances = torch.stack(
        [
            points[:, None, 0] - boxes[None, :, 0],
            points[:, None, 1] - boxes[None, :, 1],
            boxes[None, :, 2] - points[:, None, 0],
            boxes[None, :, 3] - points[:, None, 1],
        ],
        dim=2,
    )
    return distances, distances.min(dim=2).values > 0, (boxes[:, :2] + boxes[:, 2:]) / 2


def _targets(
    points: torch.Tensor,
    distances: torch.Tensor,
    centres: torch.Tensor,
    inside: torch.Tensor,
    positive: torch.Tensor,
    chosen: torch.Tensor,
    labels: torch.Tensor,
) -> Targets:
    """Targets from each location's chosen box, after giving boxes left without a location some."""
    _cover_thin_boxes(points, centres, inside, positive, chosen)
    target_labels = torch.where(positive, labels[chosen], torch.full_like(chosen, -1))
    target_distances = distances[torch.arange(len(points)), chosen] * positive[:, None]
    return Targets(target_labels, target_distances)


def _cover_thin_boxes(
    points: torch.Tensor, centres: torch.Tensor, inside: torch.Tensor, positive: torch.Tensor, chosen: torch.Tensor
) -> None:
    """Give every box that won no location the free locations inside it nearest its centre,
    on any level (in place). Without this a long thin box (a scratch 10 px wide) holds no cell
    centre of the coarse level its length asks for and is never learnt: a fifth of NEU-DET's
    scratches at 224 px."""
    won = torch.zeros(inside.shape[1], dtype=torch.bool)
    won[chosen[positive]] = True
    for box in torch.nonzero(~won).flatten().tolist():
        free = torch.nonzero(inside[:, box] & ~positive).flatten()
        if free.numel() == 0:
            continue
        nearest = free[(points[free] - centres[box]).norm(dim=1).argsort()[:THIN_BOX_LOCATIONS]]
        positive[nearest] = True
        chosen[nearest] = box


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of (x1, y1, x2, y2) boxes."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    intersection = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.where(union > 0, intersection / np.where(union > 0, union, 1), 0.0)


def non_maximum_suppression(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float, max_kept: int
) -> np.ndarray:
    """Indices of the boxes kept, best first: a box is dropped when a better-scored box of the
    same class overlaps it by more than `iou_threshold` (OpenCV's batched NMS)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    boxes = np.asarray(boxes, np.float64)
    rects = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).tolist()
    kept = cv2.dnn.NMSBoxesBatched(
        rects, np.asarray(scores, np.float32).tolist(), np.asarray(classes, np.int32).tolist(), 0.0, float(iou_threshold)
    )
    kept = np.asarray(kept, dtype=np.int64).reshape(-1)
    kept = kept[np.argsort(-np.asarray(scores)[kept], kind="stable")]
    return kept[:max_kept]


def vote_boxes(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, kept: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """The kept boxes, each moved to the mean of the candidates of its class that overlap it by
    more than `iou_threshold` (itself included), weighted by score x IoU (box voting)."""
    boxes = np.asarray(boxes, np.float64)
    iou = box_iou(boxes[kept], boxes)
    voters = (iou > iou_threshold) & (classes[kept][:, None] == classes[None, :])
    voters[np.arange(len(kept)), kept] = True
    weights = np.where(voters, iou * np.asarray(scores, np.float64)[None, :], 0.0)
    return weights @ boxes / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
