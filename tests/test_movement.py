"""Movement pruning, hard and soft: straight-through gradient, scopes, schedules, exact end-to-end target."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from prunebench.core.errors import UsageError
from prunebench.datasets.memory import TensorLoader
from prunebench.methods import get_method
from prunebench.methods.movement import (
    HardMovementSession,
    ScoredMask,
    SoftMovementSession,
    flat_views,
    matrix_floor,
)
from prunebench.pruning.prunable import prunable_weights
from prunebench.run.recipe import OptimConfig
from prunebench.run.run_config import RunConfig
from prunebench.run.runner import execute
from prunebench.run.trainer import Trainer

SESSION = {
    "score_init": 0.0,
    "score_lr": 1e-2,
    "reference_steps": None,
    "initial_warmup": 0.1,
    "final_warmup": 0.2,
}


def two_layers() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))


def test_score_gradient_is_the_weight_gradient_times_the_weight() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(6, 4)
    inputs, targets = torch.randn(8, 6), torch.randint(0, 4, (8,))
    mask = torch.rand(4, 6) > 0.4
    weight = layer.weight.detach().clone()

    # Separate computation: the masked weight W' as a leaf, dL/dW' from autograd.
    masked = (weight * mask).requires_grad_()
    nn.functional.cross_entropy(nn.functional.linear(inputs, masked, layer.bias.detach()), targets).backward()
    expected_scores = masked.grad * weight
    expected_weight = masked.grad * mask

    parametrization = ScoredMask(torch.zeros_like(weight), mask.float())
    parametrize.register_parametrization(layer, "weight", parametrization)
    nn.functional.cross_entropy(layer(inputs), targets).backward()
    torch.testing.assert_close(parametrization.scores.grad, expected_scores)
    torch.testing.assert_close(layer.parametrizations.weight.original.grad, expected_weight)


def test_scores_are_trained_by_the_trainer_with_the_scaled_lr() -> None:
    model = two_layers()
    loader = TensorLoader(
        torch.randn(40, 4), torch.randint(0, 3, (40,)), 10, shuffle=False
    )  # 4 steps an epoch
    session = SoftMovementSession(
        model,
        prunable_weights(model),
        0.5,
        initial_threshold=0.0,
        final_threshold=0.1,
        final_lambda=1.0,
        **{**SESSION, "reference_steps": 80},
    )
    trainer = Trainer(model, loader, OptimConfig(schedule="constant"), 2, hooks=[session])
    assert not {id(p) for p in session.method_parameters()} & {id(p) for p in trainer.weight_parameters}
    (scores,) = trainer.group_optimizers  # the reference's Adam, built by the trainer
    assert isinstance(scores, torch.optim.Adam) and scores.defaults["betas"] == (0.9, 0.999)
    trainer.fit()
    assert scores.param_groups[0]["lr"] == pytest.approx(1e-2 * 80 / 8)  # score_lr * reference_steps / steps
    assert all(bool((s != 0).any()) for s in session.scores.values())


def test_soft_movement_finetunes_the_harness_share_of_the_epochs_after_the_pretraining() -> None:
    method = get_method("soft_movement").build()
    # round(available / 3): the fine-tuning epochs of the preset after the dense pre-training (mnist5k-lenet300: 7)
    assert [method.finetune_epochs(a) for a in (1, 2, 3, 5, 7, 40)] == [0, 1, 1, 2, 2, 13]
    assert get_method("movement").build().finetune_epochs(7) == 0  # hard movement does not fine-tune


def hand_scored(scope: str, sparsity: float) -> tuple[nn.Module, HardMovementSession]:
    model = two_layers()
    session = HardMovementSession(
        model, prunable_weights(model), sparsity, scope, global_floor=None, **SESSION
    )
    with torch.no_grad():
        session.scores["0.weight"].copy_(torch.arange(20.0).view(5, 4) + 100.0)  # all above layer 2's scores
        session.scores["2.weight"].copy_(
            -torch.arange(15.0).view(3, 5)
        )  # highest first: flat index 0, 1, ...
    session.update_masks(1.0)  # after the schedule's end: the final kept fraction
    return model, session


def test_uniform_scope_keeps_each_layers_own_count() -> None:
    _, session = hand_scored("uniform", sparsity=0.6)
    first, second = session.masks["0.weight"].mask, session.masks["2.weight"].mask
    assert int(first.sum()) == 8 and int(second.sum()) == 6  # 40% of 20 and of 15 (14 in all)
    assert first.flatten()[12:].all() and not first.flatten()[:12].any()  # the 8 largest scores of layer 1
    assert second.flatten()[:6].all() and not second.flatten()[6:].any()


def test_global_scope_uses_one_threshold_across_layers() -> None:
    _, session = hand_scored("global", sparsity=0.6)
    first, second = session.masks["0.weight"].mask, session.masks["2.weight"].mask
    assert (
        int(first.sum()) == 14 and int(second.sum()) == 0
    )  # round(35 * 0.4) = 14, all in the high-score layer
    assert first.flatten()[6:].all()


def test_global_floor_keeps_the_reference_minimum_of_every_matrix() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 10))  # 400 and 200 weights
    session = HardMovementSession(
        model, prunable_weights(model), 0.9, "global", global_floor=0.005, **SESSION
    )
    with torch.no_grad():
        session.scores["0.weight"].copy_(torch.arange(400.0).view(20, 20) + 1000.0)  # all above layer 2's
        session.scores["2.weight"].copy_(
            -torch.arange(200.0).view(10, 20)
        )  # highest first: flat index 0, 1, ...
    assert [matrix_floor(n, 0.005) for n in (199, 200, 400)] == [1, 2, 3]  # int(0.005 n) + 1
    session.update_masks(1.0)
    first, second = session.masks["0.weight"].mask.flatten(), session.masks["2.weight"].mask.flatten()
    # By hand: round(600 * 0.1) = 60 kept. Layer 2's floor is int(0.005 * 200) + 1 = 2 (its two highest scores,
    # flat indices 0 and 1); the other 58 are layer 1's highest (flat indices 342..399), above its floor of 3.
    assert second.nonzero().flatten().tolist() == [0, 1]
    assert first.nonzero().flatten().tolist() == list(range(342, 400))
    other = nn.Sequential(nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 10))
    without = HardMovementSession(other, prunable_weights(other), 0.9, "global", global_floor=None, **SESSION)
    with torch.no_grad():
        for name, scores in session.scores.items():
            without.scores[name].copy_(scores)
    without.update_masks(1.0)
    assert int(without.masks["2.weight"].mask.sum()) == 0  # no floor: one threshold empties layer 2
    final = session.finish(trainer=None)  # type: ignore[arg-type]
    assert torch.equal(final.masks["2.weight"].flatten(), second.bool())


def test_hard_schedule_is_the_cubic_formula() -> None:
    model = two_layers()
    session = HardMovementSession(
        model, prunable_weights(model), 0.9, "uniform", global_floor=None, **SESSION
    )
    final = 0.1
    for step in (0, 50, 100, 200, 450, 700, 799, 800, 900, 1000):
        p = step / 1000
        expected = (
            1.0 if p <= 0.1 else final if p >= 0.8 else final + (1 - final) * (1 - (p - 0.1) / 0.7) ** 3
        )
        assert session.keep_fraction(p) == pytest.approx(expected, abs=1e-12)


def test_soft_threshold_and_lambda_follow_the_reference_schedule() -> None:
    model = two_layers()
    session = SoftMovementSession(
        model,
        prunable_weights(model),
        0.5,
        initial_threshold=0.0,
        final_threshold=0.1,
        final_lambda=400.0,
        **SESSION,
    )
    for step in (0, 10, 30, 55, 80, 100):
        p = step / 100
        tau = 0.0 if p <= 0.1 else 0.1 if p >= 0.8 else 0.1 - 0.1 * (1 - (p - 0.1) / 0.7) ** 3
        session.update_masks(p)
        assert session.threshold(p) == pytest.approx(tau, abs=1e-12)
        assert session.regu_lambda == pytest.approx(400.0 * tau / 0.1, abs=1e-9)


def test_soft_penalty_and_exact_enforcement_with_floors() -> None:
    model = two_layers()
    weights = prunable_weights(model)
    session = SoftMovementSession(
        model, weights, 0.8, initial_threshold=0.0, final_threshold=0.1, final_lambda=400.0, **SESSION
    )
    with torch.no_grad():
        session.scores["0.weight"].fill_(-5.0)  # sigmoid < 0.1: pruned but for its floor of one weight
        session.scores["2.weight"].copy_(torch.linspace(3.0, -3.0, 15).view(3, 5))
    own = session.threshold_masks(0.1)
    assert int(own["0.weight"].sum()) == 1
    assert int(own["2.weight"].sum()) == int((torch.linspace(3.0, -3.0, 15) > math.log(0.1 / 0.9)).sum())
    session.regu_lambda = 2.0
    inputs, targets = torch.randn(3, 4), torch.tensor([0, 1, 2])
    penalty = (torch.sigmoid(torch.tensor(-5.0)) + torch.sigmoid(torch.linspace(3.0, -3.0, 15)).mean()) / 2
    loss = session.compute_loss(type("T", (), {"model": model})(), inputs, targets)
    torch.testing.assert_close(loss, nn.functional.cross_entropy(model(inputs), targets) + 2.0 * penalty)
    masks = session.exact_masks()
    assert sum(int(m.sum()) for m in masks.values()) == 7  # round(35 * 0.2)
    assert int(masks["0.weight"].sum()) == 1 and masks["2.weight"].flatten()[:6].all()


def test_finish_leaves_a_plain_module_with_masked_weights() -> None:
    model, session = hand_scored("uniform", sparsity=0.6)
    original = model[0].parametrizations.weight.original
    final = session.finish(trainer=None)  # type: ignore[arg-type]
    assert not parametrize.is_parametrized(model)
    assert model[0].weight is original and set(dict(model.named_parameters())) == {
        "0.weight",
        "0.bias",
        "2.weight",
        "2.bias",
    }
    for name, weight in prunable_weights(model).items():
        assert torch.equal(weight != 0, final.masks[name])
    assert final.method_sparsity == 0.6 and final.enforcement is None


@pytest.mark.parametrize(
    ("method", "scope"), [("movement", "uniform"), ("movement", "global"), ("soft_movement", "learned")]
)
def test_end_to_end_reaches_the_exact_target(method: str, scope: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    record = execute(
        RunConfig.from_preset("synthetic-tiny", method, scope, 0.9, 0), torch.device("cpu"), tmp_path
    )
    keep = round(record["prunable_weights"] * 0.1)
    assert record["prunable_nonzero"] == keep
    assert record["method_sparsity"] is not None
    if method == "soft_movement":
        assert record["enforcement"] and 0.0 <= record["method_sparsity"] < 1.0
        assert "own_layer_density" in record["method_details"]
    assert get_method(method).schedule == "during_training"


@pytest.mark.parametrize("scope", ["global", "uniform"])
def test_per_step_masks_are_the_exact_top_k_of_every_step(
    scope: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The masks a session writes at each step of a training run (in place, from the trackers of the opt-in
    :mod:`~prunebench.methods.fast_topk`) equal top_masks (torch.topk with the floors)."""
    monkeypatch.delenv("PRUNEBENCH_PLAIN", raising=False)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 40), nn.ReLU(), nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 3))
    weights = prunable_weights(model)
    session = HardMovementSession(model, weights, 0.97, scope, global_floor=0.005, **SESSION)
    inputs, targets = torch.randn(256, 20), torch.randint(0, 3, (256,))
    loader = TensorLoader(inputs, targets, 16, shuffle=True)
    trainer = Trainer(model, loader, OptimConfig(lr=0.05), 6, hooks=[session])
    compared, tracked = [], []
    for tracker in session.top_k_trackers.values():
        tracker.mask = lambda *a, _mask=tracker.mask, **k: tracked.append(_mask(*a, **k)) or tracked[-1]

    def checked(progress: float) -> None:
        HardMovementSession.update_masks(session, progress)
        keep = session.keep_fraction(progress)
        if keep < 1.0:
            exact = session.top_masks(1.0 - keep)
            assert all(torch.equal(session.masks[n].mask, exact[n].float()) for n in exact)
            compared.append(progress)

    session.update_masks = checked
    trainer.fit()
    assert len(compared) > 0.8 * trainer.total_steps
    assert sum(tracked) > 0.8 * len(tracked)  # written in place by the trackers, not by torch.topk


