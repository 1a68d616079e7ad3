"""Timing helper shared by the speed benchmarks (run as `python bench/<name>.py`, so this
folder is on the import path)."""

import time
from collections.abc import Callable


def timed_rate(work: Callable[[], object], count: int, repeats: int = 3) -> float:
    """Best items/s of `repeats` timed runs of `work` over `count` items, after one warm-up run."""
    work()
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - began)
    return count / best
