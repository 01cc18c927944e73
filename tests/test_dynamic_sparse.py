"""SET and RigL: exact counts at every update in every scope, the cosine drop fraction, RigL's regrowth on a
hand-built case, the optimizer state of dropped and regrown weights, resume between updates, run identity."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from prunebench.core.errors import UsageError
from prunebench.datasets.memory import TensorLoader
from prunebench.grid.grid_choices import parse_methods
from prunebench.methods import get_method
from prunebench.methods.base import ScoringData, TrainingContext
from prunebench.methods.dynamic_sparse import (
    DynamicSparseSession,
    RigLSession,
    UpdateSchedule,
    drop_and_grow,
)
from prunebench.pruning.allocation import keep_budget, layer_keep_counts
from prunebench.pruning.prunable import prunable_weights
from prunebench.run import method_contract as contract
from prunebench.run.recipe import OptimConfig
from prunebench.run.run_config import RunConfig
from prunebench.run.trainer import Trainer, TrainHook

SCOPES = ("global", "uniform", "uniform_plus", "erk")
METHODS = ("set", "rigl")


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(20, 40),
        nn.ReLU(),
        nn.Linear(40, 30),
        nn.ReLU(),
        nn.Linear(30, 16),
        nn.ReLU(),
        nn.Linear(16, 3),
    )


def context() -> TrainingContext:
    data = ScoringData([(torch.randn(4, 20), torch.randint(0, 3, (4,)))], num_classes=3)
    return TrainingContext(
        epochs=1, steps_per_epoch=1, device=torch.device("cpu"), seed=0, num_classes=3, train_data=data
    )


class Zeroed(TrainHook):
    """After every optimizer step (the session's re-zeroing done): the weights outside the session's masks are 0."""

    def __init__(self, session: DynamicSparseSession) -> None:
        self.session, self.steps = session, 0

    def after_step(self, trainer: Trainer) -> None:
        assert all(bool((w[~self.session.masks[n]] == 0).all()) for n, w in self.session.weights.items())
        self.steps += 1


def attached(
    method: str, scope: str, sparsity: float = 0.8, **hparams
) -> tuple[nn.Module, DynamicSparseSession]:
    model = mlp()
    session = (
        get_method(method).build(hparams).attach(model, prunable_weights(model), sparsity, scope, context())
    )
    return model, session


def trained(
    method: str, scope: str, checked, epochs: int = 4, **hparams
) -> tuple[DynamicSparseSession, Trainer]:
    """A session trained on random data (16 steps an epoch), ``checked(session, trainer)`` run after every update."""
    model, session = attached(method, scope, **hparams)
    update = session.update

    def update_and_check(trainer, fraction, step):
        update(trainer, fraction, step)
        checked(session, trainer)

    session.update = update_and_check
    torch.manual_seed(1)
    loader = TensorLoader(torch.randn(256, 20), torch.randint(0, 3, (256,)), 16, shuffle=True)
    zeroed = Zeroed(session)
    trainer = Trainer(model, loader, OptimConfig(lr=0.05, momentum=0.9), epochs, hooks=[session, zeroed])
    trainer.fit()
    assert zeroed.steps == trainer.total_steps
    return session, trainer


# The schedule ------------------------------------------------------------------------------------------------------
def test_the_drop_fraction_is_the_cosine_from_alpha_to_zero_at_the_update_steps():
    schedule = UpdateSchedule(delta_t=10, alpha=0.3, end=95)
    steps = [t for t in range(200) if schedule.drop_fraction(t) is not None]
    assert steps == list(range(0, 95, 10))  # from step 0, every delta_t steps, strictly before T_end
    expected = (
        0.3 / 2 * (1 + np.cos(np.pi * np.array(steps) / 95))
    )  # the paper's f(t), computed independently
    np.testing.assert_allclose([schedule.drop_fraction(t) for t in steps], expected, rtol=1e-12)
    assert schedule.drop_fraction(0) == pytest.approx(0.3)
    assert UpdateSchedule(10, 0.3, 100).drop_fraction(50) == pytest.approx(0.15)  # half-way: alpha / 2


@pytest.mark.parametrize("scope", ["uniform", "global"])
def test_an_update_drops_floor_f_n_of_the_active_weights_and_grows_as_many(scope):
    torch.manual_seed(0)
    masks = {"a": torch.rand(8, 10) < 0.3, "b": torch.rand(5, 6) < 0.5}
    drop = {n: torch.rand(m.shape) + 0.1 for n, m in masks.items()}
    grow = {n: (~m).float() for n, m in masks.items()}  # every inactive weight above every just-dropped one
    new = drop_and_grow(masks, drop, grow, 0.37, scope)
    groups = [["a", "b"]] if scope == "global" else [["a"], ["b"]]
    for group in groups:
        active = sum(int(masks[n].sum()) for n in group)
        dropped = sum(int((masks[n] & ~new[n]).sum()) for n in group)
        grown = sum(int((new[n] & ~masks[n]).sum()) for n in group)
        assert dropped == grown == math.floor(0.37 * active)
        assert sum(int(new[n].sum()) for n in group) == active
        for name in group:  # the dropped are the smallest scores among the active (of the group)
            survivors = drop[name][masks[name] & new[name]]
            gone = torch.cat([drop[n][masks[n] & ~new[n]] for n in group])
            assert survivors.numel() == 0 or gone.numel() == 0 or bool(survivors.min() > gone.max())


# Exact counts at every update, in every scope --------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("scope", SCOPES)
def test_every_update_keeps_the_scopes_exact_count(method, scope, one_thread):
    def exact(session, trainer):
        masks = session.masks
        kept = {n: int(m.sum()) for n, m in masks.items()}
        if scope == "global":
            assert sum(kept.values()) == keep_budget(sum(m.numel() for m in masks.values()), 0.8)
        else:
            assert kept == layer_keep_counts({n: m.shape for n, m in masks.items()}, 0.8, scope)
        assert all(bool((w[~masks[n]] == 0).all()) for n, w in session.weights.items())

    session, trainer = trained(method, scope, exact, delta_t=5)  # 64 steps, T_end = 48
    assert session.history["steps"] == list(range(0, 48, 5))
    assert sum(session.history["regrown"]) > 0  # the mask did move
    final = session.finish(trainer)
    exact(session, trainer)
    assert final.details["update_steps"] == list(range(0, 48, 5))
    assert all(len(d) == 10 for d in final.details["layer_density"].values())
    assert final.details["dense_gradient_steps"] == (10 if method == "rigl" else 0)


def test_the_global_scope_moves_the_layer_densities_and_keeps_the_total(one_thread):
    session, _ = trained("rigl", "global", lambda s, t: None, delta_t=5)
    densities = session.history["density"]
    sizes = {n: w.numel() for n, w in session.weights.items()}
    assert any(len(set(d)) > 1 for d in densities.values())  # redistributed across layers
    for index in range(len(session.history["steps"])):
        kept = sum(densities[n][index] * sizes[n] for n in sizes)
        assert kept == pytest.approx(
            keep_budget(sum(sizes.values()), 0.8), abs=len(sizes)
        )  # rounded densities


# RigL's regrowth ------------------------------------------------------------------------------------------------------
def test_rigl_regrows_the_largest_gradients_among_the_weights_not_kept():
    # Layer of 2 x 4: active at flat 0, 1, 2, 3 (|w| 0.5, 0.1, 0.4, 0.2); f = 0.5 drops 2: flat 1 and 3.
    mask = torch.tensor([[True, True, True, True], [False, False, False, False]])
    weight = torch.tensor([[0.5, -0.1, 0.4, 0.2], [0.0, 0.0, 0.0, 0.0]])
    grad = torch.tensor([[9.0, 0.3, 8.0, 0.7], [0.2, -0.9, 0.05, 0.6]])
    new = drop_and_grow({"w": mask}, {"w": weight.abs()}, {"w": grad.abs()}, 0.5, "uniform")["w"]
    # Not kept: flat 1, 3 (just dropped), 4..7 (inactive); largest |grad| there: flat 5 (0.9), flat 3 (0.7).
    expected = torch.tensor([[True, False, True, True], [False, True, False, False]])
    assert torch.equal(new, expected)


def test_rigl_reads_the_steps_gradient_and_takes_no_weight_step_at_an_update():
    model, session = attached("rigl", "uniform", 0.5)
    loader = TensorLoader(torch.randn(16, 20), torch.randint(0, 3, (16,)), 16, shuffle=False)
    trainer = Trainer(model, loader, OptimConfig(lr=0.1, momentum=0.9), 10, hooks=[session])  # T_end = 7
    session.on_train_start(trainer)
    inputs, targets = next(iter(loader))
    nn.functional.cross_entropy(model(inputs), targets).backward()
    grads = {n: w.grad.clone() for n, w in session.weights.items()}
    before = {n: w.detach().clone() for n, w in session.weights.items()}
    old = {n: m.clone() for n, m in session.masks.items()}
    session.before_step(trainer)  # step 0 is an update step, f = alpha = 0.3
    assert all(
        p.grad is None for p in model.parameters()
    )  # so the optimizer's step leaves every weight alone
    for name, weight in session.weights.items():
        expected = _reference_update(old[name], before[name], grads[name], 0.3)
        assert torch.equal(session.masks[name], expected)
        assert torch.equal(weight.detach(), before[name] * expected)  # kept as they were, grown at zero


def _reference_update(
    mask: torch.Tensor, weight: torch.Tensor, grad: torch.Tensor, fraction: float
) -> torch.Tensor:
    """RigL's update of one layer written out with NumPy sorts: keep the n - floor(f n) largest |w| of the n
    active, then grow the floor(f n) largest |grad| of the rest."""
    m, w, g = mask.numpy().reshape(-1), weight.numpy().reshape(-1), grad.numpy().reshape(-1)
    active = np.flatnonzero(m)
    dropped = math.floor(fraction * active.size)
    kept = active[np.argsort(-np.abs(w[active]), kind="stable")[: active.size - dropped]]
    rest = np.setdiff1d(np.arange(m.size), kept)
    grown = rest[np.argsort(-np.abs(g[rest]), kind="stable")[:dropped]]
    new = np.zeros(m.size, bool)
    new[np.concatenate([kept, grown])] = True
    return torch.from_numpy(new.reshape(mask.shape))


# Optimizer state --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_dropped_and_regrown_weights_leave_with_zero_momentum_kept_ones_keep_theirs(method):
    model, session = attached(method, "uniform", 0.5)
    loader = TensorLoader(torch.randn(16, 20), torch.randint(0, 3, (16,)), 16, shuffle=False)
    trainer = Trainer(model, loader, OptimConfig(lr=0.1, momentum=0.9), 1, hooks=[session])
    session.on_train_start(trainer)
    inputs, targets = next(iter(loader))
    nn.functional.cross_entropy(model(inputs), targets).backward()
    trainer.optimizer.step()  # momentum of every weight, the inactive ones' included (dense gradient)
    DynamicSparseSession.after_step(session, trainer)  # the re-zeroing after each step
    old = {n: m.clone() for n, m in session.masks.items()}
    momentum = {n: trainer.optimizer.state[w]["momentum_buffer"].clone() for n, w in session.weights.items()}
    assert all(bool((momentum[n][~old[n]] != 0).any()) for n in old)
    session.update(trainer, 0.3, 0)
    for name, weight in session.weights.items():
        buffer = trainer.optimizer.state[weight]["momentum_buffer"]
        kept, new = old[name] & session.masks[name], session.masks[name]
        assert int((old[name] & ~new).sum()) > 0 and int((new & ~old[name]).sum()) > 0
        assert bool((buffer[~kept] == 0).all())  # dropped, regrown and inactive
        assert torch.equal(buffer[kept], momentum[name][kept])
        assert bool((weight.detach()[~new] == 0).all()) and bool(
            (weight.detach()[new & ~old[name]] == 0).all()
        )


def test_a_kept_weight_still_at_zero_at_the_end_gets_its_initial_value():
    model, session = attached("set", "uniform", 0.5)
    initial = {n: w.detach().clone() for n, w in session.weights.items()}
    name = next(iter(session.weights))
    weight, mask = session.weights[name], session.masks[name]
    stuck = mask & (torch.arange(mask.numel()).view_as(mask) % 7 == 0)
    with torch.no_grad():
        weight.mul_(mask).masked_fill_(stuck, 0.0)
    session.on_train_end(None)
    session.on_train_end(None)  # again, as a resumed finished phase does: nothing more
    assert torch.equal(weight.detach()[stuck], initial[name][stuck])
    final = session.finish(None)
    total = sum(w.numel() for w in session.weights.values())
    assert final.details["revived"] == int(stuck.sum())
    assert final.method_sparsity == pytest.approx(0.5 + int(stuck.sum()) / total, abs=1 / total)
    assert f"{int(stuck.sum())} kept weights" in final.enforcement


# Resume between two update steps, records, identity -------------------------------------------------------------
@pytest.mark.parametrize(("method", "scope"), [("set", "global"), ("rigl", "erk")])
def test_a_run_resumed_between_two_update_steps_is_bit_identical(method, scope, tmp_path: Path, one_thread):
    config = contract.contract_config(method, scope, {"delta_t": ["3"]})
    reference = contract.run(config, tmp_path / "reference")
    steps = reference["method_details"]["update_steps"]
    assert steps == [0, 3, 6, 9]  # synthetic-tiny: 8 steps an epoch, 2 epochs, T_end = 12
    assert contract.stop_points(["learn"] * 16) == [8]  # the stop falls after step 8: between updates 6 and 9
    assert contract.resume_problems(config, tmp_path, reference) == []
    assert contract.target_problems(config, reference) == []


@pytest.mark.parametrize("method", METHODS)
def test_every_hyperparameter_changes_the_run_id(method):
    base = RunConfig.from_preset("synthetic-tiny", method, "erk", 0.9, 0)
    changed = {"delta_t": 100, "alpha": 0.5, "t_end": 0.5, "init_mask": "magnitude"}
    assert set(changed) == set(get_method(method).hparams)
    ids = {base.run_id}
    for name, value in changed.items():
        config = RunConfig.from_preset("synthetic-tiny", method, "erk", 0.9, 0, settings={name: value})
        assert config.hparams[name] == value
        ids.add(config.run_id)
    assert len(ids) == 1 + len(changed)


def test_set_and_rigl_are_during_training_methods_in_every_scope_and_in_methods_all():
    for method in METHODS:
        spec = get_method(method)
        assert spec.schedule == "during_training" and spec.scopes == SCOPES
    assert {"set", "rigl"} <= {spec.name for spec in parse_methods("all")}


@pytest.mark.parametrize(
    ("name", "value"), [("delta_t", 0), ("alpha", 0.0), ("alpha", 1.5), ("t_end", 0.0), ("t_end", 1.2)]
)
def test_a_hyperparameter_outside_its_range_is_a_usage_error(name, value):
    with pytest.raises(UsageError, match=name):
        get_method("rigl").build({name: value})


def test_set_and_rigl_of_one_seed_start_from_the_same_random_mask():
    _, rigl = attached("rigl", "erk")
    _, set_session = attached("set", "erk")
    assert all(torch.equal(rigl.masks[n], set_session.masks[n]) for n in rigl.masks)
    assert isinstance(rigl, RigLSession)
    _, magnitude = attached("rigl", "erk", init_mask="magnitude")
    assert any(not torch.equal(rigl.masks[n], magnitude.masks[n]) for n in rigl.masks)
