"""Pruning at initialization (SNIP, GraSP, SynFlow, magnitude at init) against expectations computed directly."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

import prunebench
from prunebench.core.errors import UsageError
from prunebench.methods.base import ScoringData
from prunebench.methods.grasp import GraSP
from prunebench.methods.snip import SNIP
from prunebench.methods.synflow import SynFlow
from prunebench.pruning.allocation import keep_budget, layer_keep_counts
from prunebench.pruning.prunable import prunable_weights
from prunebench.run.run_config import RunConfig
from prunebench.run.runner import execute

METHODS = ("snip", "grasp", "synflow", "magnitude_init")
SCOPES = ("global", "uniform", "uniform_plus", "erk")


pytestmark = pytest.mark.usefixtures("one_thread")


def balanced_batches(shape: tuple[int, ...], classes: int, per_class: int, seed: int = 0, batches: int = 2):
    """``per_class`` examples of each class, spread over ``batches`` shuffled batches (double precision)."""
    generator = torch.Generator().manual_seed(seed)
    targets = torch.arange(classes).repeat(per_class)
    targets = targets[torch.randperm(len(targets), generator=generator)]
    inputs = torch.randn(len(targets), *shape, generator=generator, dtype=torch.float64)
    return list(zip(inputs.tensor_split(batches), targets.tensor_split(batches), strict=True))


def stacked(batches) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def bn_convnet() -> nn.Module:
    """A small conv net with BatchNorm whose running statistics differ from any batch's (eval != train mode)."""
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 3),
    ).double()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    return model


def weight_names(model: nn.Module) -> list[str]:
    return list(prunable_weights(model))


# --- SNIP -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("build", "shape"), [(mlp, (6,)), (bn_convnet, (1, 8, 8))])
def test_snip_scores_are_gradient_times_weight_in_eval_mode(build, shape):
    model = build()
    batches = balanced_batches(shape, classes=3, per_class=4)
    reference = copy.deepcopy(model).eval()
    inputs, targets = stacked(batches)
    params = [dict(reference.named_parameters())[n] for n in weight_names(reference)]
    grads = torch.autograd.grad(F.cross_entropy(reference(inputs), targets), params)

    scratch = copy.deepcopy(model)
    scores = SNIP(samples_per_class=4).scores(scratch, prunable_weights(scratch), ScoringData(batches, 3))
    for (name, score), grad, weight in zip(scores.items(), grads, params, strict=True):
        assert torch.allclose(score, (grad * weight).abs(), rtol=1e-9, atol=1e-15), name


def test_snip_takes_samples_per_class_examples_of_each_class():
    batches = balanced_batches((6,), classes=3, per_class=4)
    inputs, targets = stacked(batches)
    first_two = torch.cat([torch.nonzero(targets == c).flatten()[:2] for c in range(3)]).sort().values
    reference = mlp()
    params = [dict(reference.named_parameters())[n] for n in weight_names(reference)]
    loss = F.cross_entropy(reference(inputs[first_two]), targets[first_two])
    grads = torch.autograd.grad(loss, params)
    scratch = mlp()
    scores = SNIP(samples_per_class=2).scores(scratch, prunable_weights(scratch), ScoringData(batches, 3))
    for score, grad, weight in zip(scores.values(), grads, params, strict=True):
        assert torch.allclose(score, (grad * weight).abs(), rtol=1e-9, atol=1e-15)


# --- GraSP ------------------------------------------------------------------------------------------------------------


def grasp_reference(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, temperature: float):
    """θ ⊙ Hg of the mean loss on ``logits / T`` with torch.autograd.functional (train mode)."""
    model.train()
    names = weight_names(model)
    params = tuple(dict(model.named_parameters())[n].detach() for n in names)

    def loss(*weights):
        logits = functional_call(model, dict(zip(names, weights, strict=True)), (inputs,))
        return F.cross_entropy(logits / temperature, targets)

    grad = torch.autograd.grad(loss(*(p.requires_grad_() for p in params)), params)
    _, hg = torch.autograd.functional.hvp(loss, tuple(p.detach() for p in params), grad)
    return {name: p.detach() * h for name, p, h in zip(names, params, hg, strict=True)}


@pytest.mark.parametrize(("build", "shape"), [(mlp, (6,)), (bn_convnet, (1, 8, 8))])
def test_grasp_score_is_theta_times_hessian_gradient_product(build, shape):
    batches = balanced_batches(shape, classes=3, per_class=4)
    inputs, targets = stacked(batches)
    order = torch.sort(targets, stable=True).indices
    expected = grasp_reference(build(), inputs[order], targets[order], temperature=200.0)
    scratch = build()
    method = GraSP(samples_per_class=4, chunks=1)
    scores = method.scores(scratch, prunable_weights(scratch), ScoringData(batches, 3))
    for name, score in scores.items():
        assert torch.allclose(score, expected[name], rtol=1e-7, atol=1e-18), name


