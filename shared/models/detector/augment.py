"""Training augmentation for the detector: flips, optionally a mirror about the diagonal (with
the flips, quarter turns) and a zoom-in crop applied to image and boxes alike (no other
rotation, so boxes stay tight; no zoom-out, whose reflected borders would show
copies of defects without boxes), brightness and contrast to the image only, and a mosaic
of four images. Works on (S, S) uint8 BGR images and (M, 4) float boxes already at input size."""

from collections.abc import Sequence

import cv2
import numpy as np

from lineinspect.shared.models.backbone import resize_to

# A box that keeps less than this share of its area inside the frame after a shift is dropped.
MIN_VISIBLE_SHARE = 0.4
# In a mosaic piece the rest of a box is cut off, not shifted out of sight: a box keeps its
# visible part down to this share (YOLOv5's rule), since its defect is still there to see.
MOSAIC_MIN_VISIBLE_SHARE = 0.1
# ... or less, when what is left of it fills this share of the piece (a crazed sheet cut small).
MOSAIC_FILLS_PIECE_SHARE = 0.5
MIN_SIDE_PX = 2.0

Sample = tuple[np.ndarray, np.ndarray, np.ndarray]  # image, boxes, labels


def boxes_within(
    boxes: np.ndarray, labels: np.ndarray, width: float, height: float, min_share: float, fills_share: float = np.inf
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to the frame (0, 0, width, height), keeping those with at least
    `min_share` of their area inside it, or whose inside part covers `fills_share` of the
    frame, and `MIN_SIDE_PX` on each side."""
    clipped = np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    visible = np.prod(np.clip(clipped[:, 2:] - clipped[:, :2], 0, None), axis=1)
    seen = (visible >= min_share * np.maximum(area, 1e-6)) | (visible >= fills_share * width * height)
    keep = seen & ((clipped[:, 2:] - clipped[:, :2]).min(axis=1) >= MIN_SIDE_PX)
    return clipped[keep], labels[keep]


def mosaic(samples: Sequence[Sample], rng: np.random.Generator) -> Sample:
    """Four images in one frame (YOLOv4's mosaic): the frame is cut at a random point into four
    rectangles, each filled with a random crop of one image at its own scale, boxes cut to
    the crop. Defects are seen in new surroundings and at the frame's edges."""
    if len(samples) != 4:
        raise ValueError(f"a mosaic is made of 4 images, got {len(samples)}")
    size = samples[0][0].shape[0]
    split_x, split_y = (int(v) for v in np.round(rng.uniform(0.25, 0.75, 2) * size))
    regions = [(0, 0, split_x, split_y), (split_x, 0, size, split_y), (0, split_y, split_x, size), (split_x, split_y, size, size)]
    frame = np.empty_like(samples[0][0])
    boxes_out, labels_out = [], []
    for (image, boxes, labels), (x1, y1, x2, y2) in zip(samples, regions):
        width, height = x2 - x1, y2 - y1
        left, top = int(rng.integers(0, size - width + 1)), int(rng.integers(0, size - height + 1))
        frame[y1:y2, x1:x2] = image[top : top + height, left : left + width]
        kept, kept_labels = boxes_within(boxes - np.array([left, top, left, top], np.float32), labels, width, height, MOSAIC_MIN_VISIBLE_SHARE, MOSAIC_FILLS_PIECE_SHARE)
        boxes_out.append(kept + np.array([x1, y1, x1, y1], np.float32))
        labels_out.append(kept_labels)
    return frame, np.concatenate(boxes_out).reshape(-1, 4), np.concatenate(labels_out)


def augment(
    image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
    transpose: float = 0.0, left_right: float = 0.5, up_down: float = 0.5,
) -> Sample:
    """A random variant of one training frame: flipped left-right and upside down in those
    shares; with `transpose` > 0, that share of frames is also mirrored about its diagonal
    (with both flips, every quarter turn: boxes stay tight)."""
    size = image.shape[0]
    boxes = boxes.astype(np.float32).copy()
    # Off draws nothing, so seeded trainings without it see the same frames as before it existed.
    if transpose > 0 and rng.random() < transpose:
        image = image.transpose(1, 0, *range(2, image.ndim))
        boxes = boxes[:, [1, 0, 3, 2]]
    if rng.random() < left_right:
        image = image[:, ::-1]
        boxes[:, [0, 2]] = size - boxes[:, [2, 0]]
    if rng.random() < up_down:
        image = image[::-1]
        boxes[:, [1, 3]] = size - boxes[:, [3, 1]]
    if rng.random() < 0.7:
        scale = float(rng.uniform(1.0, 1.4))
        # Shift so that the zoomed frame still covers the whole output.
        offset_xy = rng.uniform((1 - scale) * size, 0, 2)
        matrix = np.array([[scale, 0, offset_xy[0]], [0, scale, offset_xy[1]]], np.float32)
        image = cv2.warpAffine(np.ascontiguousarray(image), matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        boxes, labels = boxes_within(boxes * scale + np.tile(matrix[:, 2], 2), labels, size, size, MIN_VISIBLE_SHARE)
    gain = rng.uniform(0.75, 1.25)
    offset = rng.uniform(-25, 25)
    image = np.clip(np.ascontiguousarray(image).astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)
    return image, boxes, labels


def resized(sample: Sample, size: int) -> Sample:
    """The sample scaled to a (size, size) frame, boxes with it (multi-scale training)."""
    image, boxes, labels = sample
    if image.shape[0] == size:
        return sample
    return resize_to(image, size, size), boxes * np.float32(size / image.shape[0]), labels
