"""Scopes: exact budgets, and masks that match PyTorch's own pruning utilities."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from prunebench.core.errors import UsageError
from prunebench.pruning.allocation import (
    counts_from_densities,
    layer_densities,
    layer_keep_counts,
    masks_from_scores,
)
from prunebench.pruning.prunable import prunable_weights


def _modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@pytest.mark.parametrize("sparsity", [0.3, 0.9, 0.97])
def test_global_magnitude_equals_torch_global_unstructured(small_convnet, sparsity):
    scores = {name: w.detach().abs() for name, w in prunable_weights(small_convnet).items()}
    ours = masks_from_scores(scores, sparsity, "global")
    total = sum(s.numel() for s in scores.values())
    assert (total * sparsity) % 1 != 0.5  # torch rounds the pruned count, we round the kept one
    torch_prune.global_unstructured(
        [(m, "weight") for m in _modules(small_convnet)],
        pruning_method=torch_prune.L1Unstructured,
        amount=sparsity,
    )
    theirs = {
        f"{n}.weight": m.weight_mask.bool()
        for n, m in small_convnet.named_modules()
        if hasattr(m, "weight_mask")
    }
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name


@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_uniform_magnitude_equals_torch_l1_unstructured_per_layer(small_convnet, sparsity):
    scores = {name: w.detach().abs() for name, w in prunable_weights(small_convnet).items()}
    ours = masks_from_scores(scores, sparsity, "uniform")
    for name, module in small_convnet.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            torch_prune.l1_unstructured(module, "weight", amount=sparsity)
            theirs = module.weight_mask.bool()
            # each layer within one weight of its uniform share (the budget is exact over all layers)
            assert abs(int(ours[f"{name}.weight"].sum()) - int(theirs.sum())) <= 1
            # and the kept weights are the largest of the layer: theirs is a subset of ours or vice versa
            kept_ours, kept_theirs = ours[f"{name}.weight"], theirs
            assert bool((kept_ours & ~kept_theirs).sum() == 0) or bool((kept_theirs & ~kept_ours).sum() == 0)
            if int(kept_ours.sum()) == int(kept_theirs.sum()):
                assert torch.equal(kept_ours, kept_theirs)


@pytest.mark.parametrize("scope", ["global", "uniform", "uniform_plus", "erk"])
@pytest.mark.parametrize("sparsity", [0.8, 0.9, 0.95, 0.99])
def test_every_scope_keeps_exactly_the_budget(scope, sparsity):
    torch.manual_seed(1)
    shapes = {"c1": (6, 1, 5, 5), "c2": (16, 6, 5, 5), "f1": (120, 400), "f2": (84, 120), "f3": (10, 84)}
    scores = {name: torch.rand(shape) for name, shape in shapes.items()}
    masks = masks_from_scores(scores, sparsity, scope)
    total = sum(math.prod(s) for s in shapes.values())
    assert sum(int(m.sum()) for m in masks.values()) == round(total * (1 - sparsity))


def test_uniform_gives_every_layer_the_target_density():
    shapes = {"a": torch.Size([10, 10]), "b": torch.Size([30, 20]), "c": torch.Size([7, 3])}
    counts = layer_keep_counts(shapes, 0.9, "uniform")
    for name, shape in shapes.items():
        assert abs(counts[name] - 0.1 * math.prod(shape)) <= 1


def test_erk_densities_follow_the_formula_and_meet_the_budget():
    shapes = {
        "conv1": torch.Size([16, 3, 3, 3]),
        "conv2": torch.Size([32, 16, 3, 3]),
        "fc": torch.Size([10, 512]),
    }
    for sparsity in (0.5, 0.8, 0.9, 0.99):
        densities = layer_densities(shapes, sparsity, "erk")
        sizes = {n: math.prod(s) for n, s in shapes.items()}
        kept = sum(densities[n] * sizes[n] for n in shapes)
        assert kept == pytest.approx(round(sum(sizes.values()) * (1 - sparsity)))
        sparse = [n for n in shapes if densities[n] < 1.0]
        # among layers not made dense, density / (sum(shape) / prod(shape)) is one constant epsilon
        epsilons = {densities[n] / (sum(shapes[n]) / sizes[n]) for n in sparse}
        assert max(epsilons) == pytest.approx(min(epsilons))
        assert all(0 < d <= 1 for d in densities.values())


def test_erk_densifies_layers_that_would_exceed_one():
    # a tiny first layer gets raw ERK density far above 1 at 50% sparsity and must be made dense
    shapes = {"tiny": torch.Size([4, 1, 3, 3]), "big": torch.Size([256, 256]), "out": torch.Size([10, 256])}
    densities = layer_densities(shapes, 0.5, "erk")
    assert densities["tiny"] == 1.0
    assert densities["big"] < 1.0


def test_uniform_plus_keeps_a_conv_first_layer_dense_and_the_last_at_least_20_percent():
    shapes = {
        "c1": torch.Size([6, 1, 5, 5]),
        "c2": torch.Size([16, 6, 5, 5]),
        "f1": torch.Size([120, 400]),
        "f3": torch.Size([10, 84]),
    }
    densities = layer_densities(shapes, 0.95, "uniform_plus")
    assert densities["c1"] == 1.0
    assert densities["f3"] == 0.2
    assert densities["c2"] == pytest.approx(densities["f1"])


def test_uniform_plus_prunes_a_fully_connected_first_layer_like_the_others():
    shapes = {"f1": torch.Size([300, 784]), "f2": torch.Size([100, 300]), "f3": torch.Size([10, 100])}
    densities = layer_densities(shapes, 0.9, "uniform_plus")
    assert densities["f1"] == pytest.approx(densities["f2"]) and densities["f3"] == 0.2


def test_uniform_plus_refuses_an_infeasible_budget():
    shapes = {"c1": torch.Size([64, 3, 7, 7]), "c2": torch.Size([8, 64, 1, 1]), "f": torch.Size([10, 8])}
    with pytest.raises(UsageError, match="uniform_plus cannot keep"):
        layer_densities(shapes, 0.99, "uniform_plus")


def test_counts_from_densities_add_up_exactly_and_stay_within_one():
    sizes = {"a": 7, "b": 13, "c": 101}
    densities = dict.fromkeys(sizes, 1 / 3)
    counts = counts_from_densities(sizes, densities, round(121 / 3))
    assert sum(counts.values()) == round(121 / 3)
    assert all(abs(counts[n] - sizes[n] / 3) < 1 for n in sizes)


def test_ties_are_broken_deterministically():
    scores = {"a": torch.ones(10), "b": torch.ones(10)}
    first = masks_from_scores(scores, 0.5, "global")
    second = masks_from_scores(scores, 0.5, "global")
    assert all(torch.equal(first[n], second[n]) for n in scores)
    assert int(first["a"].sum() + first["b"].sum()) == 10


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_sparsity_outside_the_open_interval_is_refused(bad):
    with pytest.raises(UsageError, match=r"\(0, 1\)"):
        masks_from_scores({"a": torch.rand(10)}, bad, "global")
