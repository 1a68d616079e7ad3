"""The mask finder: a network trained for a few steps on generated frames beats a constant
mask, packages round-trip with identical masks, `whole_frame` needs no model, and the CLI
trains and evaluates across several manifests with a per-image-type table."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lineinspect.shared.datasets.manifest import ManifestRow, read_manifest
from lineinspect.shared.datasets.split import SplitPlan, split_rows
from lineinspect.shared.datasets.synth import generate_sample, synthesize_dataset
from lineinspect.shared.datasets.synth.dataset import sample_rng
from lineinspect.shared.models.mask.augment import augment, punch_opening, shuffle_colours
from lineinspect.shared.models.mask.config import MaskConfig
from lineinspect.shared.models.mask.evaluation import mask_iou
from lineinspect.shared.models.mask.inference import WholeFrame, load_mask_finder
from lineinspect.shared.models.mask.torch_model import MaskNet, iou, lovasz_hinge
from lineinspect.shared.models.mask.training import train_mask

pytestmark = pytest.mark.slow
CONFIG = MaskConfig(input_size=96, batch_size=8, epochs=3, patience=3)


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> list[ManifestRow]:
    manifest = synthesize_dataset(tmp_path_factory.mktemp("synth"), ["disc", "plate"], count=24, seed=4, size=96,
                                  anomaly_fraction=0.0, clutter=True)
    return split_rows(read_manifest(manifest), SplitPlan(0.75), seed=0)


@pytest.fixture(scope="module")
def package_dir(rows: list[ManifestRow], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("packages") / "mask"
    train_mask(rows, out, CONFIG, progress=False, max_steps=24)
    return out


def test_a_briefly_trained_mask_finder_beats_a_constant_mask(package_dir: Path) -> None:
    finder = load_mask_finder(package_dir)
    samples = [generate_sample(t, sample_rng(50, t, i), 96, None, clutter=True) for t in ("disc", "plate") for i in range(6)]
    predictions = finder.predict([s.image for s in samples])
    learned = np.mean([mask_iou(p.mask, s.product_mask) for p, s in zip(predictions, samples)])
    # The best constant mask is all-product (IoU = product share); all-background scores 0.
    constant = np.mean([s.product_mask.mean() for s in samples])
    assert learned > constant + 0.2, (learned, constant)
    assert all(p.mask.shape == s.image.shape[:2] and 0 <= p.confidence <= 1 for p, s in zip(predictions, samples))


def test_package_round_trip_gives_identical_masks(package_dir: Path) -> None:
    sample = generate_sample("disc", sample_rng(51, "disc", 0), 96, None, clutter=True)
    first, second = load_mask_finder(package_dir), load_mask_finder(package_dir)
    assert np.array_equal(first.predict([sample.image])[0].mask, second.predict([sample.image])[0].mask)
    assert first.version == second.version


@pytest.mark.parametrize(
    ("decoder_channels", "upsampling", "size"),
    [((64, 48, 32), "subpixel", 96), ((96, 64, 48, 32), "bilinear", 96), ((64, 48, 32), "subpixel", 100), ((64,), "subpixel", 64)],
)
def test_the_head_returns_logits_at_input_size_from_any_decoder_depth(
    decoder_channels: tuple[int, ...], upsampling: str, size: int
) -> None:
    network = MaskNet(decoder_channels, upsampling, pretrained=False).eval()
    with torch.inference_mode():
        assert network(torch.zeros(2, 3, size, size)).shape == (2, 1, size, size)


def test_a_package_saved_before_the_subpixel_head_still_loads(rows: list[ManifestRow], tmp_path: Path) -> None:
    """Older packages were a four-stage decoder with a bilinear head and did not record
    `upsampling`; they load as what they were."""
    config = CONFIG.model_copy(update={"decoder_channels": (96, 64, 48, 32), "upsampling": "bilinear"})
    train_mask(rows, tmp_path / "old", config, progress=False, max_steps=2)
    manifest_path = tmp_path / "old" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["config"]["upsampling"]
    manifest_path.write_text(json.dumps(manifest))
    finder = load_mask_finder(tmp_path / "old")
    assert finder.config.upsampling == "bilinear" and finder.config.decoder_channels == (96, 64, 48, 32)
    assert finder.predict([np.zeros((96, 96, 3), np.uint8)])[0].mask.shape == (96, 96)


def test_whole_frame_mode_needs_no_model() -> None:
    finder = load_mask_finder("whole_frame")
    assert isinstance(finder, WholeFrame)
    prediction = finder.predict([np.zeros((30, 40, 3), np.uint8)])[0]
    assert prediction.mask.all() and prediction.mask.shape == (30, 40)
    assert prediction.mode == "whole_frame" and prediction.confidence == 1.0 and prediction.area_fraction == 1.0


def test_augmentation_moves_image_and_mask_together() -> None:
    rng = np.random.default_rng(0)
    image = np.zeros((64, 64, 3), np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[10:30, 20:50] = True
    image[mask] = 200
    for _ in range(10):
        moved_image, moved_mask = augment(image, mask, rng)
        bright = moved_image.max(axis=2) > 100
        # Markings may darken product pixels, but nothing bright lies outside the mask.
        assert not (bright & ~moved_mask).sum() > 0.02 * moved_mask.size


def test_an_opening_shows_background_through_the_product_and_leaves_the_mask() -> None:
    rng = np.random.default_rng(5)
    image = np.zeros((96, 96, 3), np.uint8)
    image[..., 0] = np.arange(96, dtype=np.uint8)[None, :]  # background: a ramp, so copies are traceable
    grid_y, grid_x = np.indices((96, 96))
    mask = (grid_x - 40) ** 2 + (grid_y - 40) ** 2 <= 26**2
    image[mask] = (10, 200, 30)
    opened_image, opened_mask = punch_opening(image, mask, rng)
    opening = mask & ~opened_mask
    assert opening.sum() > 20 and not (opened_mask & ~mask).any()
    # The opening lies inside the product (a rim remains) and shows background pixels.
    assert not opening[~(cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)].any()
    assert (opened_image[opening][:, 1] == 0).all()
    assert np.array_equal(opened_image[~opening], image[~opening])
    # A product too small to have an opening is left as it is.
    tiny = np.zeros((96, 96), bool)
    tiny[5:9, 5:9] = True
    same_image, same_mask = punch_opening(image, tiny, rng)
    assert same_image is image and same_mask is tiny


def test_colour_shuffle_keeps_the_picture_and_changes_only_colours() -> None:
    rng = np.random.default_rng(6)
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    seen = set()
    for _ in range(60):
        shuffled = shuffle_colours(image, rng)
        assert shuffled.shape == image.shape
        if (shuffled[..., 0] == shuffled[..., 1]).all() and (shuffled[..., 1] == shuffled[..., 2]).all():
            seen.add("grey")
            continue
        order = tuple(next(c for c in range(3) if np.array_equal(shuffled[..., k], image[..., c])) for k in range(3))
        seen.add(order)
    assert "grey" in seen and len(seen) >= 4


def test_iou_of_bool_masks() -> None:
    a = torch.zeros(2, 4, 4, dtype=torch.bool)
    b = torch.zeros(2, 4, 4, dtype=torch.bool)
    a[0, :2] = True
    b[0, :1] = True
    assert iou(a, b).tolist() == [0.5, 1.0]


def test_lovasz_hinge_is_zero_for_confident_right_masks_and_grows_with_wrong_pixels() -> None:
    target = torch.zeros(1, 1, 16, 16)
    target[..., 4:12, 4:12] = 1.0
    right = (target * 2 - 1) * 3.0
    assert float(lovasz_hinge(right, target)) == 0.0
    assert float(lovasz_hinge(torch.zeros_like(target), target)) == pytest.approx(1.0)
    losses = []
    for wrong_rows in (1, 2, 4):
        logits = right.clone()
        logits[..., 4 : 4 + wrong_rows, 4:12] = -3.0  # product pixels called background
        losses.append(float(lovasz_hinge(logits, target)))
    assert 0.0 < losses[0] < losses[1] < losses[2]


def test_train_and_evaluate_masks_from_the_command_line(cli, rows: list[ManifestRow], tmp_path: Path) -> None:
    from lineinspect.shared.datasets.manifest import write_manifest

    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_manifest(first, [r for r in rows if r.image_type == "disc"])
    write_manifest(second, [r for r in rows if r.image_type == "plate"])
    code, out, err = cli("train", "mask", "--manifest", first, "--manifest", second, "--out", tmp_path / "pkg",
                         "--set", "input_size=96", "--set", "epochs=1", "--no-progress")
    assert code == 0, err
    assert "validation IoU" in out
    code, out, err = cli("evaluate", "mask", "--package", tmp_path / "pkg", "--manifest", first, "--manifest", second,
                         "--json", tmp_path / "e.json", "--html", tmp_path / "r.html", "--no-progress")
    assert code == 0, err
    figures = json.loads((tmp_path / "e.json").read_text())
    assert set(figures["per_image_type"]) == {"disc", "plate"}
    for row in figures["per_image_type"].values():
        assert {"iou_mean", "iou_min", "n"} <= set(row)
    assert figures["images_per_second"] > 0 and 0 <= figures["iou_mean"] <= 1
    assert (tmp_path / "r.html").read_text().count('class="card"') == figures["n_images"]


@pytest.mark.parametrize("total_steps", [1, 2, 3, 4, 10, 11, 40])
def test_the_learning_rate_schedule_runs_any_number_of_steps(total_steps: int) -> None:
    from lineinspect.shared.models.schedule import one_cycle

    optimiser = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = one_cycle(optimiser, [0.1], total_steps)
    for _ in range(total_steps):
        optimiser.step()
        scheduler.step()
    assert optimiser.param_groups[0]["lr"] <= 0.1
