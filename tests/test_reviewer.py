"""The reviewer: perturbations spoil masks the way their names say and are graded by their
true IoU; a briefly trained reviewer ranks spoiled masks as less trustworthy than true ones;
packages round-trip; the CLI trains and evaluates on perturbed and real masks."""

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from lineinspect.shared.datasets.manifest import ManifestRow, read_manifest
from lineinspect.shared.datasets.split import SplitPlan, split_rows
from lineinspect.shared.datasets.synth import generate_sample, synthesize_dataset
from lineinspect.shared.datasets.synth.dataset import sample_rng
from lineinspect.shared.models.mask.evaluation import mask_iou
from lineinspect.shared.models.reviewer.config import ReviewerConfig
from lineinspect.shared.models.reviewer.figures import review_figures
from lineinspect.shared.models.reviewer.inference import Reviewer
from lineinspect.shared.models.reviewer.perturb import (
    GRADES,
    PERTURBATIONS,
    GradeThresholds,
    perturb,
    perturb_for_grade,
)
from lineinspect.shared.models.reviewer.training import train_reviewer


def disc_mask(size: int = 128, radius: int = 36, centre: tuple[int, int] = (64, 60)) -> np.ndarray:
    grid_y, grid_x = np.indices((size, size))
    return (grid_x - centre[0]) ** 2 + (grid_y - centre[1]) ** 2 <= radius**2


def bracket_mask(size: int = 128) -> np.ndarray:
    """An L with a thin spur: concave corners to bridge and narrow parts to lose."""
    mask = np.zeros((size, size), bool)
    mask[20:100, 20:50] = True
    mask[70:100, 20:110] = True
    mask[30:34, 50:90] = True
    return mask


def test_grades_follow_the_iou_thresholds() -> None:
    thresholds = GradeThresholds(perfect=0.95, usable=0.8)
    assert [thresholds.grade(v) for v in (1.0, 0.95, 0.949, 0.8, 0.799, 0.0)] == [1, 1, 2, 2, 3, 3]
    with pytest.raises(ValueError, match="usable < perfect"):
        GradeThresholds(perfect=0.8, usable=0.9)
    with pytest.raises(ValueError, match="usable_iou"):
        ReviewerConfig(perfect_iou=0.8, usable_iou=0.9)


@pytest.mark.parametrize("strength", [0.1, 0.5, 1.0])
def test_each_perturbation_spoils_the_mask_as_named(strength: float) -> None:
    truth = bracket_mask()
    rng = np.random.default_rng(1)
    spoiled = {name: spoil(truth, strength, rng) for name, spoil in PERTURBATIONS.items()}
    for name in ("erode", "holes", "cut", "thin_parts_lost"):
        assert not (spoiled[name] & ~truth).any(), f"{name} must only remove product"
        assert spoiled[name].sum() < truth.sum(), name
    for name in ("dilate", "blobs", "bridge"):
        assert not (truth & ~spoiled[name]).any(), f"{name} must only add product"
        assert spoiled[name].sum() > truth.sum(), name
    # A shift moves the product (part of it may leave the frame) without growing it.
    assert spoiled["shift"].sum() <= truth.sum() + 0.02 * truth.sum()
    assert mask_iou(spoiled["shift"], truth) < 1.0
    assert mask_iou(spoiled["wobble"], truth) < 1.0
    assert not spoiled["empty"].any() and spoiled["full"].all()


def test_filling_openings_covers_a_washers_hole_and_leaves_a_solid_product_alone() -> None:
    washer = disc_mask() & ~disc_mask(radius=15)
    filled = PERTURBATIONS["fill_openings"](washer, 0.5, np.random.default_rng(0))
    assert np.array_equal(filled, disc_mask())
    solid = bracket_mask()
    assert np.array_equal(PERTURBATIONS["fill_openings"](solid, 0.5, np.random.default_rng(0)), solid)


def test_stronger_perturbations_move_further_from_the_truth() -> None:
    truth = bracket_mask()
    for name in ("erode", "dilate", "shift", "cut", "wobble", "bridge"):
        ious = [mask_iou(PERTURBATIONS[name](truth, s, np.random.default_rng(3)), truth) for s in (0.05, 0.3, 0.9)]
        assert ious[0] > ious[1] > ious[2], (name, ious)


def test_perturbed_masks_are_graded_by_their_true_iou() -> None:
    thresholds = GradeThresholds()
    truth = disc_mask()
    others = [disc_mask(centre=(40, 40), radius=20), disc_mask(centre=(90, 80), radius=30)]
    rng = np.random.default_rng(2)
    found = {grade: 0 for grade in GRADES}
    for k in range(60):
        wanted = GRADES[k % 3]
        drawn = perturb_for_grade(truth, wanted, thresholds, rng, others)
        assert drawn.iou == pytest.approx(mask_iou(drawn.mask, truth))
        assert drawn.grade == thresholds.grade(drawn.iou)
        found[drawn.grade] += drawn.grade == wanted
    # The sampler reaches every grade on an ordinary product mask.
    assert all(count >= 18 for count in found.values()), found


