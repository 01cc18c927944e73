"""LAMP's score against the formula by hand, and the public API."""

from __future__ import annotations

import pytest
import torch

import prunebench
from prunebench.core.errors import UsageError
from prunebench.methods.lamp import lamp_scores


def test_lamp_score_equals_the_formula_on_a_hand_made_tensor():
    weight = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
    # squares 1, 4, 9, 0.25; ascending 0.25 < 1 < 4 < 9; score = w^2 / (sum of squares of itself and larger ones)
    expected = torch.tensor([[1 / (1 + 4 + 9), 4 / (4 + 9)], [9 / 9, 0.25 / (0.25 + 1 + 4 + 9)]])
    assert torch.allclose(lamp_scores(weight), expected)


def test_lamp_keeps_the_largest_weight_of_every_layer(small_convnet):
    masks = prunebench.prune(small_convnet, "lamp", 0.99)
    weights = dict(small_convnet.named_parameters())
    for name, mask in masks.items():
        assert mask.reshape(-1)[weights[name].abs().argmax()]


def test_prune_returns_boolean_masks_and_leaves_the_model_alone(small_convnet):
    before = {n: p.clone() for n, p in small_convnet.named_parameters()}
    masks = prunebench.prune(small_convnet, "magnitude", 0.9, scope="uniform")
    assert all(m.dtype == torch.bool for m in masks.values())
    assert set(masks) == {n for n in before if n.endswith("weight")}
    assert all(torch.equal(before[n], p) for n, p in small_convnet.named_parameters())


def test_apply_masks_zeroes_exactly_the_pruned_weights(small_convnet):
    masks = prunebench.prune(small_convnet, "magnitude", 0.8, scope="global")
    prunebench.apply_masks(small_convnet, masks)
    params = dict(small_convnet.named_parameters())
    for name, mask in masks.items():
        assert torch.all(params[name][~mask] == 0)
        assert torch.all(params[name][mask] != 0)


def test_list_methods_names_the_baselines():
    names = {spec.name: spec for spec in prunebench.list_methods()}
    assert {"dense", "random", "magnitude", "lamp"} <= set(names)
    assert names["magnitude"].schedule == "after_training"
    assert set(names["magnitude"].scopes) == {"global", "uniform", "uniform_plus", "erk"}


def test_prune_refuses_bad_input(small_convnet):
    with pytest.raises(UsageError, match="registered: .*magnitude"):
        prunebench.prune(small_convnet, "no_such_method", 0.9)
    with pytest.raises(UsageError, match="supports scopes"):
        prunebench.prune(small_convnet, "lamp", 0.9, scope="uniform")
    with pytest.raises(UsageError, match=r"\(0, 1\)"):
        prunebench.prune(small_convnet, "magnitude", 1.2)


def test_random_masks_are_fixed_by_the_seed(small_convnet):
    torch.manual_seed(5)
    first = prunebench.prune(small_convnet, "random", 0.9, scope="erk")
    torch.manual_seed(5)
    second = prunebench.prune(small_convnet, "random", 0.9, scope="erk")
    assert all(torch.equal(first[n], second[n]) for n in first)
