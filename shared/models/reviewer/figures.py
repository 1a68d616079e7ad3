"""Accuracy figures of a reviewer: AUROC of "untrustworthy" (grade 3 against the rest, by
the IoU truth) and the 3x3 grade confusion."""

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from lineinspect.shared.models.reviewer.perturb import GRADES


def review_figures(truth_grades: Sequence[int], predicted_grades: Sequence[int], untrustworthy: Sequence[float]) -> dict[str, object]:
    """`auc_untrustworthy` is None when the truth holds only one side (say, every real mask
    is good): an AUROC needs both."""
    truth = np.asarray(truth_grades, dtype=int)
    predicted = np.asarray(predicted_grades, dtype=int)
    positive = truth == 3
    both_sides = 0 < positive.sum() < len(truth)
    confusion = [[int(((truth == t) & (predicted == p)).sum()) for p in GRADES] for t in GRADES]
    return {
        "auc_untrustworthy": float(roc_auc_score(positive, np.asarray(untrustworthy, float))) if both_sides else None,
        "confusion": confusion,
        "confusion_axes": "rows: true grade 1, 2, 3 (by IoU with the truth); columns: predicted grade 1, 2, 3",
        "grade_accuracy": float((truth == predicted).mean()) if len(truth) else None,
        "untrustworthy_recall": float((predicted[positive] == 3).mean()) if positive.any() else None,
        "untrustworthy_precision": float((truth[predicted == 3] == 3).mean()) if (predicted == 3).any() else None,
        "n": int(len(truth)),
        "n_per_true_grade": {str(g): int((truth == g).sum()) for g in GRADES},
    }
