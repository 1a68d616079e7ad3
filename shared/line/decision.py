"""The verdict rule: what a scored and reviewed frame means for the part.

- `review` when the reviewer does not trust the mask (grade 3): the score may come from the
  wrong pixels, so a person should look;
- `review` when the normalised score is within `review_band` of the threshold (1.0): too
  close to call either way;
- `fail` when the anomaly model calls the product anomalous (and neither of the above);
- `pass` otherwise.

For an image type decided by a detector alone, the score is its best box's confidence and
the threshold its deployed confidence, so the same rule applies.
"""

from dataclasses import dataclass
from typing import Literal

from lineinspect.schemas import AnomalyResult, ReviewResult

Decision = Literal["pass", "fail", "review"]


@dataclass(frozen=True)
class DecisionRule:
    review_band: float = 0.1

    def decide(self, anomaly: AnomalyResult, review: ReviewResult | None) -> tuple[Decision, list[str]]:
        score = anomaly.normalised_score
        # An image type served by a detector alone is scored by its best box's confidence.
        measure = "defect confidence" if anomaly.detector_version == anomaly.model_version else "anomaly score"
        reasons: list[str] = []
        if review is not None and review.grade == 3:
            reasons.append(
                f"product mask untrustworthy (grade 3, p={review.probabilities[2]:.2f}): the score may be of the wrong pixels"
            )
        low, high = 1.0 - self.review_band, 1.0 + self.review_band
        if low <= score <= high:
            reasons.append(f"{measure} {score:.2f}x the threshold is within the review band [{low:.2f}, {high:.2f}]")
        if reasons:
            return "review", reasons
        if anomaly.decision == "anomalous":
            where = ", ".join(
                f"{r.defect_type}{'' if r.type_confidence is None else f' ({r.type_confidence:.2f})'} at ({r.x1},{r.y1})-({r.x2},{r.y2})"
                for r in anomaly.regions[:3]
            )
            more = f" and {len(anomaly.regions) - 3} more" if len(anomaly.regions) > 3 else ""
            return "fail", [f"{measure} {score:.2f}x the threshold" + (f"; {where}{more}" if where else "")]
        return "pass", [f"{measure} {score:.2f}x the threshold"]
