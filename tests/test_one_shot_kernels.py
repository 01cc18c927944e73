"""The one-shot kernels against independent expectations: Wanda's scores by hand, every comparison group exact,
SparseGPT's reconstruction against magnitude's and Wanda's masks, and OWL's densities."""

from __future__ import annotations

import math

import pytest
import torch

from prunebench.core.errors import UsageError
from prunebench.methods.sparsegpt import SparseGPT
from prunebench.methods.wanda import Wanda, wanda_scores
from prunebench.pruning.allocation import top_mask
from prunebench.pruning.calibration import LayerInputs
from prunebench.pruning.comparison_groups import group_mask, parse_group
from prunebench.pruning.keep_budget import keep_budget
from prunebench.pruning.obs_reconstruction import sparsegpt_prune
from prunebench.pruning.owl import outlier_ratio, owl_densities


def _inputs(x: torch.Tensor) -> LayerInputs:
    return LayerInputs(rows=len(x), sq_norms=(x**2).sum(0), hessian=2.0 / len(x) * x.T @ x)


def test_wanda_scores_by_hand():
    weight = torch.tensor([[1.0, -2.0, 3.0], [-4.0, 5.0, 0.5]])
    x = torch.tensor([[3.0, 0.0, 1.0], [4.0, 2.0, 0.0]])  # column norms 5, 2, 1
    expected = torch.tensor([[5.0, 4.0, 3.0], [20.0, 10.0, 0.5]])
    assert torch.equal(wanda_scores(weight, _inputs(x)), expected)
    pruning = Wanda().prune_layer(weight, _inputs(x), 3, "per_output")
    assert pruning.weight is None
    assert pruning.mask.tolist() == [[True, True, False], [True, False, False]]  # 2 + 1, first row one more


@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.75])
@pytest.mark.parametrize("tied", [False, True])
def test_per_output_equals_the_official_rule_when_rows_divide(sparsity, tied):
    score = torch.rand(8, 16, generator=torch.Generator().manual_seed(1))
    if tied:  # three values: the official stable sort prunes the lower column index first among equal scores
        score = (score * 3).floor()
    count = keep_budget(score.numel(), sparsity)
    mask = group_mask(score, count, "per_output")
    pruned = torch.sort(score, dim=-1, stable=True)[1][:, : int(16 * sparsity)]  # locuslab/wanda prune_wanda
    official = torch.ones_like(mask).scatter_(1, pruned, False)
    assert torch.equal(mask, official)


