"""Helpers shared by the benchmarks (run as `python bench/<name>.py`, so this folder is on the
import path): timing and printing the figures."""

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

from lineinspect.shared.cli.main import main as lineinspect


def run(*args: object) -> None:
    """`lineinspect ARGS...` in this process; exits with a message when it fails."""
    code = lineinspect([str(a) for a in args])
    if code != 0:
        raise SystemExit(f"lineinspect {' '.join(map(str, args))} failed with exit code {code}")


def timed_rate(work: Callable[[], object], count: int, repeats: int = 3) -> float:
    """Best items/s of `repeats` timed runs of `work` over `count` items, after one warm-up run."""
    work()
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - began)
    return count / best


def machine() -> str:
    return f"{platform.machine()} {platform.processor() or ''}".strip()


def print_figures(figures: dict[str, object], json_path: Path | None) -> None:
    """One figure a line on stdout, and all of them as JSON when asked."""
    for name, value in figures.items():
        print(f"{name:<32} {value:.2f}" if isinstance(value, float) else f"{name:<32} {value}")
    if json_path:
        json_path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
