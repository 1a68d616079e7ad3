"""Training augmentation for the mask finder and the reviewer: geometry (flips, quarter turns,
scale and shift) applied to image and mask alike, photometry (brightness, contrast, colour)
to the image only; for the reviewer also openings through the product and shuffled colours.
Works on (S, S) uint8 BGR images and bool masks already at input size."""

import cv2
import numpy as np


def augment(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = image.shape[0]
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if rng.random() < 0.5:
        image, mask = image[::-1], mask[::-1]
    turns = int(rng.integers(4))
    image, mask = np.rot90(image, turns), np.rot90(mask, turns)
    # Scale 0.8-1.2 and shift up to 10% (reflected borders keep the background plausible).
    scale = float(rng.uniform(0.8, 1.2))
    shift = rng.uniform(-0.1, 0.1, 2) * size
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), float(rng.uniform(-15, 15)), scale)
    matrix[:, 2] += shift
    image = cv2.warpAffine(np.ascontiguousarray(image), matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    mask = cv2.warpAffine(np.ascontiguousarray(mask).astype(np.uint8), matrix, (size, size), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_REFLECT) > 0
    if rng.random() < 0.5 and mask.any():
        image = paint_markings(image, mask, rng)
    # Photometry: contrast, brightness and a per-channel gain.
    gain = rng.uniform(0.75, 1.25) * rng.uniform(0.9, 1.1, 3)
    offset = rng.uniform(-25, 25)
    image = np.clip(image.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)
    return image, mask


def paint_markings(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random coloured blobs and strokes on the product only (the mask stays the same): the
    line shows products with defects, and their mask must still cover the defect."""
    ys, xs = np.nonzero(mask)
    marked = np.ascontiguousarray(image).copy()
    layer = np.zeros(mask.shape, np.uint8)
    size = image.shape[0]
    for _ in range(int(rng.integers(1, 4))):
        pick = int(rng.integers(len(xs)))
        centre = (int(xs[pick]), int(ys[pick]))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            axes = tuple(int(a) for a in rng.integers(2, max(3, size // 8), 2))
            cv2.ellipse(layer, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        else:
            end = (centre[0] + int(rng.integers(-size // 4, size // 4)), centre[1] + int(rng.integers(-size // 4, size // 4)))
            cv2.line(layer, centre, end, 255, int(rng.integers(1, max(2, size // 40))))
        paint = (layer > 0) & mask
        # Opaque paint or a translucent stain over the product's own texture.
        alpha = float(rng.uniform(0.35, 1.0))
        marked[paint] = (alpha * np.array(colour, np.float32) + (1 - alpha) * marked[paint]).astype(np.uint8)
        layer[:] = 0
    return marked


def punch_opening(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, attempts: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """An opening through the product: an ellipse well inside it shows the background
    behind (background pixels copied from elsewhere in the frame) and leaves the mask.
    Lines whose products are solid then still teach a model what a washer's or a bracket's
    hole looks like, and that a mask spanning it is wrong. Unchanged when the product is
    too small or no background patch of the size is found."""
    size = image.shape[0]
    inner = cv2.erode(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))) > 0
    ys, xs = np.nonzero(inner)
    if len(xs) < 64:
        return image, mask
    radius = max(3.0, np.sqrt(inner.sum() / np.pi))
    pick = int(rng.integers(len(xs)))
    axes = tuple(max(2, int(radius * a)) for a in rng.uniform(0.2, 0.55, 2))
    opening = np.zeros(mask.shape, np.uint8)
    cv2.ellipse(opening, (int(xs[pick]), int(ys[pick])), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    opening = opening.astype(bool) & inner  # never empty: its centre is an inner pixel
    oy, ox = np.nonzero(opening)
    for _ in range(attempts):
        dy, dx = (int(v) for v in rng.integers(-size, size, 2))
        sy, sx = oy + dy, ox + dx
        if sy.min() < 0 or sx.min() < 0 or sy.max() >= size or sx.max() >= size or mask[sy, sx].any():
            continue
        opened = np.ascontiguousarray(image).copy()
        opened[oy, ox] = image[sy, sx]
        return opened, mask & ~opening
    return image, mask


def shuffle_colours(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The colour channels in a random order, or grey (1 in 8): whether a mask follows a
    product's outline does not depend on the product's colour."""
    if rng.random() < 0.125:
        grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2GRAY)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., rng.permutation(3)])