@pytest.mark.parametrize("scope", ["global", "uniform"])
def test_tied_scores_are_selected_by_top_k(scope: str) -> None:
    """All scores at their initial 0 tie everywhere: the trackers find no unique top-k and the masks written are
    torch.topk's (top_masks), with exactly the kept count."""
    model = nn.Sequential(nn.Linear(20, 40), nn.ReLU(), nn.Linear(40, 3))
    session = HardMovementSession(model, prunable_weights(model), 0.9, scope, global_floor=0.005, **SESSION)
    session.write_step_masks(0.5)
    exact = session.top_masks(0.5)
    assert all(torch.equal(session.masks[n].mask, exact[n].float()) for n in exact)
    assert int(session.flat_mask.sum()) == 460  # half of the 800 + 120 weights (uniform: 400 + 60)


def test_flat_views_are_the_weights_parts_of_one_vector() -> None:
    weights = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    flat, parts = flat_views(weights, 0.5)
    assert flat.shape == (10,) and torch.equal(flat, torch.full((10,), 0.5))
    assert parts["a"].shape == (2, 3) and parts["b"].shape == (4,)
    parts["b"][1] = 7.0  # a view: writing a layer's part writes the vector
    assert flat[7] == 7.0
    with pytest.raises(
        UsageError, match=r"one dtype on one device, found torch.bfloat16 on cpu, torch.float32 on cpu"
    ):
        flat_views({"a": torch.zeros(3), "b": torch.zeros(3, dtype=torch.bfloat16)}, 0.0)
