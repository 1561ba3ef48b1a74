"""An explicit, iteration-based training loop; logging, checkpoints and the rest are hooks."""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from typing import Callable, Iterator

import torch

from trainer.distributed import is_main_process


class Hook:
    """Override any of these; `trainer` gives access to iteration, model, losses."""

    def before_train(self, trainer: "Trainer") -> None: ...

    def after_step(self, trainer: "Trainer") -> None: ...

    def after_train(self, trainer: "Trainer") -> None: ...


class Trainer:
    """Runs `loss_fn(model, batch) -> dict of losses` from `start_iter` to `max_iters`.

    AMP (float16 autocast + GradScaler) is used on CUDA only: CPU autocast would be slower
    here and bf16 changes numerics for nothing.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler,
        data: Iterator,
        loss_fn: Callable[[torch.nn.Module, object], dict[str, torch.Tensor]],
        max_iters: int,
        start_iter: int = 0,
        device: torch.device = torch.device("cpu"),
        hooks: list[Hook] | None = None,
    ):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.data, self.loss_fn = data, loss_fn
        self.max_iters, self.start_iter, self.iteration = max_iters, start_iter, start_iter
        self.device = device
        self.hooks = hooks or []
        self.amp = device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.losses: dict[str, float] = {}
        self.loss_history: list[float] = []

    def run_step(self) -> None:
        batch = next(self.data)
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.amp else nullcontext()
        with autocast:
            losses = self.loss_fn(self.model, batch)
        total = sum(losses.values())
        # .item() is a host sync; acceptable once per step, and it guards against NaN.
        value = float(total.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"loss became {value} at iteration {self.iteration}: {({k: float(v) for k, v in losses.items()})}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.losses = {k: float(v.detach()) for k, v in losses.items()}
        self.loss_history.append(value)

    def train(self) -> None:
        self.model.train()
        for hook in self.hooks:
            hook.before_train(self)
        while self.iteration < self.max_iters:
            self.run_step()
            self.iteration += 1
            for hook in self.hooks:
                hook.after_step(self)
        for hook in self.hooks:
            hook.after_train(self)


class ProgressHook(Hook):
    """A tqdm bar (main process only) showing the losses, LR and iterations per second."""

    def before_train(self, trainer: Trainer) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=trainer.max_iters, initial=trainer.start_iter, disable=not is_main_process(),
            desc="train", unit="it", dynamic_ncols=True,
        )
        self.start = time.perf_counter()

    def after_step(self, trainer: Trainer) -> None:
        self.bar.update(1)
        post = {"loss": f"{sum(trainer.losses.values()):.3f}"}
        post.update({k.replace("loss_", ""): f"{v:.3f}" for k, v in trainer.losses.items() if len(trainer.losses) > 1})
        post["lr"] = f"{trainer.scheduler.current_lr():.4g}"
        self.bar.set_postfix(post, refresh=False)

    def after_train(self, trainer: Trainer) -> None:
        self.bar.close()
        self.seconds = time.perf_counter() - self.start


class CheckpointHook(Hook):
    """Calls `save(iteration)` every `period` iterations before the last (main rank only);
    the final weights are the caller's to save."""

    def __init__(self, period: int, save: Callable[[int], None]):
        self.period, self.save = period, save

    def after_step(self, trainer: Trainer) -> None:
        if self.period > 0 and trainer.iteration % self.period == 0 and trainer.iteration < trainer.max_iters and is_main_process():
            self.save(trainer.iteration)


def cycle(loader) -> Iterator:
    """Batches forever from a loader whose sampler is already infinite."""
    while True:
        yield from loader
