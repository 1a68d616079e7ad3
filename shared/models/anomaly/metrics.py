"""Accuracy figures of an anomaly model on labelled images: image and pixel AUROC, the
decision figures at the package threshold, and recall and typing accuracy per defect type."""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import balanced_accuracy_score, f1_score, precision_score, recall_score, roc_auc_score


@dataclass(frozen=True)
class ScoredImage:
    """One evaluated image: its truth and what the model said."""

    image_id: str
    is_anomaly: bool
    defect_type: str | None
    score: float
    predicted_anomaly: bool
    predicted_type: str | None  # type of the strongest region, when any


def image_figures(images: Sequence[ScoredImage], threshold: float) -> dict[str, object]:
    truth = np.array([i.is_anomaly for i in images], dtype=bool)
    scores = np.array([i.score for i in images], dtype=np.float64)
    predicted = np.array([i.predicted_anomaly for i in images], dtype=bool)
    both_classes = 0 < truth.sum() < len(truth)
    return {
        "image_auroc": float(roc_auc_score(truth, scores)) if both_classes else None,
        "f1": float(f1_score(truth, predicted, zero_division=0)),
        "precision": float(precision_score(truth, predicted, zero_division=0)),
        "recall": float(recall_score(truth, predicted, zero_division=0)),
        "balanced_accuracy": float(balanced_accuracy_score(truth, predicted)) if both_classes else None,
        "threshold": float(threshold),
        "n_images": int(len(images)),
        "n_normal": int((~truth).sum()),
        "n_anomaly": int(truth.sum()),
        "false_positives": int((predicted & ~truth).sum()),
        "false_negatives": int((~predicted & truth).sum()),
    }


def per_defect_type(images: Sequence[ScoredImage]) -> dict[str, dict[str, object]]:
    """Recall per defect type, and how often the strongest region named the right type
    (among the caught images of that type)."""
    groups: dict[str, list[ScoredImage]] = defaultdict(list)
    for image in images:
        if image.is_anomaly:
            groups[image.defect_type or "unknown"].append(image)
    table: dict[str, dict[str, object]] = {}
    for defect_type, members in sorted(groups.items()):
        caught = [m for m in members if m.predicted_anomaly]
        typed = [m for m in caught if m.predicted_type is not None and m.predicted_type != "unknown"]
        table[defect_type] = {
            "n": len(members),
            "recall": len(caught) / len(members),
            "typing_accuracy": (sum(m.predicted_type == defect_type for m in typed) / len(typed)) if typed else None,
        }
    return table


class PixelAuroc:
    """Pixel-level AUROC accumulated image by image.

    Exact ROC over tens of millions of pixels needs gigabytes; instead every pixel score is
    binned on a fine grid (65536 even bins over the observed range), which changes the
    AUROC by far less than its sampling error."""

    BINS = 65536

    def __init__(self) -> None:
        self._scores: list[np.ndarray] = []
        self._truths: list[np.ndarray] = []

    def add(self, score_map: np.ndarray, defect_mask: np.ndarray) -> None:
        self._scores.append(score_map.astype(np.float32).ravel())
        self._truths.append(defect_mask.astype(bool).ravel())

    def value(self) -> float | None:
        if not self._scores:
            return None
        scores = np.concatenate(self._scores)
        truth = np.concatenate(self._truths)
        positives = int(truth.sum())
        if positives == 0 or positives == truth.size:
            return None
        low, high = float(scores.min()), float(scores.max())
        if high <= low:
            return 0.5
        bins = np.minimum(((scores - low) / (high - low) * self.BINS).astype(np.int64), self.BINS - 1)
        pos = np.bincount(bins[truth], minlength=self.BINS).astype(np.float64)
        neg = np.bincount(bins[~truth], minlength=self.BINS).astype(np.float64)
        # Mann-Whitney: P(pos > neg) + 0.5 P(tie), ties = same bin.
        neg_below = np.cumsum(neg) - neg
        auc = (pos * neg_below).sum() + 0.5 * (pos * neg).sum()
        return float(auc / (positives * (truth.size - positives)))
