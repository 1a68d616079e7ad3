"""The run summary's throughput figures."""

import pytest

from lineinspect.shared.demo.summary import sustained_rate


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