@pytest.mark.parametrize("group", ["2:4", "4:8", "1:4"])
def test_nm_patterns_keep_exactly_n_of_every_m(group):
    n, m = map(int, group.split(":"))
    score = torch.rand(6, 2, 4, 4, generator=torch.Generator().manual_seed(2))  # a conv: 32 inputs per row
    mask = group_mask(score, score.numel() * n // m, group)
    assert torch.all(mask.reshape(6, -1, m).sum(-1) == n)
    with pytest.raises(UsageError, match="uniform scope"):
        group_mask(score, score.numel() // 2 + 1, group)


def test_bad_groups_are_one_line_errors():
    for bad in ("row", "4:4", "0:2", "2:x"):
        with pytest.raises(UsageError, match="per_layer, per_output") as error:
            parse_group(bad)
        assert "\n" not in str(error.value)
    with pytest.raises(UsageError, match="multiple of 4") as error:
        group_mask(torch.rand(3, 6), 9, "2:4")
    assert "\n" not in str(error.value)
    assert parse_group(" 2 : 4 ") == "2:4" and parse_group("per_output") == "per_output"


def test_per_output_splits_an_uneven_count_over_the_rows():
    score = torch.rand(7, 10, generator=torch.Generator().manual_seed(8))
    mask = group_mask(score, 33, "per_output")  # 33 / 7 rows: five rows keep 5, two keep 4
    rows = mask.sum(1)
    assert int(rows.sum()) == 33 and sorted(rows.tolist()) == [4, 4, 5, 5, 5, 5, 5]
    for row, kept in zip(score, mask, strict=True):  # inside a row, its highest scores
        assert row[kept].min() > row[~kept].max()


def _correlated_layer(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(24, 24, generator=generator)
    x = torch.randn(256, 24, generator=generator) @ mixing  # correlated inputs
    return torch.randn(10, 24, generator=generator), x


def _error(weight: torch.Tensor, pruned: torch.Tensor, x: torch.Tensor) -> float:
    return float(((x @ weight.T - x @ pruned.T) ** 2).sum())


@pytest.mark.parametrize("group", ["per_layer", "per_output", "2:4"])
def test_sparsegpt_reconstructs_better_than_magnitude_and_wanda(group):
    weight, x = _correlated_layer()
    count = weight.numel() // 2
    new, keep = sparsegpt_prune(weight, _inputs(x).hessian, count, group, blocksize=8)
    assert int(keep.sum()) == count and torch.all(new[~keep] == 0)
    magnitude = weight * group_mask(weight.abs(), count, group)
    wanda = weight * group_mask(wanda_scores(weight, _inputs(x)), count, group)
    assert _error(weight, new, x) < _error(weight, magnitude, x)
    assert _error(weight, new, x) < _error(weight, wanda, x)


def test_sparsegpt_with_everything_kept_changes_nothing():
    weight, x = _correlated_layer(3)
    new, keep = sparsegpt_prune(weight, _inputs(x).hessian, weight.numel(), "per_layer")
    assert keep.all() and torch.allclose(new, weight, atol=1e-6)


def test_sparsegpt_method_reshapes_a_convolution():
    weight = torch.randn(4, 2, 3, 3, generator=torch.Generator().manual_seed(4))
    x = torch.randn(64, 18, generator=torch.Generator().manual_seed(5))
    pruning = SparseGPT(blocksize=6).prune_layer(weight, _inputs(x), 36, "per_layer")
    assert pruning.mask.shape == weight.shape and int(pruning.mask.sum()) == 36
    assert torch.all(pruning.weight[~pruning.mask] == 0)


def test_outlier_ratio_by_hand():
    # mean of [1]*9 + [46] is 5.5; entries above 2 * 5.5 = 11: one of ten
    assert outlier_ratio([torch.ones(3, 3), torch.tensor([46.0])], m=2.0) == pytest.approx(0.1)


def test_owl_densities_meet_the_budget_and_follow_the_ratios():
    ratios = {"a": 0.01, "b": 0.05, "c": 0.03, "d": 0.02}
    sizes = {"a": 1000, "b": 1000, "c": 1000, "d": 1000}
    densities = owl_densities(ratios, sizes, 0.7, lam=0.08)
    assert sum(sizes[n] * densities[n] for n in sizes) == pytest.approx(keep_budget(4000, 0.7), abs=1e-9)
    assert sorted(densities, key=densities.get) == sorted(ratios, key=ratios.get)
    # the official mapping spans [0, 2 lambda] and centres its mean: within 2 lambda of the target in general, within
    # lambda (the paper's [S - lambda, S + lambda]) when the ratios are spread symmetrically
    assert all(abs(d - 0.3) <= 2 * 0.08 for d in densities.values())
    symmetric = owl_densities({"a": 0.01, "b": 0.02, "c": 0.04, "d": 0.05}, sizes, 0.7, lam=0.08)
    assert all(abs(d - 0.3) <= 0.08 + 1e-12 for d in symmetric.values())
    assert max(symmetric.values()) == pytest.approx(0.38) and min(symmetric.values()) == pytest.approx(0.22)
    assert max(densities.values()) - min(densities.values()) == pytest.approx(
        2 * 0.08
    )  # a band 2 lambda wide
    # the official arithmetic (luuyin/OWL lib/prune_all.py) for equal blocks
    low, high = min(ratios.values()), max(ratios.values())
    official = {n: (r - low) / (high - low) * 0.16 for n, r in ratios.items()}
    mean = sum(official.values()) / 4
    assert all(math.isclose(densities[n], official[n] - mean + 0.3) for n in ratios)


def test_owl_with_unequal_blocks_is_exact_and_uniform_for_equal_ratios():
    sizes = {"a": 100, "b": 3000, "c": 700}
    densities = owl_densities({"a": 0.2, "b": 0.0, "c": 0.1}, sizes, 0.5)
    assert sum(sizes[n] * densities[n] for n in sizes) == pytest.approx(keep_budget(3800, 0.5))
    flat = owl_densities(dict.fromkeys(sizes, 0.1), sizes, 0.5)
    assert all(d == pytest.approx(1900 / 3800) for d in flat.values())


def test_owl_clips_at_full_density_and_still_meets_the_budget():
    sizes = {"a": 500, "b": 500, "c": 2000}
    densities = owl_densities({"a": 0.0, "b": 0.5, "c": 1.0}, sizes, 0.05, lam=0.2)
    assert densities["c"] == 1.0 and all(0.0 <= d <= 1.0 for d in densities.values())
    assert sum(sizes[n] * densities[n] for n in sizes) == pytest.approx(keep_budget(3000, 0.05))
    assert densities["a"] < densities["b"] < densities["c"]


def test_per_layer_is_the_plain_top_k():
    score = torch.rand(5, 7, generator=torch.Generator().manual_seed(6))
    mask = group_mask(score, 12, "per_layer")
    assert torch.equal(mask, top_mask(score, 12)) and int(mask.sum()) == 12
    assert score[mask].min() > score[~mask].max()
