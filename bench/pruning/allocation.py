"""Scopes: masks at exactly a sparsity budget, split across layers by a scope.

The scopes and their arithmetic (the budget ``keep = round(N * (1 - sparsity))``, each layer's density and count) are
described and computed in :mod:`prunebench.pruning.keep_budget`, which needs no torch; this module re-exports them and selects
the weights: ``global`` keeps the highest ``keep`` scores wherever they are, a layer-wise scope the highest scores of
each layer up to its count.
"""

from __future__ import annotations

import functools

import torch

from prunebench.core.errors import UsageError
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
    "layer_densities",
    "layer_keep_counts",
    "masks_from_scores",
    "top_mask",
]


def top_mask(score: torch.Tensor, count: int) -> torch.Tensor:
    """Boolean mask of exactly ``count`` highest scores (``torch.topk``: among equal scores the choice is fixed for
    a given device and PyTorch build, so the mask is deterministic)."""
    flat = score.detach().reshape(-1)
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if count > 0:
        mask[torch.topk(flat, count, sorted=False).indices] = True
    return mask.view_as(score)


def masks_from_scores(
    scores: dict[str, torch.Tensor], sparsity: float, scope: str
) -> dict[str, torch.Tensor]:
    """Keep masks at exactly ``sparsity``: the highest scores, allocated across layers by ``scope``.

    ``scores`` holds one tensor per prunable weight, in module order (the order matters for ``uniform_plus``).
    """
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
