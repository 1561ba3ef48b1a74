"""Learning-rate schedule: linear warmup, then /10 at 70% and 90% of the iterations."""

from __future__ import annotations

import torch


def lr_factor(
    iteration: int,
    max_iters: int,
    warmup_iters: int,
    warmup_factor: float = 0.001,
    steps: tuple[float, ...] = (0.7, 0.9),
    gamma: float = 0.1,
) -> float:
    """Multiplier of the base LR at `iteration` (0-based, the step about to run)."""
    factor = gamma ** sum(iteration >= int(s * max_iters) for s in steps)
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        factor *= warmup_factor * (1 - alpha) + alpha
    return factor


class WarmupMultiStepLR:
    """Sets every param group's LR from `lr_factor`; its state is just the iteration, so
    it round-trips through a weights_only checkpoint."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, max_iters: int, warmup_iters: int):
        self.optimizer, self.base_lr = optimizer, base_lr
        self.max_iters, self.warmup_iters = max_iters, min(warmup_iters, max(max_iters // 2, 1))
        self.iteration = 0
        self._apply()

    def current_lr(self) -> float:
        return self.base_lr * lr_factor(self.iteration, self.max_iters, self.warmup_iters)

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.current_lr()

    def step(self) -> None:
        self.iteration += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"iteration": self.iteration}

    def load_state_dict(self, state: dict) -> None:
        self.iteration = int(state["iteration"])
        self._apply()
