"""Accounting from the weights themselves, checked against torch.utils.flop_counter and direct counts."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

import prunebench
from prunebench.accounting import account, layer_flops


def test_dense_flops_match_torch_flop_counter(small_convnet):
    per_layer = layer_flops(small_convnet, (1, 8, 8))
    with FlopCounterMode(display=False) as counter:
        small_convnet(torch.zeros(1, 1, 8, 8))
    assert sum(per_layer.values()) == counter.get_total_flops()


def test_sparsity_and_flops_are_counted_from_zero_weights(small_convnet):
    masks = prunebench.prune(small_convnet, "magnitude", 0.75, scope="uniform")
    prunebench.apply_masks(small_convnet, masks)
    stats = account(small_convnet, (1, 8, 8))
    sizes = {n: m.numel() for n, m in masks.items()}
    kept = sum(int(m.sum()) for m in masks.values())
    assert stats["prunable_nonzero"] == kept
    assert stats["achieved_sparsity"] == 1 - kept / sum(sizes.values())
    dense = layer_flops(small_convnet, (1, 8, 8))
    expected_sparse = sum(dense[n] * int(masks[n].sum()) / sizes[n] for n in masks)
    assert stats["flops_sparse"] == expected_sparse
    assert stats["speedup"] == stats["flops_dense"] / expected_sparse
    total = sum(p.numel() for p in small_convnet.parameters())
    nonzero = sum(int((p != 0).sum()) for p in small_convnet.parameters())
    assert stats["compression_ratio"] == total / nonzero
    assert not stats["collapsed"]


def test_a_layer_pruned_away_is_flagged_as_collapsed(small_convnet):
    with torch.no_grad():
        small_convnet[2].weight.zero_()
    stats = account(small_convnet, (1, 8, 8))
    assert stats["collapsed"] and stats["min_layer_density"] == 0.0
