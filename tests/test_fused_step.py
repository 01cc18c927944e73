"""The direct fused optimizer steps (the weights' SGD, the learned-mask methods' Adam) against ``optimizer.step()``:
the same parameters and state to the bit, and ``optimizer.step()`` wherever the direct call would not be."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from prunebench.fused_step import AdamStep, FusedStep, SGDStep


def _pair(optimizer_class: type[torch.optim.Optimizer], **options):
    """Two copies of a small model, each with its own fused optimizer."""
    torch.manual_seed(1)
    reference = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    ours = copy.deepcopy(reference)
    return (
        (reference, optimizer_class(reference.parameters(), fused=True, **options)),
        (ours, optimizer_class(ours.parameters(), fused=True, **options)),
    )


def _backward(models, inputs: torch.Tensor) -> None:
    for model in models:
        model.zero_grad(set_to_none=True)
        model(inputs).square().mean().backward()


def _assert_same(reference, reference_optimizer, ours, optimizer) -> None:
    """Equal parameters and equal state tensors, to the bit."""
    for a, b in zip(reference.parameters(), ours.parameters(), strict=True):
        assert torch.equal(a, b)
        expected, found = reference_optimizer.state[a], optimizer.state[b]
        assert expected.keys() == found.keys()
        for key in expected:
            assert torch.equal(expected[key], found[key]), key


STEPS = [
    (SGDStep, torch.optim.SGD, dict(lr=0.3, momentum=0.9, nesterov=False, weight_decay=5e-4)),
    (SGDStep, torch.optim.SGD, dict(lr=0.3, momentum=0.9, nesterov=True, weight_decay=0.0)),
    (SGDStep, torch.optim.SGD, dict(lr=0.3, momentum=0.0, weight_decay=1e-3)),
    (AdamStep, torch.optim.Adam, dict(lr=0.05, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)),
    (AdamStep, torch.optim.Adam, dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2)),
    (AdamStep, torch.optim.AdamW, dict(lr=0.05, weight_decay=1e-2)),
]


@pytest.mark.parametrize("stepper_class, optimizer_class, options", STEPS)
def test_the_direct_step_is_optimizer_step_to_the_bit(stepper_class, optimizer_class, options) -> None:
    """After the first step the kernel is called directly; parameters and state (momentum buffers; Adam's moving
    averages and step counts) equal those of ``optimizer.step()`` to the bit, through a learning rate that changes
    every step and a state loaded midway (as a resumed run's)."""
    (reference, reference_optimizer), (ours, optimizer) = _pair(optimizer_class, **options)
    stepper = stepper_class(optimizer)
    calls = []
    step = optimizer.step
    optimizer.step = lambda: calls.append(1) or step()
    for i in range(12):
        _backward((reference, ours), torch.randn(8, 5))
        for o in (reference_optimizer, optimizer):
            o.param_groups[0]["lr"] = options["lr"] * math.cos(i / 12)
        if i == 6:
            optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
        reference_optimizer.step()
        stepper.step()
    assert len(calls) == 2  # only the first step and the one after the load went through optimizer.step()
    _assert_same(reference, reference_optimizer, ours, optimizer)


@pytest.mark.parametrize("stepper_class, optimizer_class, options", [STEPS[0], STEPS[3]])
def test_a_parameter_without_gradient_is_left_to_optimizer_step(
    stepper_class, optimizer_class, options
) -> None:
    (reference, reference_optimizer), (ours, optimizer) = _pair(optimizer_class, **options)
    stepper = stepper_class(optimizer)
    for i in range(4):
        _backward((reference, ours), torch.randn(8, 5))
        if i == 2:
            for model in (reference, ours):
                model[2].bias.grad = None  # the optimizer skips it: its value and state stay as they are
        reference_optimizer.step()
        stepper.step()
    _assert_same(reference, reference_optimizer, ours, optimizer)


@pytest.mark.parametrize("stepper_class, optimizer_class, options", [STEPS[0], STEPS[3]])
def test_a_parameter_group_added_later_is_stepped(stepper_class, optimizer_class, options) -> None:
    """A group added with ``add_param_group`` after the direct calls began is stepped as ``optimizer.step()`` does."""
    (reference, reference_optimizer), (ours, optimizer) = _pair(optimizer_class, **options)
    stepper = stepper_class(optimizer)
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
    _assert_same(reference, reference_optimizer, ours, optimizer)


@pytest.mark.parametrize(
    "stepper_class, optimizer_class, options, change",
    [
        (*STEPS[2], ("momentum", 0.9)),  # buffers are created by the optimizer's own step
        (*STEPS[0], ("maximize", True)),  # the direct call passes maximize=False
        (*STEPS[3], ("maximize", True)),
    ],
)
def test_options_changed_midway_go_through_optimizer_step(
    stepper_class, optimizer_class, options, change
) -> None:
    (reference, reference_optimizer), (ours, optimizer) = _pair(optimizer_class, **options)
    stepper: FusedStep = stepper_class(optimizer)
    for i in range(6):
        _backward((reference, ours), torch.randn(8, 5))
        if i == 3:
            for o in (reference_optimizer, optimizer):
                o.param_groups[0][change[0]] = change[1]
        reference_optimizer.step()
        stepper.step()
    _assert_same(reference, reference_optimizer, ours, optimizer)


def test_zero_grad_sets_the_gradients_to_none() -> None:
    (_, _), (ours, optimizer) = _pair(torch.optim.Adam, lr=0.1)
    _backward((ours,), torch.randn(8, 5))
    AdamStep(optimizer).zero_grad()
    assert all(p.grad is None for p in ours.parameters())