def test_grasp_without_batchnorm_does_not_depend_on_the_chunks():
    batches = balanced_batches((6,), classes=3, per_class=4)
    first, second = mlp(), mlp()
    one = GraSP(samples_per_class=4, chunks=1).scores(first, prunable_weights(first), ScoringData(batches, 3))
    three = GraSP(samples_per_class=4, chunks=3).scores(
        second, prunable_weights(second), ScoringData(batches, 3)
    )
    assert all(torch.allclose(one[n], three[n], rtol=1e-9, atol=1e-18) for n in one)


def test_grasp_removes_the_largest_minus_theta_hg_as_the_official_code():
    batches = balanced_batches((6,), classes=3, per_class=4)
    inputs, targets = stacked(batches)
    order = torch.sort(targets, stable=True).indices
    keep_score = grasp_reference(mlp(), inputs[order], targets[order], temperature=200.0)
    s = torch.cat([-v.reshape(-1) for v in keep_score.values()])  # S = -θ ⊙ Hg, the official score
    masks = prunebench.prune(mlp(), "grasp", 0.5, scope="global", data=batches, samples_per_class=4)
    kept = torch.cat([m.reshape(-1) for m in masks.values()])
    assert int(kept.sum()) == keep_budget(s.numel(), 0.5)
    assert s[~kept].min() >= s[kept].max()


# --- SynFlow ----------------------------------------------------------------------------------------------------------


def linear_net() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(4, 5, bias=False), nn.Linear(5, 3, bias=False))


def test_synflow_scores_equal_the_path_products_of_a_linear_network():
    model = linear_net()
    w1, w2 = (p.detach().abs().double() for p in model.parameters())
    # R = 1ᵀ|W2||W1|1: dR/d|W1|[i,j] = sum_k |W2[k,i]|, dR/d|W2|[k,i] = sum_j |W1[i,j]|.
    expected = {"0.weight": w1 * w2.sum(0)[:, None], "1.weight": w2 * w1.sum(1)[None, :]}
    largest = max(float(e.max()) for e in expected.values())
    scratch = copy.deepcopy(model)
    scores = SynFlow(input_shape=(4,)).scores(scratch, prunable_weights(scratch), None)
    for name, score in scores.items():
        assert torch.allclose(score, expected[name] / largest, rtol=1e-12), name


def test_synflow_scores_do_not_depend_on_the_data():
    def scores_with(data):
        scratch = bn_convnet()
        return SynFlow(input_shape=(1, 8, 8)).scores(scratch, prunable_weights(scratch), data)

    first = scores_with(ScoringData(balanced_batches((1, 8, 8), 3, 4, seed=0)))
    second = scores_with(ScoringData(balanced_batches((1, 8, 8), 3, 4, seed=1)))
    third = scores_with(None)
    assert all(torch.equal(first[n], second[n]) and torch.equal(first[n], third[n]) for n in first)


def test_synflow_needs_data_or_an_input_shape():
    with pytest.raises(UsageError, match="input_shape"):
        prunebench.prune(linear_net(), "synflow", 0.5)
    masks = prunebench.prune(linear_net(), "synflow", 0.5, input_shape=(4,))
    assert sum(int(m.sum()) for m in masks.values()) == keep_budget(35, 0.5)


def wide_middle_mlp() -> nn.Module:
    """Bias-free 10-20-500-20-10: default init gives the 500-wide layer tiny weights, and its layers hold 10k weights."""
    torch.manual_seed(3)
    widths = (10, 20, 500, 20, 10)
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(widths, widths[1:], strict=False):
        layers += [nn.Linear(fan_in, fan_out, bias=False), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def test_iterative_synflow_keeps_every_layer_where_single_shot_scores_collapse_one():
    sparsity = 0.99
    total = sum(m.numel() for m in prunebench.prune(wide_middle_mlp(), "magnitude_init", 0.5).values())
    magnitude = prunebench.prune(wide_middle_mlp(), "magnitude_init", sparsity, scope="global")
    assert min(int(m.sum()) for m in magnitude.values()) == 0
    one_shot = prunebench.prune(
        wide_middle_mlp(), "synflow", sparsity, scope="global", input_shape=(10,), rounds=1
    )
    assert min(int(m.sum()) for m in one_shot.values()) == 0
    synflow = prunebench.prune(wide_middle_mlp(), "synflow", sparsity, scope="global", input_shape=(10,))
    assert min(int(m.sum()) for m in synflow.values()) > 0
    assert sum(int(m.sum()) for m in synflow.values()) == keep_budget(total, sparsity)


@pytest.mark.parametrize("scope", ["global", "erk"])
def test_synflow_rounds_follow_the_exponential_schedule_in_the_scope(monkeypatch, scope):
    import prunebench.methods.synflow as synflow_module

    calls: list[tuple[float, str]] = []
    real = synflow_module.masks_from_scores

    def recording(scores, sparsity, scope):
        calls.append((sparsity, scope))
        return real(scores, sparsity, scope)

    monkeypatch.setattr(synflow_module, "masks_from_scores", recording)
    prunebench.prune(wide_middle_mlp(), "synflow", 0.999, scope=scope, input_shape=(10,), rounds=10)
    assert [c[1] for c in calls] == [scope] * 10
    assert [c[0] for c in calls] == pytest.approx([1 - 0.001 ** (k / 10) for k in range(1, 11)])


@pytest.mark.parametrize("scope", ["uniform", "erk"])
def test_synflow_never_revives_a_weight_pruned_in_an_earlier_round(monkeypatch, scope):
    # Once a hidden unit has lost all its inputs, its outputs are alive but score 0, as do the weights pruned before;
    # a layer-wise count can then only be met with zero scores, and a pruned weight must not be among them.
    import prunebench.methods.synflow as synflow_module

    rounds: list[dict[str, torch.Tensor]] = []
    real = synflow_module.masks_from_scores

    def recording(scores, sparsity, scope):
        rounds.append(real(scores, sparsity, scope))
        return rounds[-1]

    monkeypatch.setattr(synflow_module, "masks_from_scores", recording)
    prunebench.prune(wide_middle_mlp(), "synflow", 0.99, scope=scope, input_shape=(10,), rounds=10)
    assert len(rounds) == 10
    for before, after in zip(rounds, rounds[1:], strict=False):
        assert all(not (after[n] & ~before[n]).any() for n in after), "a pruned weight came back"


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


def residual_net() -> nn.Module:
    torch.manual_seed(4)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        ResidualBlock(8),
        ResidualBlock(8),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )


