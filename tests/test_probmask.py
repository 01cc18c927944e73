"""ProbMask: the projection, the relaxation, the schedules, the learned allocation and an end-to-end run.

Expectations are computed independently of the module (closed forms, scipy, finite differences), not by calling it
twice.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from torch import nn
from torch.nn.utils import parametrize

from prunebench.datasets.memory import TensorLoader
from prunebench.methods.base import ScoringData, TrainingContext
from prunebench.methods.method_registry import get_method
from prunebench.methods.probmask import (
    ProbMask,
    RelaxedMasks,
    Scratch,
    logistic_noise,
    project_to_budget,
    relaxed_mask,
    to_exact_count,
)
from prunebench.pruning.prunable import prunable_weights
from prunebench.run.run_config import RunConfig
from prunebench.run.runner import execute
from prunebench.run.trainer import Trainer, TrainHook
from prunebench.zoo.presets import get_preset

CPU = torch.device("cpu")


def exact_projection(s: np.ndarray, k: float) -> np.ndarray:
    """Projection onto {0 <= x <= 1, sum(x) <= k} by the sorted breakpoints of g(v) = sum(clip(s - v, 0, 1)).

    g is piecewise linear and non-increasing with kinks at s_i - 1 and s_i: find the two consecutive kinks that
    bracket g = k and interpolate linearly (float64, no iteration).
    """
    s = np.asarray(s, dtype=np.float64)
    if np.clip(s, 0.0, 1.0).sum() <= k:
        return np.clip(s, 0.0, 1.0)
    knots = np.unique(np.concatenate([[0.0], s - 1.0, s]))
    knots = knots[knots >= 0.0]
    g = np.array([np.clip(s - v, 0.0, 1.0).sum() for v in knots])
    j = int(np.argmax(g <= k))
    a, b = knots[j - 1], knots[j]
    v = a + (g[j - 1] - k) * (b - a) / (g[j - 1] - g[j])
    return np.clip(s - v, 0.0, 1.0)


# Exactness: every entry within `entry_tol` of the float64 closed form (the bisection runs to the working precision;
# observed errors are 1e-7 in float32, 1e-16 in float64), and the budget met within `sum_tol` (float32 sums of up to
# 3000 terms round at about 1e-5).
@pytest.mark.parametrize(
    "dtype, entry_tol, sum_tol", [(torch.float32, 1e-6, 1e-3), (torch.float64, 1e-13, 1e-9)]
)
@pytest.mark.parametrize("size, keep_fraction", [(50, 0.1), (1000, 0.3), (3000, 0.02)])
@pytest.mark.parametrize("start", [0.0, 0.35, 0.9, 5.0])
def test_projection_equals_the_exact_euclidean_projection(
    dtype, entry_tol, sum_tol, size, keep_fraction, start
):
    """From any start (a training step starts from the previous step's shift), to the same tolerance."""
    generator = torch.Generator().manual_seed(size)
    s = (torch.rand(size, generator=generator, dtype=torch.float64) * 1.6 - 0.3).to(dtype)
    k = keep_fraction * size
    projected = project_to_budget(s, k, start)
    expected = exact_projection(s.double().numpy(), k)
    assert projected.dtype == dtype
    assert np.abs(projected.double().numpy() - expected).max() <= entry_tol
    assert projected.min() >= 0.0 and projected.max() <= 1.0
    assert float(projected.double().sum()) <= k + sum_tol


def test_projection_equals_a_numerical_optimizer_on_a_small_vector():
    s = np.array([1.3, 0.9, 0.85, 0.5, 0.45, 0.2, -0.1, 0.7, 0.05, 0.99])
    k = 2.5
    result = minimize(
        lambda x: 0.5 * np.sum((x - s) ** 2),
        x0=np.full_like(s, k / len(s)),
        jac=lambda x: x - s,
        bounds=[(0.0, 1.0)] * len(s),
        constraints=[{"type": "ineq", "fun": lambda x: k - x.sum(), "jac": lambda x: -np.ones_like(x)}],
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 500},
    )
    assert result.success
    projected = project_to_budget(torch.tensor(s), k).numpy()
    np.testing.assert_allclose(projected, result.x, atol=1e-6)


