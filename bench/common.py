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


def timed_rates(works: dict[str, Callable[[], object]], count: int, repeats: int = 5) -> tuple[dict[str, float], float]:
    """Best items/s of each of `works` over `count` items, and the timing spread (the largest
    slowest / fastest ratio of one work's runs). After one warm-up run of each, the works run
    in turn, `repeats` rounds: on a shared machine whose speed drifts, each is timed in the
    same stretches as the others, so their ratios hold even when the absolute figures move."""
    for work in works.values():
        work()
    times: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(repeats):
        for name, work in works.items():
            began = time.perf_counter()
            work()
            times[name].append(time.perf_counter() - began)
    spread = max(max(runs) / min(runs) for runs in times.values())
    return {name: count / min(runs) for name, runs in times.items()}, spread


def machine() -> str:
    return f"{platform.machine()} {platform.processor() or ''}".strip()


def print_figures(figures: dict[str, object], json_path: Path | None) -> None:
    """One figure a line on stdout, and all of them as JSON when asked."""
    for name, value in figures.items():
        print(f"{name:<32} {value:.2f}" if isinstance(value, float) else f"{name:<32} {value}")
    if json_path:
        json_path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
