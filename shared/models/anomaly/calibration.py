"""Choosing the anomaly threshold: F1-optimal on labelled calibration images when there are
anomalies to calibrate on, else a stated quantile of held-back normal scores plus a margin."""

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import precision_recall_curve

# Quantile of held-back normal images' measures that sets the reference levels. (The
# normals-only threshold's quantile is a setting of its own: AnomalyConfig.normal_quantile.)
NORMAL_QUANTILE = 0.99


@dataclass(frozen=True)
class Threshold:
    value: float
    method: str  # "f1_optimal" | "normal_quantile"
    explanation: str
    n_normal: int
    n_anomaly: int
    f1: float | None = None
    precision: float | None = None
    recall: float | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def f1_optimal_threshold(normal_scores: np.ndarray, anomaly_scores: np.ndarray) -> Threshold:
    """The score threshold (anomalous when score >= threshold) with the best F1 on these scores.

    Ties between thresholds of equal F1 go to the midpoint of the gap below the chosen score,
    so a new image scoring a hair under the weakest caught anomaly is still caught.
    """
    scores = np.concatenate([normal_scores, anomaly_scores]).astype(np.float64)
    truth = np.concatenate([np.zeros(len(normal_scores)), np.ones(len(anomaly_scores))])
    precision, recall, thresholds = precision_recall_curve(truth, scores)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    best = int(np.argmax(f1))
    chosen = float(thresholds[best])
    below = scores[scores < chosen]
    value = (chosen + float(below.max())) / 2 if below.size else chosen
    return Threshold(
        value=value,
        method="f1_optimal",
        explanation=(
            f"F1-optimal on the calibration split ({len(normal_scores)} normal, {len(anomaly_scores)} anomalous "
            f"images): F1 {f1[best]:.3f}, precision {precision[best]:.3f}, recall {recall[best]:.3f}"
        ),
        n_normal=len(normal_scores),
        n_anomaly=len(anomaly_scores),
        f1=float(f1[best]),
        precision=float(precision[best]),
        recall=float(recall[best]),
    )


def normal_quantile_threshold(normal_scores: np.ndarray, quantile: float, margin: float) -> Threshold:
    """Threshold from normal images the model did not train on: quantile * (1 + margin)."""
    base = float(np.quantile(normal_scores.astype(np.float64), quantile))
    sign = "plus" if margin >= 0 else "minus"
    return Threshold(
        value=base * (1.0 + margin),
        method="normal_quantile",
        explanation=(
            f"no labelled anomalies to calibrate on: {quantile:g} quantile of {len(normal_scores)} held-back "
            f"normal image scores ({base:.4g}) {sign} a {abs(margin):.0%} margin"
        ),
        n_normal=len(normal_scores),
        n_anomaly=0,
    )