def test_projection_is_the_box_clamp_when_the_budget_is_met():
    s = torch.tensor([1.2, 0.3, -0.4, 0.5, 1.0])
    # clamp(s, 0, 1) sums to 2.8: any k >= 2.8 needs no shift (v = 0)
    assert torch.equal(project_to_budget(s, 2.8), s.clamp(0.0, 1.0))
    assert torch.equal(project_to_budget(s, 10.0), s.clamp(0.0, 1.0))
    # a feasible vector is its own projection
    inside = torch.tensor([0.0, 0.25, 0.5, 1.0])
    assert torch.equal(project_to_budget(inside, 1.75), inside)


def test_relaxed_mask_becomes_binary_as_the_temperature_vanishes():
    torch.manual_seed(0)
    s = torch.rand(10_000)
    noise = logistic_noise(s)
    hard = (torch.log(s) - torch.log1p(-s) + noise > 0).float()
    for tau, within in [(1.0, None), (1e-2, 0.9), (1e-6, 1.0)]:
        m = relaxed_mask(s, tau, noise)
        binary = torch.minimum(m, 1.0 - m) < 1e-6
        if within is None:
            assert binary.float().mean() < 0.01  # at tau = 1 the mask is soft
        else:
            assert binary.float().mean() >= within
    assert torch.equal(relaxed_mask(s, 1e-6, noise).round(), hard)


def test_relaxation_is_s_without_noise_and_bernoulli_s_in_the_hard_limit():
    s = torch.tensor([0.0, 0.1, 0.5, 0.8, 1.0])
    torch.testing.assert_close(relaxed_mask(s, 1.0, torch.zeros_like(s)), s)
    torch.manual_seed(1)
    many = s.expand(20_000, -1)
    draws = relaxed_mask(many, 1e-6, logistic_noise(many))
    torch.testing.assert_close(draws.mean(0), s, atol=0.015, rtol=0.0)


def test_relaxed_masks_and_their_closed_form_gradient_equal_autograd_of_the_reference_formula():
    """RelaxedMasks draws K masks at once; with the same uniforms, the masks are relaxed_mask's (the official
    formula) and the gradient autograd's, at interior probabilities and at exactly 0 and 1."""
    torch.manual_seed(0)
    s = torch.cat([torch.rand(3000), torch.tensor([0.0, 1.0, 1e-30, 1.0 - 2**-24])]).requires_grad_()
    grads = torch.randn(2, s.numel())
    for tau in (1.0, 0.3, 0.03):
        torch.manual_seed(5)
        sizes = [1000, 4, 2000]
        parts = RelaxedMasks.apply(s, tau, 2, sizes, Scratch(CPU))
        masks = [torch.cat(parts[:3]), torch.cat(parts[3:])]
        (gradient,) = torch.autograd.grad(sum((g * m).sum() for g, m in zip(grads, masks, strict=True)), s)
        torch.manual_seed(5)
        uniforms = torch.rand(2, s.numel())
        expected = [relaxed_mask(s, tau, torch.logit(u, eps=2.0**-24)) for u in uniforms]
        (expected_gradient,) = torch.autograd.grad(
            sum((g * m).sum() for g, m in zip(grads, expected, strict=True)), s
        )
        for mask, reference in zip(masks, expected, strict=True):
            torch.testing.assert_close(mask, reference, rtol=0, atol=2e-6)
        assert torch.isfinite(gradient).all()
        torch.testing.assert_close(gradient, expected_gradient, rtol=1e-4, atol=1e-5 / tau)


def _context(epochs: int, steps_per_epoch: int, batches=(), num_classes: int = 2) -> TrainingContext:
    return TrainingContext(
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        device=CPU,
        seed=0,
        num_classes=num_classes,
        train_data=ScoringData(list(batches), num_classes),
    )


def test_budget_and_temperature_follow_the_reference_schedules(small_convnet):
    weights = prunable_weights(small_convnet)
    n = sum(w.numel() for w in weights.values())
    epochs, steps_per_epoch, target = 10, 25, 0.95
    session = ProbMask().attach(small_convnet, weights, target, "learned", _context(epochs, steps_per_epoch))
    total = epochs * steps_per_epoch
    for step in [0, 10, 39, 40, 41, 75, 100, 149, 150, 151, 200, 249]:
        p = step / total
        if p <= 0.16:
            rho = 1.0
        elif p >= 0.6:
            rho = 1.0 - target
        else:
            rho = (1.0 - target) + target * (1.0 - (p - 0.16) / (0.6 - 0.16)) ** 3
        assert session.budget(p) == pytest.approx(rho * n, rel=1e-12)
        assert session.temperature(p) == pytest.approx(0.97 * (1.0 - p) + 0.03, rel=1e-12)


