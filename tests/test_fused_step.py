"""The opt-in direct fused optimizer steps (the weights' SGD, the learned-mask methods' Adam) against the plain
``optimizer.step()``: the same parameters and state to the bit, ``optimizer.step()`` wherever the direct call would
not be, and a whole training run that ends in the same weights either way."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from prunebench.datasets.memory import TensorLoader
from prunebench.run import fast_paths
from prunebench.run.fused_step import AdamStep, FusedStep, SGDStep, optimizer_step, torch_tested
from prunebench.run.recipe import OptimConfig
from prunebench.run.trainer import Trainer

needs_tested_torch = pytest.mark.skipif(
    not torch_tested(), reason=f"the direct step is off on PyTorch {torch.__version__} (not in TESTED_TORCH)"
)


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


@needs_tested_torch
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


@needs_tested_torch
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


@needs_tested_torch
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


@needs_tested_torch
@pytest.mark.parametrize(
    "stepper_class, optimizer_class, options, change",
    [
        (*STEPS[2], ("momentum", 0.9)),  # buffers are created by the optimizer's own step
        (*STEPS[0], ("maximize", True)),  # the direct call passes maximize=False
        (*STEPS[3], ("maximize", True)),
        (*STEPS[0], ("lr", torch.tensor(0.05))),  # the direct call passes a float learning rate
        (*STEPS[3], ("lr", torch.tensor(0.05))),
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


def _direct_step(step) -> type[FusedStep] | None:
    """The class of the direct step that ``step`` (from :func:`optimizer_step`) calls, ``None`` on the plain path."""
    owner = getattr(step, "__self__", None)
    return type(owner) if isinstance(owner, FusedStep) else None


def _lenet300(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))


def _trainer(model: nn.Module, plain: bool, monkeypatch: pytest.MonkeyPatch) -> Trainer:
    """A trainer of LeNet-300-100 over 10 batches of random MNIST-shaped data for 20 epochs (200 steps, cosine
    learning rate from 0.05), built with the speed-ups off (``plain``) or where they pay."""
    generator = torch.Generator().manual_seed(3)
    inputs, targets = (
        torch.randn(640, 784, generator=generator),
        torch.randint(0, 10, (640,), generator=generator),
    )
    monkeypatch.setenv(fast_paths.PLAIN_VARIABLE, "1" if plain else "0")
    return Trainer(model, TensorLoader(inputs, targets, 64, shuffle=True), OptimConfig(lr=0.05), 20)


@needs_tested_torch
def test_a_training_run_ends_in_the_same_weights_on_the_plain_and_the_direct_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """200 SGD steps (momentum, weight decay, a learning rate that changes every step) with ``optimizer.step()``,
    with the direct kernel call, and with the direct call resumed from the plain run's state after 100 steps: the
    same weights and momentum buffers to the bit."""
    plain = _trainer(_lenet300(0), plain=True, monkeypatch=monkeypatch)
    assert _direct_step(plain._optimizer_step) is None
    plain.fit()

    direct = _trainer(_lenet300(0), plain=False, monkeypatch=monkeypatch)
    assert _direct_step(direct._optimizer_step) is SGDStep
    direct.fit()

    first_half = _trainer(_lenet300(0), plain=True, monkeypatch=monkeypatch)
    first_half.stop = 100
    first_half.fit()
    resumed = _trainer(
        _lenet300(1), plain=False, monkeypatch=monkeypatch
    )  # other initial weights, overwritten
    resumed.load_state_dict(copy.deepcopy(first_half.state_dict()))
    resumed.fit()

    for other in (direct, resumed):
        assert other.step == plain.step == 200
        _assert_same(plain.model, plain.optimizer, other.model, other.optimizer)
    assert not torch.equal(plain.model[0].weight, _lenet300(0)[0].weight)  # it trained


def test_optimizer_step_is_the_plain_step_where_the_speed_up_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """The direct step only for a plain SGD, Adam or AdamW on a device where it pays, on a tested PyTorch, unless
    ``PRUNEBENCH_PLAIN=1``; everywhere else a call of the optimizer's own ``step``, as it is at the call (a
    learning-rate scheduler wraps it)."""

    class MySGD(torch.optim.SGD):
        pass

    def built(optimizer_class=torch.optim.SGD, device: str = "cpu", fused: bool | None = True):
        parameters = [nn.Parameter(torch.ones(3, device=device))]
        optimizer = optimizer_class(parameters, lr=0.1, **({} if fused is None else {"fused": fused}))
        return optimizer, optimizer_step(optimizer)

    monkeypatch.setattr(
        "prunebench.run.fused_step.TESTED_TORCH", (".".join(torch.__version__.split(".")[:2]),)
    )
    monkeypatch.delenv(fast_paths.PLAIN_VARIABLE, raising=False)
    for optimizer_class, direct in [
        (torch.optim.SGD, SGDStep),
        (torch.optim.Adam, AdamStep),
        (torch.optim.AdamW, AdamStep),
    ]:
        assert _direct_step(built(optimizer_class)[1]) is direct
    plain = [
        built(MySGD),
        built(device="meta", fused=None),
        built(torch.optim.RMSprop, fused=None),
    ]  # a subclass may step otherwise; no
    # speed-up measured on the device; no direct kernel
    monkeypatch.setenv(fast_paths.PLAIN_VARIABLE, "1")
    plain.append(built())
    monkeypatch.setenv(fast_paths.PLAIN_VARIABLE, "0")
    monkeypatch.setattr(
        "prunebench.run.fused_step.TESTED_TORCH", ("1.13",)
    )  # another PyTorch: its kernels may differ
    plain.append(built())
    for optimizer, step in plain:
        assert _direct_step(step) is None
        calls = []
        optimizer.step = lambda calls=calls: calls.append(1)
        step()
        assert calls == [1]


def test_torch_tested_compares_major_and_minor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("prunebench.run.fused_step.TESTED_TORCH", ("2.14",))
    assert torch_tested("2.14.1+cu130") and torch_tested("2.14.0")
    assert not torch_tested("2.1.0") and not torch_tested("2.140.0") and not torch_tested("1.14.0")
