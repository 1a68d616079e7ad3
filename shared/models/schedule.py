"""The learning-rate schedule of the fine-tuned models (mask finder, reviewer)."""

import torch


def one_cycle(optimiser: torch.optim.Optimizer, max_lrs: list[float], total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """One-cycle schedule: warm up over ~10% of the steps (at least two), then anneal. Runs
    too short for a warm-up (under four steps) keep a constant rate."""
    if total_steps < 4:
        return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1.0)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=max_lrs, total_steps=total_steps, pct_start=max(0.1, 3.0 / total_steps)
    )
