"""The run summary's figures: throughput, and why frames went to review."""

from datetime import datetime, timezone

import pytest

from lineinspect.schemas import Verdict
from lineinspect.shared.demo.summary import LineRun, sustained_rate

T0 = datetime(2026, 11, 29, tzinfo=timezone.utc)


def test_sustained_rate_is_the_steady_rate_without_the_start_and_the_end() -> None:
    # 100 verdicts: 10 per second in the middle, but the first 5 and last 5 dawdle
    # (stages filling up, then draining), 1 per second each.
    start = [float(i) for i in range(5)]
    middle = [5.0 + i / 10.0 for i in range(90)]
    end = [middle[-1] + 1.0 + i for i in range(5)]
    seen = start + middle + end
    assert sustained_rate(seen) == pytest.approx(10.0)
    whole = len(seen) / (seen[-1] - seen[0])
    assert whole < 6.0  # the whole-run rate would have hidden the steady 10 per second


def test_sustained_rate_needs_enough_verdicts_to_mean_anything() -> None:
    assert sustained_rate([0.0, 0.1, 0.2]) is None
    assert sustained_rate([1.0] * 20) is None  # all at once: no span to divide by


def _verdict(frame_id: str, decision: str, normalised: float, grade: int | None) -> Verdict:
    return Verdict(frame_id=frame_id, line_id="line-1", camera_id="cam-1", image_type="disc", captured_at=T0,
                   decided_at=T0, decision=decision, reasons=["why"], score=normalised, threshold=1.0,
                   normalised_score=normalised, mask_grade=grade, model_versions={"mask": "m", "anomaly": "a"}, latency_ms=50.0)


def test_the_summary_says_whether_a_review_came_from_the_mask_or_the_score() -> None:
    run = LineRun()
    for verdict, truth in [
        (_verdict("a", "review", 0.5, 3), "normal"),    # untrusted mask, clear score
        (_verdict("b", "review", 1.02, 3), "anomaly"),  # both: the mask is the reason counted
        (_verdict("c", "review", 0.95, 1), "normal"),   # score in the band
        (_verdict("d", "review", 1.05, None), None),    # score in the band, no reviewer
        (_verdict("e", "pass", 0.4, 1), "normal"),
    ]:
        run.published(verdict.frame_id, truth)
        run.verdicts[verdict.frame_id] = verdict
        run.verdict_seen_at[verdict.frame_id] = 1.0
    summary = run.summary(0.0, 1.0)
    assert summary["decisions"] == {"pass": 1, "fail": 0, "review": 4}
    assert summary["review_causes"] == {"untrustworthy_mask": 2, "score_near_threshold": 2}
