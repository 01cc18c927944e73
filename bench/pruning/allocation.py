"""Scopes: masks at exactly a sparsity budget, split across layers by a scope.

The scopes and their arithmetic (the budget ``keep = round(N * (1 - sparsity))``, each layer's density and count) are
described and computed in :mod:`prunebench.pruning.keep_budget`, which needs no torch; this module re-exports them and selects
the weights: ``global`` keeps the highest ``keep`` scores wherever they are, a layer-wise scope the highest scores of
each layer up to its count. A comparison group other than ``per_layer`` (:mod:`prunebench.pruning.comparison_groups`:
``per_output``, N:M patterns) takes each layer's count from the scope and places it inside the layer by the group.
"""

from __future__ import annotations

import functools

import torch

from prunebench.core.errors import UsageError
from prunebench.pruning.comparison_groups import group_mask, top_mask
from prunebench.pruning.keep_budget import (
    LAYERWISE_SCOPES,
    counts_from_densities,
    keep_budget,
    layer_densities,
    layer_keep_counts,
)

__all__ = [
    "LAYERWISE_SCOPES",
    "counts_from_densities",
    "keep_budget",
    "layer_counts",
    "layer_densities",
    "layer_keep_counts",
    "masks_from_scores",
    "top_mask",
]


def masks_from_scores(
    scores: dict[str, torch.Tensor], sparsity: float, scope: str, group: str = "per_layer"
) -> dict[str, torch.Tensor]:
    """Keep masks at exactly ``sparsity``: the highest scores, allocated across layers by ``scope`` and inside each
    layer by the comparison ``group``.

    ``scores`` holds one tensor per prunable weight, in module order (the order matters for ``uniform_plus``).
    """
    if group != "per_layer":
        counts = layer_counts(scores, sparsity, scope)
        return {name: group_mask(score.detach(), counts[name], group) for name, score in scores.items()}
    if scope == "global":
        total = sum(s.numel() for s in scores.values())
        keep = keep_budget(total, sparsity)
        dtype = functools.reduce(torch.promote_types, (s.dtype for s in scores.values()))
        flat = torch.cat([s.detach().reshape(-1).to(dtype) for s in scores.values()])
        keep_flat = top_mask(flat, keep)
        masks, start = {}, 0
        for name, score in scores.items():
            masks[name] = keep_flat[start : start + score.numel()].view_as(score)
            start += score.numel()
        return masks
    if scope in LAYERWISE_SCOPES:
        counts = layer_keep_counts({n: s.shape for n, s in scores.items()}, sparsity, scope)
        return {name: top_mask(score.detach(), counts[name]) for name, score in scores.items()}
    raise UsageError(f"unknown scope {scope!r}; score-based scopes: global, {', '.join(LAYERWISE_SCOPES)}")


def layer_counts(scores: dict[str, torch.Tensor], sparsity: float, scope: str) -> dict[str, int]:
    """Each layer's keep count at ``sparsity`` under ``scope``: for ``global``, how many of the highest ``keep``
    scores over all layers fall in each layer; for a layer-wise scope, its counts from the shapes alone."""
    if scope == "global":
        masks = masks_from_scores(scores, sparsity, "global")
        return {name: int(mask.sum()) for name, mask in masks.items()}
    if scope in LAYERWISE_SCOPES:
        return layer_keep_counts({n: s.shape for n, s in scores.items()}, sparsity, scope)
    raise UsageError(f"unknown scope {scope!r}; score-based scopes: global, {', '.join(LAYERWISE_SCOPES)}")
