"""The learning-rate schedule and early stopping of the fine-tuned models (mask finder, reviewer)."""

import time

import torch


def one_cycle(optimiser: torch.optim.Optimizer, max_lrs: list[float], total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """One-cycle schedule: warm up over ~10% of the steps (at least two), then anneal. Runs
    too short for a warm-up (under four steps) keep a constant rate."""
    if total_steps < 4:
        return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1.0)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=max_lrs, total_steps=total_steps, pct_start=max(0.1, 3.0 / total_steps)
    )


class EarlyStopping:
    """Keeps the weights of the best epoch by a validation figure and says when to stop:
    `patience` epochs without a better figure, `max_minutes` of training, or `max_steps`."""

    def __init__(self, patience: int, max_minutes: float, higher_is_better: bool, max_steps: int | None = None) -> None:
        self.patience = patience
        self.max_minutes = max_minutes
        self.max_steps = max_steps
        self.sign = 1.0 if higher_is_better else -1.0
        self.best = float("-inf") if higher_is_better else float("inf")
        self.best_epoch = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def out_of_steps(self, step: int) -> bool:
        return self.max_steps is not None and step >= self.max_steps

    def update(self, epoch: int, figure: float, network: torch.nn.Module) -> bool:
        """Record an epoch's validation figure; True (and the weights kept) when it is the best yet."""
        if self.sign * figure <= self.sign * self.best:
            return False
        self.best, self.best_epoch = figure, epoch
        self.best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
        return True

    def should_stop(self, epoch: int, step: int) -> bool:
        return (
            epoch - self.best_epoch >= self.patience
            or self.seconds / 60 >= self.max_minutes
            or self.out_of_steps(step)
        )
