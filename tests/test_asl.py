"""ASL (Retsinas et al. 2020): the thresholded forward and its straight-through gradients against the official
composition and a hand formula, the budget loss in both modes against a hand computation, the session's step, the
exact target in both scopes, determinism and the run identity."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

from prunebench.datasets.memory import TensorLoader
from prunebench.grid.experiment import Experiment
from prunebench.methods.asl import (
    ASL,
    EPS,
    SparseWeight,
    budget_loss,
    initial_r,
    sparse_weight,
)
from prunebench.methods.base import ScoringData, TrainingContext
from prunebench.methods.method_registry import get_method
from prunebench.pruning.prunable import prunable_weights
from prunebench.run.recipe import OptimConfig
from prunebench.run.run_config import RunConfig
from prunebench.run.runner import execute
from prunebench.run.trainer import Trainer, TrainHook

CPU = torch.device("cpu")


def context() -> TrainingContext:
    return TrainingContext(
        epochs=1, steps_per_epoch=10, device=CPU, seed=0, num_classes=3, train_data=ScoringData([])
    )


def fake_trainer():
    """A trainer where the session reads none of it (its loss and final masks)."""
    return SimpleNamespace(progress=0.0)


def official_sparse_weight(weight: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """The official ``SparseFc.forward`` weight: ``b * STE(hardshrink(W / b, 1))``, STE = identity gradient."""
    b = torch.clamp(r, 0, 5) * weight.std().detach() + 1e-6
    normalized = weight / b
    shrunk = normalized + (F.hardshrink(normalized, 1.0) - normalized).detach()
    return b * shrunk


def test_forward_prunes_below_r_standard_deviations_on_a_hand_made_tensor():
    weight = torch.tensor([[-2.0, -1.0, 0.0, 1.0, 2.0]])  # mean 0, unbiased std sqrt(10 / 4) = 1.5811
    assert torch.equal(sparse_weight(weight, torch.tensor(1.0)), torch.tensor([[-2.0, 0.0, 0.0, 0.0, 2.0]]))
    assert torch.equal(sparse_weight(weight, torch.tensor(0.5)), torch.tensor([[-2.0, -1.0, 0.0, 1.0, 2.0]]))
    # r is clamped to [0, 5]: a negative r prunes nothing but exact zeros, a large one prunes everything.
    assert torch.equal(sparse_weight(weight, torch.tensor(-3.0)), weight)
    assert torch.equal(sparse_weight(weight, torch.tensor(9.0)), torch.zeros_like(weight))

    layer = nn.Linear(5, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    parametrize.register_parametrization(
        layer, "weight", SparseWeight(nn.Parameter(torch.tensor([0.2, 1.0])), 1)
    )
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
    assert torch.allclose(layer(x), torch.tensor([[-2.0 + 10.0]]))


@pytest.mark.parametrize("r_value", [0.3, 1.1, 6.0])
def test_gradients_equal_the_official_composition_and_the_hand_formula(r_value):
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(4, 6, dtype=torch.float64, generator=generator)
    inputs = torch.randn(5, 6, dtype=torch.float64, generator=generator)
    targets = torch.randn(5, 4, dtype=torch.float64, generator=generator)

    def loss_of(effective: torch.Tensor) -> torch.Tensor:
        return ((inputs @ effective.T - targets) ** 2).sum()

    ours_w = weight.clone().requires_grad_(True)
    ours_r = torch.tensor(r_value, dtype=torch.float64, requires_grad=True)
    effective = sparse_weight(ours_w, ours_r)
    loss_of(effective).backward()
    ref_w = weight.clone().requires_grad_(True)
    ref_r = torch.tensor(r_value, dtype=torch.float64, requires_grad=True)
    reference = official_sparse_weight(ref_w, ref_r)
    loss_of(reference).backward()

    torch.testing.assert_close(effective, reference)
    torch.testing.assert_close(ours_w.grad, ref_w.grad)
    torch.testing.assert_close(ours_r.grad, ref_r.grad)

    # By hand: dL/dW = dL/dW' for every weight (straight through, pruned ones included);
    # dL/dr = std(W) * -sum_{|W| <= b} dL/dW' * W / b inside [0, 5], 0 outside.
    out = effective.detach().requires_grad_(True)
    loss_of(out).backward()
    torch.testing.assert_close(ours_w.grad, out.grad)
    std = weight.std()
    b = min(r_value, 5.0) * std + EPS
    pruned = weight.abs() <= b
    assert 0 < int(pruned.sum()) < weight.numel() or r_value > 5
    expected_r = 0.0 if r_value > 5 else float(std * -(out.grad * weight)[pruned].sum() / b)
    assert float(ours_r.grad) == pytest.approx(expected_r, rel=1e-9, abs=1e-12)


def test_budget_loss_equals_a_hand_computation_in_both_modes():
    r = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    sizes = torch.tensor([100.0, 300.0], dtype=torch.float64)
    # Gaussian densities 1 - erf(r / sqrt 2): 0.3173105 (r = 1) and 0.0455003 (r = 2).
    d1, d2 = 1 - math.erf(1 / math.sqrt(2)), 1 - math.erf(2 / math.sqrt(2))
    assert d1 == pytest.approx(0.3173105, abs=1e-7) and d2 == pytest.approx(0.0455003, abs=1e-7)
    network = (100 * d1 + 300 * d2) / 400  # 0.1134528
    assert float(budget_loss(r.detach(), sizes, 0.9, "global")) == pytest.approx(
        (network - 0.1) ** 2, rel=1e-12
    )
    per_layer = ((d1 - 0.1) ** 2 + (d2 - 0.1) ** 2) / 2
    assert float(budget_loss(r.detach(), sizes, 0.9, "uniform")) == pytest.approx(per_layer, rel=1e-12)

    # Gradients: d(1 - erf(r / sqrt 2))/dr = -sqrt(2 / pi) exp(-r^2 / 2).
    slope = [-math.sqrt(2 / math.pi) * math.exp(-v * v / 2) for v in (1.0, 2.0)]
    (grad,) = torch.autograd.grad(budget_loss(r, sizes, 0.9, "global"), r)
    expected = [2 * (network - 0.1) * n / 400 * s for n, s in zip((100, 300), slope, strict=True)]
    assert grad.tolist() == pytest.approx(expected, rel=1e-12)
    (grad,) = torch.autograd.grad(budget_loss(r, sizes, 0.9, "uniform"), r)
    expected = [2 * (d - 0.1) / 2 * s for d, s in zip((d1, d2), slope, strict=True)]
    assert grad.tolist() == pytest.approx(expected, rel=1e-12)


def test_initial_r_is_sixty_percent_of_the_target_under_the_gaussian_estimate():
    assert math.erf(initial_r(0.9, 0.6) / math.sqrt(2)) == pytest.approx(0.54, abs=1e-12)
    assert initial_r(0.99, 1.0) == pytest.approx(2.5758293, abs=1e-6)  # the two-sided 99% normal quantile


def two_layer_model() -> tuple[nn.Module, dict[str, nn.Parameter]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 12), nn.ReLU(), nn.Linear(12, 4))
    return model, prunable_weights(model)


def test_session_recentres_steps_r_and_adds_the_budget_loss():
    model, weights = two_layer_model()
    with torch.no_grad():
        for w in weights.values():
            w.add_(0.3)
    method = ASL(loss_weight=2.0, r_lr_ratio=0.05, reference_steps=100)
    session = method.attach(model, weights, 0.8, "global", context())
    assert all(abs(float(w.detach().mean())) < 1e-6 for w in weights.values())  # re-centred on attach
    assert session.r.tolist() == pytest.approx([initial_r(0.8, 0.6)] * 2)

    inputs, targets = torch.randn(6, 10), torch.arange(6) % 4
    loss = session.compute_loss(fake_trainer(), inputs, targets)
    expected = F.cross_entropy(model(inputs), targets) + 2.0 * budget_loss(
        session.r, session.sizes, 0.8, "global"
    )
    torch.testing.assert_close(loss, expected)

    seen = {}

    class Spy(TrainHook):
        def before_step(self, trainer: Trainer) -> None:
            seen["grad"], seen["r"] = session.r.grad.clone(), session.r.detach().clone()
            with torch.no_grad():  # moved off centre before the step: the session re-centres after it
                for w in weights.values():
                    w.add_(1.0)

    loader = TensorLoader(inputs, targets, 6, shuffle=False)  # one step an epoch
    optim = OptimConfig(lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="constant")
    Trainer(model, loader, optim, 40, hooks=[Spy(), session], stop=1).fit()  # the first of 40 steps
    # First SGD step with momentum: r - lr * ratio * (reference_steps / steps) * grad, no weight decay.
    torch.testing.assert_close(session.r.detach(), seen["r"] - 0.1 * 0.05 * (100 / 40) * seen["grad"])
    assert all(abs(float(w.detach().mean())) < 1e-6 for w in weights.values())


def test_the_r_follow_the_weights_momentum_and_learning_rate_schedule():
    """Over a run, the r_l take torch.optim.SGD's steps at ratio * (reference_steps / steps) of the weights' current
    rate, with their momentum and Nesterov setting: a reference SGD fed the same gradients."""
    model, weights = two_layer_model()
    session = ASL(r_lr_ratio=0.5, reference_steps=12).attach(model, weights, 0.8, "uniform", context())
    reference = nn.Parameter(session.r.detach().clone())
    optimizer = torch.optim.SGD([reference], lr=0.0, momentum=0.9, nesterov=True)

    class Reference(TrainHook):
        def before_step(self, trainer: Trainer) -> None:
            reference.grad = session.r.grad.clone()
            optimizer.param_groups[0]["lr"] = 0.5 * (12 / 24) * trainer.lr
            optimizer.step()

        def after_step(self, trainer: Trainer) -> None:
            torch.testing.assert_close(session.r.detach(), reference.detach(), rtol=0, atol=0)

    loader = TensorLoader(torch.randn(48, 10), torch.arange(48) % 4, 8, shuffle=True)  # 6 steps an epoch
    optim = OptimConfig(lr=0.1, momentum=0.9, nesterov=True, schedule="cosine")
    Trainer(model, loader, optim, 4, hooks=[Reference(), session]).fit()
    assert not torch.equal(session.r.detach(), torch.full((2,), initial_r(0.8, 0.6)))


@pytest.mark.parametrize("scope", ["global", "uniform"])
@pytest.mark.parametrize("sparsity", [0.3, 0.7, 0.95])
def test_finish_reaches_exactly_the_target_and_records_its_own_sparsity(scope, sparsity):
    model, weights = two_layer_model()
    session = ASL().attach(model, weights, sparsity, scope, context())
    with torch.no_grad():
        session.r.copy_(torch.tensor([1.0, 0.4]))
    raw = {name: w.detach().clone() for name, w in weights.items()}
    thresholds = [1.0 * raw["0.weight"].std() + EPS, 0.4 * raw["2.weight"].std() + EPS]
    own = sum(int((w.abs() <= b).sum()) for w, b in zip(raw.values(), thresholds, strict=True)) / 168
    final = session.finish(fake_trainer())

    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    params = dict(model.named_parameters())
    keep = round(168 * (1 - sparsity))
    assert sum(int((params[n] != 0).sum()) for n in raw) == keep
    assert final.method_sparsity == pytest.approx(own)
    for name, mask in final.masks.items():
        assert torch.equal(params[name], raw[name] * mask)  # survivors keep their values
    if scope == "uniform":
        for name, mask in final.masks.items():
            assert int(mask.sum()) == round(raw[name].numel() * (1 - sparsity))
            kept, dropped = raw[name].abs()[mask], raw[name].abs()[~mask]
            assert kept.min() >= dropped.max()
    else:
        # One common shift delta of r (in standard deviations): survivors are |W| > (r_l + delta) std_l.
        delta = final.details["delta"]
        for (name, w), r in zip(raw.items(), (1.0, 0.4), strict=True):
            rule = (w.abs() - (r * w.std() + EPS)) / w.std() > delta
            assert torch.equal(final.masks[name], rule)
        assert (delta > 0) == (sparsity > own)


def test_global_scope_keeps_asl_own_mask_when_it_meets_the_budget():
    model, weights = two_layer_model()
    ASL().attach(model, weights, 0.5, "global", context()).release()  # re-centres the weights
    raw = {name: w.detach().clone() for name, w in weights.items()}
    own_masks = {name: w.abs() > 0.8 * w.std() + EPS for name, w in raw.items()}
    own = 1 - sum(int(m.sum()) for m in own_masks.values()) / 168
    session = ASL().attach(model, weights, own, "global", context())
    with torch.no_grad():
        session.r.fill_(0.8)
    final = session.finish(fake_trainer())
    assert final.method_sparsity == pytest.approx(own)
    for name, mask in final.masks.items():
        assert torch.equal(mask, own_masks[name])


def test_unsupported_scope_and_values_are_refused():
    model, weights = two_layer_model()
    with pytest.raises(Exception, match="global, uniform"):
        ASL().attach(model, weights, 0.9, "learned", context())
    with pytest.raises(ValueError, match="init_fraction"):
        ASL(init_fraction=1.5)


@pytest.fixture(scope="module")
def tiny_records(tmp_path_factory) -> dict[str, dict]:
    """One end-to-end run on synthetic-tiny per scope, and the global one again (same seed)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("asl")
    runs = {}
    for key, scope in (("global", "global"), ("uniform", "uniform"), ("again", "global")):
        config = RunConfig.from_preset("synthetic-tiny", "asl", scope, 0.9, seed=0)
        runs[key] = execute(config, CPU, out / key)
    torch.set_num_threads(threads)
    return runs