@pytest.mark.parametrize("scope", SCOPES)
def test_synflow_on_a_residual_network_with_batchnorm(scope):
    model = residual_net()
    before = copy.deepcopy(model.state_dict())
    masks = prunebench.prune(model, "synflow", 0.9, scope=scope, input_shape=(3, 8, 8), rounds=20)
    total = sum(m.numel() for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == keep_budget(total, 0.9)
    assert all(int(m.sum()) > 0 for m in masks.values())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# --- Scopes, exact sparsity, determinism, API -------------------------------------------------------------------------


def conv_batches():
    return [(x.float(), y) for x, y in balanced_batches((1, 8, 8), classes=3, per_class=10)]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("scope", SCOPES)
def test_every_scope_is_at_the_exact_target(small_convnet, method, scope):
    sparsity = 0.9
    masks = prunebench.prune(small_convnet, method, sparsity, scope=scope, data=conv_batches())
    shapes = {n: m.shape for n, m in masks.items()}
    counts = {n: int(m.sum()) for n, m in masks.items()}
    total = sum(math.prod(s) for s in shapes.values())
    assert sum(counts.values()) == keep_budget(total, sparsity)
    if scope == "uniform":
        assert all(abs(counts[n] - m.numel() * (1 - sparsity)) <= 1 for n, m in masks.items())
    if scope != "global":
        assert counts == layer_keep_counts(shapes, sparsity, scope)


def test_global_scope_is_not_uniform_in_general(small_convnet):
    masks = prunebench.prune(small_convnet, "magnitude_init", 0.9, scope="global")
    assert any(abs(int(m.sum()) - m.numel() * 0.1) > 1 for m in masks.values())


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_masks(small_convnet, method):
    def masks():
        torch.manual_seed(7)
        return prunebench.prune(small_convnet, method, 0.8, scope="global", data=conv_batches())

    first, second = masks(), masks()
    assert all(torch.equal(first[n], second[n]) for n in first)


def test_prune_with_user_batches_returns_masks_and_leaves_the_model_alone(small_convnet):
    before = {n: p.clone() for n, p in small_convnet.named_parameters()}
    masks = prunebench.prune(small_convnet, "snip", 0.95, scope="global", data=conv_batches())
    assert set(masks) == set(weight_names(small_convnet))
    assert all(m.dtype == torch.bool for m in masks.values())
    assert all(torch.equal(before[n], p) for n, p in small_convnet.named_parameters())
    with pytest.raises(UsageError, match="training data"):
        prunebench.prune(small_convnet, "grasp", 0.9)


# --- The harness, end to end ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_end_to_end_run_on_synthetic_tiny(tmp_path, method):
    config = RunConfig.from_preset("synthetic-tiny", method, "erk", 0.9, seed=0, epochs=2)
    record = execute(config, torch.device("cpu"), tmp_path)
    assert record["status"] == "ok"
    assert abs(record["achieved_sparsity"] - 0.9) < 1e-3
    assert record["schedule"] == "at_init"


def test_a_collapsed_run_finishes_with_a_record(tmp_path):
    config = RunConfig.from_preset("synthetic-tiny", "magnitude_init", "global", 0.999, seed=0, epochs=2)
    record = execute(config, torch.device("cpu"), tmp_path)
    assert record["status"] == "ok"
    assert record["collapsed"] and record["min_layer_density"] == 0.0
