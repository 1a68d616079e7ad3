"""(frame, product mask) pairs for the models that learn from product masks (mask finder,
reviewer): which rows train and which validate, and loading them at input size."""

from collections.abc import Sequence

import numpy as np

from lineinspect.shared.datasets.manifest import ManifestRow
from lineinspect.shared.errors import DatasetError
from lineinspect.shared.images import read_image, read_mask
from lineinspect.shared.models.backbone import resize_mask, resize_to


def load_pairs(rows: Sequence[ManifestRow], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, S, S, 3) uint8 and product masks (N, S, S) bool at input size."""
    images, masks = [], []
    for row in rows:
        image = read_image(row.path)
        mask = read_mask(row.product_mask)
        if mask.shape[:2] != image.shape[:2]:
            raise DatasetError(f"{row.product_mask}: product mask size differs from its image {row.path}")
        images.append(resize_to(image, size, size))
        masks.append(resize_mask(mask, size, size))
    return np.stack(images), np.stack(masks)


def split_for_training(
    rows: Sequence[ManifestRow], validation_fraction: float, seed: int
) -> tuple[list[ManifestRow], list[ManifestRow]]:
    """Rows with a product mask of split 'train', and of split 'validation' or, when there is
    none, a seeded share of train held out."""
    with_masks = [row for row in rows if row.product_mask]
    train = [row for row in with_masks if row.split == "train"]
    validation = [row for row in with_masks if row.split == "validation"]
    if len(train) < 2:
        raise DatasetError(
            f"{len(train)} images with a product mask in split 'train'; need at least 2 "
            "(import a layout with product masks, e.g. `datasets import mvtec` with product_masks/, or `datasets synth`)"
        )
    if not validation:
        order = np.random.default_rng(seed).permutation(len(train))
        count = max(1, round(len(train) * validation_fraction))
        validation = [train[i] for i in sorted(order[:count])]
        train = [train[i] for i in sorted(order[count:])]
    return train, validation