@pytest.mark.parametrize("scope", ["global", "uniform"])
def test_end_to_end_ends_at_the_exact_target(tiny_records, scope):
    record = tiny_records[scope]
    assert record["status"] == "ok"
    assert record["prunable_nonzero"] == round(record["prunable_weights"] * 0.1)
    assert 0.0 < record["method_sparsity"] < 1.0
    assert record["enforcement"] and record["method_details"]["r"]
    assert record["epochs"] == {"budget": 4, "learn": 3, "finetune": 1}
    assert "fine-tuned" in record["enforcement"]
    if scope == "uniform":
        for layer in record["layers"]:
            assert abs(layer["nonzero"] - round(layer["size"] * 0.1)) <= 1


def test_a_seed_fixes_the_result(tiny_records):
    first, again = tiny_records["global"], tiny_records["again"]
    for key in ("top1", "loss", "method_sparsity", "method_details", "prunable_nonzero"):
        assert first[key] == again[key], key


def test_hyperparameters_scope_and_version_are_in_the_identity():
    spec = get_method("asl")
    assert spec.schedule == "during_training" and spec.scopes == ("global", "uniform")
    base = RunConfig.from_preset("synthetic-tiny", "asl", "global", 0.9, 0)
    assert base.identity["method"]["versions"] == {"asl": 1}
    assert base.hparams == {
        "loss_weight": 10.0,
        "r_lr_ratio": 0.01,
        "init_fraction": 0.6,
        "reference_steps": 23460,
        "finetune_fraction": 0.2,
    }
    changed = RunConfig.from_preset("synthetic-tiny", "asl", "global", 0.9, 0, settings={"loss_weight": 5})
    assert changed.hparams["loss_weight"] == 5.0 and changed.variant == "loss_weight=5"
    uniform = RunConfig.from_preset("synthetic-tiny", "asl", "uniform", 0.9, 0)
    assert len({base.run_id, changed.run_id, uniform.run_id}) == 3


def test_the_default_grid_runs_asl_in_both_scopes():
    configs = Experiment(sparsity=[0.9], seeds=1).configs()
    assert {c.scope for c in configs if c.method == "asl"} == {"global", "uniform"}
    assert all(c.preset == "mnist5k-lenet300" for c in configs)