def test_perturb_uses_every_kind_including_swap() -> None:
    truth, other = disc_mask(), disc_mask(centre=(30, 30), radius=15)
    rng = np.random.default_rng(4)
    kinds = {perturb(truth, rng, [other])[1][0] for _ in range(400)}
    assert kinds == {"identity", "swap", *PERTURBATIONS}


def test_review_figures_count_the_confusion_and_need_both_sides_for_an_auc() -> None:
    figures = review_figures([1, 2, 3, 3], [1, 3, 3, 2], [0.1, 0.6, 0.9, 0.4])
    assert figures["confusion"] == [[1, 0, 0], [0, 0, 1], [0, 1, 1]]
    assert figures["auc_untrustworthy"] == pytest.approx(0.75)
    assert figures["untrustworthy_recall"] == 0.5
    assert review_figures([1, 1], [1, 1], [0.1, 0.2])["auc_untrustworthy"] is None


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> list[ManifestRow]:
    manifest = synthesize_dataset(tmp_path_factory.mktemp("synth"), ["disc", "plate"], count=16, seed=6, size=96,
                                  anomaly_fraction=0.0, clutter=True)
    return split_rows(read_manifest(manifest), SplitPlan(0.75), seed=0)


@pytest.fixture(scope="module")
def package_dir(rows: list[ManifestRow], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("packages") / "reviewer"
    config = ReviewerConfig(input_size=64, trunk_blocks=6, samples_per_epoch=384, epochs=5, learning_rate=3e-3, batch_size=16,
                            validation_perturbations=3)
    train_reviewer(rows, out, config, progress=False)
    return out


@pytest.mark.slow
def test_a_briefly_trained_reviewer_distrusts_spoiled_masks_more_than_true_ones(package_dir: Path) -> None:
    reviewer = Reviewer.from_package(package_dir)
    samples = [generate_sample(t, sample_rng(60, t, i), 96, None, clutter=True) for t in ("disc", "plate") for i in range(6)]
    images = [s.image for s in samples]
    truths = [s.product_mask for s in samples]
    true_reviews = reviewer.review(images, truths)
    spoiled_reviews = reviewer.review(images, [np.zeros_like(m) for m in truths]) + reviewer.review(
        images, [np.roll(m, 30, axis=1) for m in truths]
    )
    scores = [r.untrustworthy for r in true_reviews + spoiled_reviews]
    spoiled = [False] * len(true_reviews) + [True] * len(spoiled_reviews)
    # Chance is 0.5; a few hundred steps already rank most spoiled masks above the true ones.
    assert roc_auc_score(spoiled, scores) > 0.8
    for review in true_reviews:
        assert sum(review.probabilities) == pytest.approx(1.0, abs=1e-5)
        assert review.grade in GRADES and 0 <= review.estimated_iou <= 1


@pytest.mark.slow
def test_package_round_trip_gives_identical_reviews(package_dir: Path) -> None:
    sample = generate_sample("disc", sample_rng(61, "disc", 0), 96, None, clutter=True)
    first, second = Reviewer.from_package(package_dir), Reviewer.from_package(package_dir)
    assert first.review([sample.image], [sample.product_mask]) == second.review([sample.image], [sample.product_mask])
    assert first.thresholds == GradeThresholds(0.95, 0.8)
    with pytest.raises(ValueError, match="does not match its frame"):
        first.review([sample.image], [sample.product_mask[:50]])


@pytest.mark.slow
def test_train_and_evaluate_reviewer_from_the_command_line(cli, rows: list[ManifestRow], tmp_path: Path) -> None:
    from lineinspect.shared.datasets.manifest import write_manifest

    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, rows)
    code, out, err = cli("train", "reviewer", "--manifest", manifest, "--out", tmp_path / "pkg", "--set", "input_size=64",
                         "--set", "epochs=1", "--set", "samples_per_epoch=64", "--set", "usable_iou=0.75", "--no-progress")
    assert code == 0, err
    assert "auc_untrustworthy" in out
    package_manifest = json.loads((tmp_path / "pkg" / "manifest.json").read_text())
    assert package_manifest["thresholds"]["usable_iou"] == 0.75
    code, out, err = cli("evaluate", "reviewer", "--package", tmp_path / "pkg", "--manifest", manifest,
                         "--mask-package", "whole_frame", "--perturbations", "3", "--json", tmp_path / "e.json", "--no-progress")
    assert code == 0, err
    figures = json.loads((tmp_path / "e.json").read_text())
    test_rows = [r for r in rows if r.split == "test"]
    assert figures["perturbed"]["n"] == 3 * len(test_rows)
    assert np.array(figures["confusion"]).sum() == 3 * len(test_rows)
    assert figures["auc_untrustworthy"] is None or 0 <= figures["auc_untrustworthy"] <= 1
    # A whole-frame "mask" of a product on a background is untrustworthy every time, so the
    # real-mask truth holds one side only and its AUROC is reported as missing.
    assert figures["real"]["n_per_true_grade"]["3"] == len(test_rows)
    assert figures["auc_untrustworthy_real"] is None
    assert np.array(figures["confusion_real"]).sum() == len(test_rows)
