"""``prunebench.sparsify`` in a plain PyTorch loop: the documented example runs, its masks are the harness
trainer's for the same seed and batches, a resumed loop is an uninterrupted one, and ``finish`` meets the exact
target for every method it serves."""

from __future__ import annotations

import copy
import functools
import io
import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import prunebench
from prunebench.core.errors import UsageError
from prunebench.methods.base import ScoringData, TrainingContext
from prunebench.methods.method_registry import all_methods, get_method
from prunebench.pruning.keep_budget import keep_budget
from prunebench.pruning.prunable import prunable_weights
from prunebench.pruning.sparsify import SCHEDULES
from prunebench.run.gradual_schedule import GradualPruning
from prunebench.run.phases import live_masks
from prunebench.run.recipe import OptimConfig
from prunebench.run.trainer import Trainer

PAGE = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"
STEPS_PER_EPOCH, EPOCHS, SPARSITY = 4, 3, 0.9
TOTAL = STEPS_PER_EPOCH * EPOCHS
RECIPE = OptimConfig(lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="cosine")


class Batches:
    """The same batches every epoch, as the harness's loaders are driven (``set_epoch``)."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def set_epoch(self, epoch: int) -> None:
        pass


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 16), nn.ReLU(), nn.Linear(16, 4)
    )


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [
        (torch.randn(16, 1, 8, 8, generator=generator), torch.randint(0, 4, (16,), generator=generator))
        for _ in range(STEPS_PER_EPOCH)
    ]


def cosine(step: int) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(step, TOTAL) / TOTAL))


def own_loop(method: str, steps: range, model: nn.Module, state: dict | None = None, **options):
    """The documented loop on the tiny model, with the harness's fused SGD and cosine schedule; from ``state`` (what
    a loop saved) when given. Returns the session, the optimizer and the scheduler."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
    data = batches()
    session = prunebench.sparsify(
        model, method, SPARSITY, optimizer=optimizer, total_steps=TOTAL, data=data, **options
    )
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        session.load_state_dict(state["session"])
        torch.set_rng_state(state["rng"])
    for step in steps:
        inputs, targets = data[step % STEPS_PER_EPOCH]
        loss = session.loss(inputs, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        session.step()
    return session, optimizer, scheduler


def harness_masks(method: str, model: nn.Module, **hparams) -> dict[str, torch.Tensor]:
    """The masks the harness's trainer ends with, from its public pieces: the method's session (as ``LearnMask``
    attaches it) or the gradual pruner (as ``PruneGradually`` builds it), trained by :class:`Trainer`."""
    spec = get_method(method)
    resolved = spec.resolve(hparams)
    data = ScoringData(batches())
    weights = prunable_weights(model)
    scope = spec.scopes[0]
    if spec.schedule == "gradual":
        pruner = functools.partial(live_masks, spec.build(resolved), model, prunable_weights)
        hook = GradualPruning(
            model,
            SPARSITY,
            spec.schedule_options(resolved),
            lambda s, alive: pruner(s, alive, scope, data, 0),
        )
    else:
        context = TrainingContext(EPOCHS, STEPS_PER_EPOCH, torch.device("cpu"), 0, 4, data)
        hook = spec.build(resolved).attach(model, weights, SPARSITY, scope, context)
    trainer = Trainer(model, Batches(batches()), RECIPE, EPOCHS, hooks=[hook])
    trainer.fit()
    return hook.finish(trainer.step) if spec.schedule == "gradual" else hook.finish(trainer).masks


def test_the_documented_example_trains_a_resnet_to_exactly_the_target():
    section = PAGE.read_text().split("## In your own training loop", 1)[1]
    source = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {"__name__": "documented_example"}
    exec(compile(source, "python-api.md", "exec"), namespace)
    model, final = namespace["model"], namespace["final"]
    weights = prunable_weights(model)
    total = sum(w.numel() for w in weights.values())
    assert sum(int((w != 0).sum()) for w in weights.values()) == keep_budget(total, 0.9)
    assert all(torch.equal(weights[name] != 0, mask) for name, mask in final.masks.items())
    assert not any("parametrizations" in name for name, _ in model.named_parameters())


@pytest.mark.parametrize(
    ("method", "hparams"),
    [("str", {}), ("gmp", {}), ("probmask", {}), ("probmask", {"grad_clip": 0.05}), ("rigl", {"delta_t": 3})],
)
def test_the_own_loops_masks_and_weights_are_the_harness_trainers(method, hparams):
    """ProbMask with a clipping that bites and RigL (no weight step at an update step) check that the method's
    work before the weights' step runs before it."""
    torch.manual_seed(5)
    harness_model = tiny_model()
    expected = harness_masks(method, harness_model, **hparams)
    torch.manual_seed(5)
    model = tiny_model()
    session, _, _ = own_loop(method, range(TOTAL), model, **hparams)
    final = session.finish()
    assert final.masks.keys() == expected.keys()
    assert all(torch.equal(final.masks[name], expected[name]) for name in expected)
    assert all(
        torch.equal(value, model.state_dict()[key]) for key, value in harness_model.state_dict().items()
    )


@pytest.mark.parametrize("method", ["str", "gmp", "probmask"])
def test_a_resumed_loop_gives_the_uninterrupted_loops_masks_and_weights(method):
    torch.manual_seed(3)
    model = tiny_model()
    session, _, _ = own_loop(method, range(TOTAL), model)
    uninterrupted = session.finish().masks
    weights = copy.deepcopy(model.state_dict())

    torch.manual_seed(3)
    first = tiny_model()
    session, optimizer, scheduler = own_loop(method, range(5), first)
    saved = io.BytesIO()
    torch.save(
        {
            "model": first.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "session": session.state_dict(),
            "rng": torch.get_rng_state(),
        },
        saved,
    )
    saved.seek(0)
    state = torch.load(saved, weights_only=False)
    resumed_model = tiny_model()
    resumed, _, _ = own_loop(method, range(5, TOTAL), resumed_model, state)
    masks = resumed.finish().masks
    assert all(torch.equal(masks[name], uninterrupted[name]) for name in uninterrupted)
    assert all(torch.equal(resumed_model.state_dict()[k], v) for k, v in weights.items())


def _served() -> list[str]:
    return sorted(
        spec.name for spec in all_methods() if spec.schedule in SCHEDULES and spec.track == "unstructured"
    )


@pytest.mark.parametrize("method", _served())
def test_finish_meets_the_exact_target_and_leaves_the_pruned_weights_at_zero(method):
    spec = get_method(method)
    scope = next((s for s in ("global", "learned") if s in spec.scopes), spec.scopes[0])
    torch.manual_seed(0)
    model = tiny_model()
    session, _, _ = own_loop(method, range(TOTAL), model, scope=scope)
    masks = session.finish().masks
    weights = prunable_weights(model)
    assert masks.keys() == weights.keys()
    total = sum(w.numel() for w in weights.values())
    kept = sum(int(mask.sum()) for mask in masks.values())
    nonzero = sum(int((w != 0).sum()) for w in weights.values())
    assert nonzero == kept
    if scope in ("global", "learned"):
        assert kept == keep_budget(total, SPARSITY)
    else:  # a layer-wise allocation: within one weight per layer
        assert abs(kept - keep_budget(total, SPARSITY)) <= len(weights)
    assert session.masks().keys() == masks.keys()


def test_the_current_masks_are_the_weights_the_network_computes_with():
    """Mid-way STR's masks are where its soft-thresholded weights are non-zero; gradual magnitude's hold the
    scheduled count after its first pruning steps."""
    torch.manual_seed(0)
    model = tiny_model()
    session, _, _ = own_loop("str", range(TOTAL // 2), model, s_init=-2.0)
    masks = session.masks()
    cutoffs = torch.sigmoid(session.sparsification.hooks[0].thresholds.detach())
    for index, name in enumerate(masks):  # STR keeps |W| > sigmoid(s_l) (Kusupati et al., Eq. 3)
        raw = model.get_submodule(name[: -len(".weight")]).parametrizations.weight.original.detach()
        assert torch.equal(masks[name], raw.abs() > cutoffs[index])
    assert 0 < sum(int(m.sum()) for m in masks.values()) < sum(m.numel() for m in masks.values())
    session, _, _ = own_loop("gmp", range(TOTAL // 2), tiny_model())
    kept = sum(int(m.sum()) for m in session.masks().values())
    assert kept == sum(int(m.sum()) for m in session.sparsification.hooks[0].masks.values())


def test_methods_and_loops_the_session_cannot_serve_are_refused_in_one_line():
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(UsageError, match="iterative.*rewinds"):
        prunebench.sparsify(model, "magnitude@iterative", 0.9, optimizer=optimizer, total_steps=4)
    with pytest.raises(UsageError, match="total_steps"):
        prunebench.sparsify(model, "str", 0.9, optimizer=optimizer, total_steps=0)
    session = prunebench.sparsify(model, "str", 0.9, optimizer=optimizer, total_steps=4)
    with pytest.raises(UsageError, match="after optimizer.step"):
        session.step()


def test_a_method_with_its_own_loss_refuses_a_step_whose_loss_it_did_not_compute():
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs, targets = batches()[0]
    session = prunebench.sparsify(model, "probmask", 0.9, optimizer=optimizer, total_steps=4, data=batches())
    session.loss(inputs, targets).backward()
    optimizer.step()
    session.step()
    with pytest.raises(UsageError, match="session.loss"):
        optimizer.step()
    with pytest.raises(UsageError, match="finish"):
        session.masks()