def test_gradients_reach_the_probabilities_through_the_relaxation(small_convnet):
    model = small_convnet.double()
    weights = prunable_weights(model)
    session = ProbMask().attach(model, weights, 0.5, "learned", _context(4, 10))
    torch.manual_seed(3)
    with torch.no_grad():
        session.scores.uniform_(0.2, 0.8)
    inputs, targets = torch.randn(8, 1, 8, 8, dtype=torch.float64), torch.randint(0, 3, (8,))
    trainer = SimpleNamespace(progress=5 / 40)

    def loss_at(scores: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            session.scores.copy_(scores)
        torch.manual_seed(4)  # the same noise at every evaluation
        return session.compute_loss(trainer, inputs, targets)

    base = session.scores.detach().clone()
    loss_at(base).backward()
    grad = session.scores.grad.clone()
    start, stop = session.slices["2.weight"]  # the second conv layer
    assert all(grad[a:b].abs().sum() > 0 for a, b in session.slices.values())
    h = 1e-3
    for index in torch.randperm(stop - start, generator=torch.Generator().manual_seed(0))[:5] + start:
        bump = torch.zeros_like(base)
        bump[index] = h
        with torch.no_grad():
            numeric = (loss_at(base + bump) - loss_at(base - bump)) / (2 * h)
        assert float(grad[index]) == pytest.approx(float(numeric), rel=2e-2, abs=1e-6)


class TwoPaths(nn.Module):
    """An informative path and a pure-noise path summed into one head: more of the budget should go to the first."""

    def __init__(self) -> None:
        super().__init__()
        self.signal = nn.Linear(8, 16)
        self.noise = nn.Linear(8, 16)
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.signal(x[:, :8]) + self.noise(x[:, 8:])))


def test_learned_allocation_favours_the_informative_layer_and_finish_leaves_a_plain_model():
    torch.manual_seed(0)
    x = torch.randn(512, 16)
    y = (x[:, :8] @ torch.randn(8) > 0).long()
    loader = TensorLoader(x, y, 32, shuffle=True, seed=0)
    model = TwoPaths()
    weights = prunable_weights(model)
    originals = {name: w for name, w in weights.items()}
    epochs = 12
    session = ProbMask(selection_examples=256).attach(
        model, weights, 0.75, "learned", _context(epochs, len(loader), loader)
    )
    trainer = Trainer(model, loader, get_preset("synthetic-tiny").recipe.optim, epochs, hooks=[session])
    trainer.fit()
    expected_density = {
        name: float(session.scores[a:b].detach().mean()) for name, (a, b) in session.slices.items()
    }
    final = session.finish(trainer)

    # the learned allocation (each layer's mean probability) is not uniform, and favours the informative path;
    # over seeds 0-4 the gap is 0.06-0.10
    assert max(abs(d - 0.25) for d in expected_density.values()) > 0.05
    assert expected_density["signal.weight"] > expected_density["noise.weight"] + 0.04
    assert len({float(mask.float().mean()) for mask in final.masks.values()}) > 1
    assert sum(int(m.sum()) for m in final.masks.values()) == round(288 * 0.25)
    assert not any(parametrize.is_parametrized(module) for module in model.modules())
    for name, weight in prunable_weights(model).items():
        assert weight is originals[name]
        assert torch.all(weight[~final.masks[name]] == 0)
    assert 0.0 < final.method_sparsity < 1.0
    assert len(final.details["candidate_train_top1"]) == 10


