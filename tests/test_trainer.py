"""The shared training loop: progress and learning-rate factor as methods see them, resuming mid-schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from prunebench.datasets.memory import TensorLoader
from prunebench.run.recipe import OptimConfig
from prunebench.run.trainer import Trainer, TrainHook


class Spy(TrainHook):
    """Records, at each step, what a method reads: progress before and after the step, the learning rate and its
    factor, and the batch."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def before_step(self, trainer: Trainer) -> None:
        self.seen.append({"before": trainer.progress, "lr": trainer.lr, "factor": trainer.lr_factor})

    def compute_loss(self, trainer, inputs, targets):
        self.batch = inputs[0].clone()
        return None

    def after_step(self, trainer: Trainer) -> None:
        self.seen[-1].update(after=trainer.progress, step=trainer.step, batch=self.batch)


def loader() -> TensorLoader:
    return TensorLoader(torch.randn(30, 3), torch.randint(0, 2, (30,)), 4, shuffle=True, seed=3)  # 8 steps


def fit(start: int = 0, stop: int | None = None) -> list[dict]:
    torch.manual_seed(0)
    spy = Spy()
    optim = OptimConfig(lr=0.2, momentum=0.9, weight_decay=0.0, schedule="cosine")
    Trainer(nn.Linear(3, 2), loader(), optim, 3, hooks=[spy], start=start, stop=stop).fit()
    return spy.seen


def test_progress_and_learning_rate_factor_are_those_of_the_schedule() -> None:
    seen = fit()
    total = 24
    assert [s["step"] for s in seen] == list(range(1, total + 1))
    for t, s in enumerate(seen):
        assert s["before"] == t / total and s["after"] == (t + 1) / total
        cosine = 0.5 * (1.0 + math.cos(math.pi * t / total))
        assert s["lr"] == pytest.approx(0.2 * cosine, rel=1e-12)
        assert s["factor"] == pytest.approx(cosine, rel=1e-12)


def test_a_resumed_run_sees_the_full_runs_learning_rates_and_batches() -> None:
    full = fit()
    part = fit(start=5, stop=19)  # from the middle of epoch 0 to the middle of epoch 2
    assert [s["step"] for s in part] == list(range(6, 20))
    for s, reference in zip(part, full[5:19], strict=True):
        assert s["lr"] == reference["lr"] and s["before"] == reference["before"]
        assert torch.equal(s["batch"], reference["batch"])


def test_steps_outside_the_schedule_are_refused() -> None:
    with pytest.raises(ValueError, match="within the schedule"):
        Trainer(nn.Linear(3, 2), loader(), OptimConfig(), 3, start=10, stop=30)
