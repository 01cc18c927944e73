"""The shared training loop: progress and learning-rate factor as methods see them, resuming mid-schedule, and the
weights' SGD step against ``torch.optim.SGD``."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from prunebench.datasets.memory import TensorLoader
from prunebench.recipe import OptimConfig
from prunebench.sgd_step import SGDStep
from prunebench.trainer import Trainer, TrainHook


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


def _sgd_pair(momentum: float, nesterov: bool, weight_decay: float):
    torch.manual_seed(1)
    reference = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    ours = copy.deepcopy(reference)
    options = dict(lr=0.3, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, fused=True)
    return (
        (reference, torch.optim.SGD(reference.parameters(), **options)),
        (ours, torch.optim.SGD(ours.parameters(), **options)),
    )


@pytest.mark.parametrize(
    "momentum, nesterov, weight_decay", [(0.9, False, 5e-4), (0.9, True, 0.0), (0.0, False, 1e-3)]
)
def test_the_direct_sgd_step_is_optimizer_step_to_the_bit(momentum, nesterov, weight_decay) -> None:
    """SGDStep calls the fused kernel itself after the first step; weights and momentum buffers equal those of
    ``torch.optim.SGD(fused=True).step()`` to the bit, through a learning rate that changes every step and a state
    loaded midway (as a resumed run's)."""
    (reference, reference_optimizer), (ours, optimizer) = _sgd_pair(momentum, nesterov, weight_decay)
    stepper = SGDStep(optimizer)
    calls = []
    step = optimizer.step
    optimizer.step = lambda: calls.append(1) or step()
    for i in range(12):
        inputs = torch.randn(8, 5)
        for model in (reference, ours):
            model.zero_grad(set_to_none=True)
            model(inputs).square().mean().backward()
        for o in (reference_optimizer, optimizer):
            o.param_groups[0]["lr"] = 0.3 * math.cos(i / 12)
        if i == 6:
            optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
        reference_optimizer.step()
        stepper.step()
    assert len(calls) == 2  # only the first step and the one after the load went through optimizer.step()
    for a, b in zip(reference.parameters(), ours.parameters(), strict=True):
        assert torch.equal(a, b)
        if momentum:
            assert torch.equal(
                reference_optimizer.state[a]["momentum_buffer"], optimizer.state[b]["momentum_buffer"]
            )


def test_the_direct_sgd_step_leaves_a_parameter_without_gradient_to_optimizer_step() -> None:
    (reference, reference_optimizer), (ours, optimizer) = _sgd_pair(0.9, False, 0.0)
    stepper = SGDStep(optimizer)
    for i in range(4):
        inputs = torch.randn(8, 5)
        for model in (reference, ours):
            model.zero_grad(set_to_none=True)
            model(inputs).square().mean().backward()
            if i == 2:
                model[2].bias.grad = None  # torch.optim.SGD skips it: its weight and buffer stay as they are
        reference_optimizer.step()
        stepper.step()
    for a, b in zip(reference.parameters(), ours.parameters(), strict=True):
        assert torch.equal(a, b)


def test_the_direct_sgd_step_steps_a_parameter_group_added_later() -> None:
    """A group added with ``add_param_group`` after the direct calls began is stepped as ``optimizer.step()`` does."""
    (reference, reference_optimizer), (ours, optimizer) = _sgd_pair(0.9, False, 0.0)
    stepper = SGDStep(optimizer)
    extra = {id(m): nn.Parameter(torch.ones(3)) for m in (reference, ours)}
    for i in range(6):
        if i == 3:
            reference_optimizer.add_param_group({"params": [extra[id(reference)]]})
            optimizer.add_param_group({"params": [extra[id(ours)]]})
        inputs = torch.randn(8, 5)
        for model in (reference, ours):
            model.zero_grad(set_to_none=True)
            (model(inputs).square().mean() + extra[id(model)].square().sum()).backward()
        reference_optimizer.step()
        stepper.step()
    assert torch.equal(extra[id(reference)], extra[id(ours)])
    assert not torch.equal(extra[id(ours)], torch.ones(3))
    for a, b in zip(reference.parameters(), ours.parameters(), strict=True):
        assert torch.equal(a, b)
