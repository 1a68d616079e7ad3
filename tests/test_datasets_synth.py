"""The synthetic generator: seeded and byte-for-byte reproducible, masks exact (the defect mask
is the changed pixels, inside the product; the product mask is where the product is drawn),
image types distinct, and `datasets synth` writing a usable manifest."""

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from lineinspect.shared.datasets.manifest import read_manifest
from lineinspect.shared.datasets.synth import (
    DEFECT_TYPES,
    generate_sample,
    image_type_names,
    synthesize_dataset,
)
from lineinspect.shared.errors import DatasetError
from lineinspect.shared.images import read_image, read_mask

TYPES = image_type_names(6)


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    def digests(folder: Path) -> dict[str, str]:
        return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*.png"))}

    for name in ("a", "b"):
        synthesize_dataset(tmp_path / name, 2, count=6, seed=11, size=96, clutter=True)
    synthesize_dataset(tmp_path / "c", 2, count=6, seed=12, size=96, clutter=True)
    first, second, other = digests(tmp_path / "a"), digests(tmp_path / "b"), digests(tmp_path / "c")
    assert first == second and len(first) > 12
    assert first != other
    relative = lambda folder: [  # noqa: E731
        (Path(r.path).relative_to(folder), r.label, r.defect_type) for r in read_manifest(folder / "manifest.jsonl")
    ]
    assert relative(tmp_path / "a") == relative(tmp_path / "b")


@pytest.mark.parametrize("defect_type", DEFECT_TYPES)
def test_defect_mask_is_exactly_the_changed_pixels_inside_the_product(defect_type: str) -> None:
    for index, image_type in enumerate(TYPES):
        seed = 100 * index + DEFECT_TYPES.index(defect_type)
        sample = generate_sample(image_type, np.random.default_rng(seed), 256, defect_type)
        clean = generate_sample(image_type, np.random.default_rng(seed), 256, None)
        changed = (sample.image != clean.image).any(axis=2)
        assert np.array_equal(changed, sample.defect_mask)
        assert not (sample.defect_mask & ~sample.product_mask).any()
        assert np.array_equal(sample.product_mask, clean.product_mask)
        assert sample.defect_mask.sum() >= 12, "a defect must be visible, not single-pixel noise"
        # Visible: the defect pixels differ clearly on average, not by a grey level or two.
        difference = np.abs(sample.image.astype(int) - clean.image.astype(int)).max(axis=2)
        assert difference[sample.defect_mask].mean() > 15
        assert sample.defect_type == defect_type and not clean.defect_mask.any()


@pytest.mark.parametrize("image_type", TYPES)
def test_product_mask_matches_the_drawn_product(image_type: str) -> None:
    """Pixels just inside the mask's edge look like the product and pixels just outside like
    the background: a mask off by one pixel fails this."""
    sample = generate_sample(image_type, np.random.default_rng(5), 256)
    mask = sample.product_mask.astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    inner_edge = mask.astype(bool) & ~cv2.erode(mask, kernel).astype(bool)
    outer_edge = cv2.dilate(mask, kernel).astype(bool) & ~mask.astype(bool)
    interior = cv2.erode(mask, np.ones((15, 15), np.uint8)).astype(bool)
    # Background a few pixels out, in the same shadow as the edge.
    five = np.ones((5, 5), np.uint8)
    near = cv2.dilate(mask, np.ones((9, 9), np.uint8)).astype(bool) & ~cv2.dilate(mask, five).astype(bool)
    image = sample.image.astype(float)
    product_colour, background_colour = image[interior].mean(axis=0), image[near].mean(axis=0)

    def looks_like_product(pixels: np.ndarray) -> np.ndarray:
        return np.linalg.norm(pixels - product_colour, axis=1) < np.linalg.norm(pixels - background_colour, axis=1)

    assert looks_like_product(image[inner_edge]).mean() > 0.9
    assert looks_like_product(image[outer_edge]).mean() < 0.1


def test_image_types_look_different() -> None:
    colours = []
    for image_type in TYPES:
        sample = generate_sample(image_type, np.random.default_rng(1), 128)
        colours.append(sample.image[sample.product_mask].astype(float).mean(axis=0))
    distances = [np.linalg.norm(a - b) for i, a in enumerate(colours) for b in colours[i + 1:]]
    assert min(distances) > 30


def test_products_vary_in_pose_between_samples() -> None:
    masks = [generate_sample("plate", np.random.default_rng(seed), 128).product_mask for seed in range(4)]
    assert all(not np.array_equal(masks[0], other) for other in masks[1:])


def test_clutter_stays_off_the_product() -> None:
    plain = generate_sample("disc", np.random.default_rng(9), 256, "spot", clutter=False)
    cluttered = generate_sample("disc", np.random.default_rng(9), 256, "spot", clutter=True)
    inside = plain.product_mask
    assert np.array_equal(plain.image[inside], cluttered.image[inside])
    assert np.array_equal(plain.defect_mask, cluttered.defect_mask)
    assert (plain.image[~inside] != cluttered.image[~inside]).any(axis=1).mean() > 0.02


def test_unknown_image_type_is_refused() -> None:
    with pytest.raises(DatasetError, match="teapot"):
        generate_sample("teapot", np.random.default_rng(0))
    assert image_type_names(8)[6:] == ["disc2", "plate2"]
    generate_sample("disc2", np.random.default_rng(0), 64)


def test_synth_command_writes_images_masks_and_manifest(tmp_path: Path, cli) -> None:
    out = tmp_path / "synth"
    code, stdout, _ = cli("datasets", "synth", "--image-types", "3", "--count", "10", "--out", out,
                          "--seed", "4", "--size", "128", "--clutter")
    assert code == 0 and str(out / "manifest.jsonl") in stdout
    rows = read_manifest(out / "manifest.jsonl")
    assert sorted({r.image_type for r in rows}) == ["bracket", "disc", "plate"]
    for image_type in ("bracket", "disc", "plate"):
        of_type = [r for r in rows if r.image_type == image_type]
        assert len(of_type) == 10 and sum(r.label == "anomaly" for r in of_type) == 3
    assert {r.split for r in rows} == {"unassigned"}
    anomaly = next(r for r in rows if r.label == "anomaly")
    image, product, defect = read_image(anomaly.path), read_mask(anomaly.product_mask), read_mask(anomaly.defect_mask)
    assert image.shape == (128, 128, 3) and defect.any() and not (defect & ~product).any()
    box = anomaly.boxes[0]
    ys, xs = np.nonzero(defect)
    assert (box.x1, box.y1, box.x2, box.y2) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert all(r.defect_mask is None and r.product_mask for r in rows if r.label == "normal")
