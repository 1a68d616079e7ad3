"""Evaluating a reviewer on labelled frames: on perturbed ground-truth masks (drawn at frame
resolution, a third aimed at each grade) and, given a mask finder, on that finder's real masks,
where the truth grade comes from the real IoU."""

import time
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from lineinspect.shared.datasets.manifest import ManifestRow
from lineinspect.shared.images import read_image, read_mask
from lineinspect.shared.models.mask.evaluation import mask_iou
from lineinspect.shared.models.mask.inference import MaskFinder, WholeFrame
from lineinspect.shared.models.reviewer.figures import review_figures
from lineinspect.shared.models.reviewer.inference import Review, Reviewer
from lineinspect.shared.models.reviewer.perturb import GRADES, PerturbedMask, perturb_for_grade

BATCH_FRAMES = 8


def _grouped_figures(keys: Sequence[str], truth: Sequence[int], reviews: Sequence[Review]) -> dict[str, dict[str, object]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for index, key in enumerate(keys):
        groups[key].append(index)
    table = {}
    for key, members in sorted(groups.items()):
        figures = review_figures([truth[i] for i in members], [reviews[i].grade for i in members],
                                 [reviews[i].untrustworthy for i in members])
        table[key] = {name: figures[name] for name in ("n", "grade_accuracy", "auc_untrustworthy", "n_per_true_grade")}
    return table


def evaluate_on_perturbed(
    reviewer: Reviewer, rows: Sequence[ManifestRow], per_image: int = 12, seed: int = 0, progress: bool = True
) -> dict[str, object]:
    """`per_image` perturbed masks of each row's product mask, cycling through the grades."""
    rng = np.random.default_rng(seed)
    truth: list[int] = []
    reviews: list[Review] = []
    kinds: list[str] = []
    image_types: list[str] = []
    seconds = 0.0
    for start in tqdm(range(0, len(rows), BATCH_FRAMES), desc="perturbed masks", unit="batch", disable=not progress, leave=False):
        batch = rows[start : start + BATCH_FRAMES]
        frames = [read_image(row.path) for row in batch]
        truths = [read_mask(row.product_mask) for row in batch]
        drawn: list[tuple[int, PerturbedMask]] = []
        for index, (row, mask) in enumerate(zip(batch, truths)):
            others = [m for j, m in enumerate(truths) if j != index and m.shape == mask.shape]
            for k in range(per_image):
                drawn.append((index, perturb_for_grade(mask, GRADES[k % len(GRADES)], reviewer.thresholds, rng, others)))
        began = time.perf_counter()
        reviews += reviewer.review([frames[i] for i, _ in drawn], [d.mask for _, d in drawn])
        seconds += time.perf_counter() - began
        truth += [d.grade for _, d in drawn]
        kinds += [d.kinds[0] if len(d.kinds) == 1 else "composed" for _, d in drawn]
        image_types += [batch[i].image_type for i, _ in drawn]
    figures = review_figures(truth, [r.grade for r in reviews], [r.untrustworthy for r in reviews])
    figures["per_perturbation"] = _grouped_figures(kinds, truth, reviews)
    figures["per_image_type"] = _grouped_figures(image_types, truth, reviews)
    figures["reviews_per_second"] = len(reviews) / seconds if seconds > 0 else None
    return figures


def evaluate_on_real_masks(
    reviewer: Reviewer, finder: MaskFinder | WholeFrame, rows: Sequence[ManifestRow], progress: bool = True
) -> dict[str, object]:
    """The finder's mask of every row, graded by its real IoU with the product mask."""
    truth: list[int] = []
    ious: list[float] = []
    reviews: list[Review] = []
    for start in tqdm(range(0, len(rows), BATCH_FRAMES), desc="real masks", unit="batch", disable=not progress, leave=False):
        batch = rows[start : start + BATCH_FRAMES]
        frames = [read_image(row.path) for row in batch]
        predicted = [p.mask for p in finder.predict(frames)]
        for row, mask in zip(batch, predicted):
            ious.append(mask_iou(mask, read_mask(row.product_mask)))
            truth.append(reviewer.thresholds.grade(ious[-1]))
        reviews += reviewer.review(frames, predicted)
    figures = review_figures(truth, [r.grade for r in reviews], [r.untrustworthy for r in reviews])
    figures["per_image_type"] = _grouped_figures([row.image_type for row in rows], truth, reviews)
    figures["mask_iou_mean"] = float(np.mean(ious)) if ious else None
    figures["estimated_iou_error_mean"] = float(np.mean([abs(r.estimated_iou - i) for r, i in zip(reviews, ious)])) if ious else None
    figures["mask_model_version"] = finder.version
    return figures


def evaluate_reviewer(
    reviewer: Reviewer,
    rows: Sequence[ManifestRow],
    finder: MaskFinder | WholeFrame | None = None,
    per_image: int = 12,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, object]:
    """The figures of `lineinspect evaluate reviewer`: `auc_untrustworthy` and `confusion` on
    perturbed masks; with a finder also `auc_untrustworthy_real` and `confusion_real`."""
    rows = [row for row in rows if row.product_mask]
    perturbed = evaluate_on_perturbed(reviewer, rows, per_image, seed, progress)
    figures: dict[str, object] = {
        "auc_untrustworthy": perturbed["auc_untrustworthy"],
        "confusion": perturbed["confusion"],
        "model_version": reviewer.version,
        "grade_thresholds": {"perfect_iou": reviewer.thresholds.perfect, "usable_iou": reviewer.thresholds.usable},
        "n_images": len(rows),
        "perturbed": perturbed,
    }
    if finder is not None:
        real = evaluate_on_real_masks(reviewer, finder, rows, progress)
        figures.update(auc_untrustworthy_real=real["auc_untrustworthy"], confusion_real=real["confusion"], real=real)
    return figures