def test_choosing_the_mask_leaves_normalization_statistics_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)
    )
    loader = TensorLoader(torch.randn(64, 1, 8, 8), torch.randint(0, 2, (64,)), 16, shuffle=True, seed=0)
    session = ProbMask(selection_examples=32).attach(
        model, prunable_weights(model), 0.5, "learned", _context(1, len(loader), loader)
    )
    trainer = Trainer(model, loader, get_preset("synthetic-tiny").recipe.optim, 1, hooks=[session])
    trainer.fit()
    before = {name: b.clone() for name, b in model.named_buffers()}
    session.finish(trainer)
    assert all(torch.equal(before[name], b) for name, b in model.named_buffers())


def test_exact_count_drops_the_least_probable_and_adds_the_most_probable():
    probabilities = torch.tensor([0.9, 0.2, 0.6, 0.6, 0.1, 1.0])
    magnitudes = torch.tensor([1.0, 1.0, 0.5, 0.7, 1.0, 1.0])
    mask = torch.tensor([True, True, True, True, False, False])
    # two too many: drop 0.2, then the weaker of the two 0.6 entries
    assert to_exact_count(mask, probabilities, magnitudes, 2).tolist() == [
        True,
        False,
        False,
        True,
        False,
        False,
    ]
    # one too few: add the dropped entry of highest probability
    assert to_exact_count(mask, probabilities, magnitudes, 5).tolist() == [
        True,
        True,
        True,
        True,
        False,
        True,
    ]
    assert torch.equal(to_exact_count(mask, probabilities, magnitudes, 4), mask)


def test_every_step_ends_inside_the_budget_of_that_step():
    """The trainer's Adam steps the probabilities, then the session projects them onto the budget of the step just
    taken (k at its progress before the step): after each step 0 <= s <= 1 and sum(s) <= k."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
    loader = TensorLoader(torch.randn(64, 6), torch.randint(0, 2, (64,)), 8, shuffle=True, seed=0)
    epochs = 3
    session = ProbMask().attach(model, prunable_weights(model), 0.8, "learned", _context(epochs, len(loader)))
    n, total = session.size, epochs * len(loader)
    seen = []

    class Check(TrainHook):
        def after_step(self, trainer) -> None:
            p = (trainer.step - 1) / total
            keep = 1.0 if p <= 0.16 else 0.2 if p >= 0.6 else 0.2 + 0.8 * (1 - (p - 0.16) / 0.44) ** 3
            s = session.scores.detach()
            assert float(s.min()) >= 0.0 and float(s.max()) <= 1.0
            assert float(s.double().sum()) <= keep * n + 1e-3
            seen.append(float(s.double().sum()) / n)

    trainer = Trainer(
        model, loader, get_preset("synthetic-tiny").recipe.optim, epochs, hooks=[session, Check()]
    )
    assert [type(o) for o in trainer.group_optimizers] == [torch.optim.Adam]
    trainer.fit()
    assert len(seen) == total and seen[-1] <= 0.2 + 1e-5 < seen[0]


def test_finetuning_takes_the_reference_share_of_the_budget():
    method = ProbMask()
    assert method.finetune_fraction == 20 / 320 and "finetune_share" not in method.hyperparameters()
    assert [method.finetune_epochs(b) for b in (1, 2, 4, 9, 40, 320)] == [0, 1, 1, 1, 2, 20]
    preset = get_preset("mnist5k-lenet5")
    optim = method.finetune_optim(preset.recipe)
    assert optim.lr == pytest.approx(preset.recipe.optim.lr / 100)
    assert (optim.schedule, optim.grad_clip) == ("constant", 3.0)


def test_end_to_end_run_ends_at_exactly_the_target_sparsity(tmp_path):
    assert get_method("probmask").scopes == ("learned",)
    preset = get_preset("synthetic-tiny")
    record = execute(RunConfig.from_preset(preset, "probmask", "learned", 0.9, 0), CPU, tmp_path)
    kept = round(record["prunable_weights"] * 0.1)
    assert record["prunable_nonzero"] == kept
    assert sum(layer["nonzero"] for layer in record["layers"]) == kept
    assert record["epochs"] == {"budget": 4, "learn": 3, "finetune": 1}
    assert record["hparams"]["finetune_fraction"] == 20 / 320
    details = record["method_details"]
    assert details["target_kept"] == kept
    assert record["method_sparsity"] == pytest.approx(
        1.0 - details["sampled_kept"] / record["prunable_weights"]
    )
    if details["sampled_kept"] != kept:
        assert f"to reach the target {kept}" in record["enforcement"]
