"""The LR schedule: linear warmup, /10 at 70% and 90%, state round trip."""

from __future__ import annotations

import pytest
import torch

from trainer.schedule import WarmupMultiStepLR, lr_factor


def test_lr_factor_values():
    assert lr_factor(0, 1000, 100) == pytest.approx(0.001)
    assert lr_factor(50, 1000, 100) == pytest.approx(0.001 * 0.5 + 0.5)
    assert lr_factor(100, 1000, 100) == 1.0
    assert lr_factor(699, 1000, 100) == 1.0
    assert lr_factor(700, 1000, 100) == pytest.approx(0.1)
    assert lr_factor(899, 1000, 100) == pytest.approx(0.1)
    assert lr_factor(900, 1000, 100) == pytest.approx(0.01)
    assert lr_factor(999, 1000, 100) == pytest.approx(0.01)


def test_scheduler_sets_param_groups_and_round_trips():
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD(params, lr=1.0, momentum=0.9)
    scheduler = WarmupMultiStepLR(optimizer, 0.02, max_iters=100, warmup_iters=10)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.02 * 0.001)
    for _ in range(70):
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.002)
    state = scheduler.state_dict()
    other = WarmupMultiStepLR(optimizer, 0.02, max_iters=100, warmup_iters=10)
    other.load_state_dict(state)
    assert other.iteration == 70 and optimizer.param_groups[0]["lr"] == pytest.approx(0.002)
