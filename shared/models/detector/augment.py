"""Training augmentation for the detector: flips and a zoom-in crop applied to image and boxes
alike (no rotation, so boxes stay tight; no zoom-out, whose reflected borders would show
copies of defects without boxes), brightness and contrast to the image only. Works
on (S, S) uint8 BGR images and (M, 4) float boxes already at input size."""

import cv2
import numpy as np

# A box that keeps less than this share of its area inside the frame after a shift is dropped.
MIN_VISIBLE_SHARE = 0.4
MIN_SIDE_PX = 2.0


def augment(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    size = image.shape[0]
    boxes = boxes.astype(np.float32).copy()
    if rng.random() < 0.5:
        image = image[:, ::-1]
        boxes[:, [0, 2]] = size - boxes[:, [2, 0]]
    if rng.random() < 0.5:
        image = image[::-1]
        boxes[:, [1, 3]] = size - boxes[:, [3, 1]]
    if rng.random() < 0.7:
        scale = float(rng.uniform(1.0, 1.4))
        # Shift so that the zoomed frame still covers the whole output.
        offset_xy = rng.uniform((1 - scale) * size, 0, 2)
        matrix = np.array([[scale, 0, offset_xy[0]], [0, scale, offset_xy[1]]], np.float32)
        image = cv2.warpAffine(np.ascontiguousarray(image), matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        moved = boxes * scale + np.tile(matrix[:, 2], 2)
        clipped = np.clip(moved, 0, size)
        area = np.prod(moved[:, 2:] - moved[:, :2], axis=1)
        visible = np.prod(np.clip(clipped[:, 2:] - clipped[:, :2], 0, None), axis=1)
        keep = (visible >= MIN_VISIBLE_SHARE * np.maximum(area, 1e-6)) & ((clipped[:, 2:] - clipped[:, :2]).min(axis=1) >= MIN_SIDE_PX)
        boxes, labels = clipped[keep], labels[keep]
    gain = rng.uniform(0.75, 1.25)
    offset = rng.uniform(-25, 25)
    image = np.clip(np.ascontiguousarray(image).astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)
    return image, boxes, labels
