"""The one-shot pass of schedule ``one_shot``: allocate each layer's count on the dense model, then prune it layer
by layer from calibration inputs (SparseGPT, Wanda), or once from a criterion's scores (magnitude).

1. **Calibration set** (:func:`calibration_set`): the first ``calibration`` examples of the training loader's
   epoch 0, whose order (a permutation of the training split, and its augmentation) is drawn from the run's seed
   alone, so every method of a seed calibrates on the same examples; never the test split.
2. **Allocation** (:func:`allocate`), on the dense model before anything is pruned: each layer's keep count by the
   run's scope. ``uniform``, ``uniform_plus``, ``erk`` from the layer shapes
   (:func:`~prunebench.pruning.keep_budget.layer_keep_counts`); ``global`` from the highest ``keep`` of all layers'
   scores (a one-shot method's :meth:`~prunebench.methods.base.OneShotMethod.layer_scores`, a criterion's
   :meth:`~prunebench.methods.base.ScoringMethod.scores`); ``owl`` (Yin et al. 2024) from the outlier ratio of each
   block's Wanda scores, one density per block (:mod:`prunebench.pruning.owl`), the counts meeting the budget
   exactly. An N:M pattern keeps N/M of every layer, so it runs in scope ``uniform`` only.
3. **Pruning.** A one-shot method prunes block by block (:func:`~prunebench.pruning.calibration.pruning_blocks`):
   the block's inputs are captured on the model as it is, its earlier blocks already pruned (and reconstructed), as
   the official Wanda and SparseGPT code prune decoder layer after decoder layer; each layer of the block keeps its
   count in the run's comparison group. A scoring criterion scores the dense model once (its data the calibration
   set) and keeps its count of the highest scores of each layer in the group.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prunebench.core.errors import UsageError
from prunebench.methods.base import Masks, OneShotMethod, ScoringData, ScoringMethod
from prunebench.pruning.allocation import (
    LAYERWISE_SCOPES,
    counts_from_densities,
    keep_budget,
    layer_counts,
    layer_keep_counts,
)
from prunebench.pruning.calibration import capture_inputs, first_examples, pruning_blocks
from prunebench.pruning.comparison_groups import group_mask, nm_pattern
from prunebench.pruning.mask_application import apply_masks

Batches = list[tuple[torch.Tensor, torch.Tensor]]
"""Calibration batches ``(inputs, targets)``, on the run's device."""

ONE_SHOT_SCOPES = ("global", *LAYERWISE_SCOPES, "owl")
"""The scopes the one-shot pass allocates in."""


@dataclass
class OneShotResult:
    """What the one-shot pass leaves: the masks, the new values of the weights the method reconstructed, and what it
    did for the record."""

    masks: Masks
    weights: dict[str, torch.Tensor] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def calibration_set(train: Iterable[tuple[torch.Tensor, torch.Tensor]], count: int) -> Batches:
    """The first ``count`` examples of the training loader's epoch 0, in its batches (see the module docstring)."""
    set_epoch = getattr(train, "set_epoch", None)
    if set_epoch is not None:
        set_epoch(0)
    return first_examples(train, count)


def _inputs(batches: Batches) -> list[torch.Tensor]:
    return [inputs for inputs, _ in batches]


def _sizes(weights: dict[str, nn.Parameter]) -> dict[str, int]:
    return {name: weight.numel() for name, weight in weights.items()}


def dense_scores(
    model: nn.Module,
    weights: dict[str, nn.Parameter],
    method: OneShotMethod | ScoringMethod,
    batches: Batches,
) -> dict[str, torch.Tensor]:
    """Each layer's scores on the dense ``model``: a one-shot method's from every layer's inputs, a criterion's
    from its own scoring (on a copy, which it may change) with the calibration set as its data."""
    if isinstance(method, OneShotMethod):
        inputs = capture_inputs(model, list(weights), _inputs(batches), hessian=method.needs_hessian)
        return {name: method.layer_scores(weight.detach(), inputs[name]) for name, weight in weights.items()}
    scratch = copy.deepcopy(model)
    copies = dict(scratch.named_parameters())
    scores = method.scores(scratch, {name: copies[name] for name in weights}, ScoringData(batches))
    return {name: scores[name].detach() for name in weights}


def owl_allocation(
    model: nn.Module,
    weights: dict[str, nn.Parameter],
    blocks: Sequence[Sequence[str]],
    batches: Batches,
    sparsity: float,
) -> tuple[dict[str, int], dict[str, Any]]:
    """OWL's counts: each block's outlier ratio of its layers' Wanda scores on the dense model, its density from the
    ratios (within ``lam`` of the target), shared by its layers, the counts meeting the budget exactly; and the
    ratios and densities by block (keyed by the block's first weight) for the record."""
    from prunebench.methods.wanda import wanda_scores
    from prunebench.pruning import owl

    inputs = capture_inputs(model, list(weights), _inputs(batches))
    scores = {name: wanda_scores(weight.detach(), inputs[name]) for name, weight in weights.items()}
    keys = [block[0] for block in blocks]
    ratios = {
        key: owl.outlier_ratio([scores[n] for n in block]) for key, block in zip(keys, blocks, strict=True)
    }
    block_sizes = {
        key: sum(weights[n].numel() for n in block) for key, block in zip(keys, blocks, strict=True)
    }
    densities = owl.owl_densities(ratios, block_sizes, sparsity)
    layer_densities = {n: densities[key] for key, block in zip(keys, blocks, strict=True) for n in block}
    sizes = _sizes(weights)
    counts = counts_from_densities(sizes, layer_densities, keep_budget(sum(sizes.values()), sparsity))
    return counts, {"owl": {"outlier_ratios": ratios, "block_densities": densities}}


def allocate(
    model: nn.Module,
    weights: dict[str, nn.Parameter],
    method: OneShotMethod | ScoringMethod,
    sparsity: float,
    scope: str,
    group: str,
    batches: Batches,
    scores: dict[str, torch.Tensor] | None = None,
) -> tuple[dict[str, int], dict[str, Any]]:
    """Each layer's keep count by ``scope`` on the dense ``model`` (``scores``: its dense scores when the caller has
    them), and what the allocation found for the record (OWL's ratios and densities)."""
    if nm_pattern(group) is not None and scope != "uniform":
        raise UsageError(
            f"the N:M pattern {group} keeps N/M of every layer: it runs in scope uniform, not {scope}"
        )
    if scope in LAYERWISE_SCOPES:
        return layer_keep_counts({n: w.shape for n, w in weights.items()}, sparsity, scope), {}
    if scope == "global":
        scores = scores if scores is not None else dense_scores(model, weights, method, batches)
        return layer_counts(scores, sparsity, "global"), {}
    if scope == "owl":
        return owl_allocation(model, weights, pruning_blocks(model, list(weights)), batches, sparsity)
    raise UsageError(f"one_shot allocates in the scopes {', '.join(ONE_SHOT_SCOPES)}; got {scope!r}")


def _checked_mask(
    method: OneShotMethod, name: str, mask: torch.Tensor, weight: torch.Tensor, count: int
) -> None:
    """A one-shot method's mask of layer ``name`` must be a bool mask of its shape with exactly ``count`` kept."""
    if mask.dtype != torch.bool or mask.shape != weight.shape or int(mask.sum()) != count:
        raise RuntimeError(
            f"{method.name} returned for {name} a {mask.dtype} mask of shape {tuple(mask.shape)} keeping "
            f"{int(mask.sum())}; the layer needs a bool mask of shape {tuple(weight.shape)} keeping {count}"
        )


@torch.no_grad()
def prune_sequentially(
    model: nn.Module,
    weights: dict[str, nn.Parameter],
    method: OneShotMethod,
    counts: dict[str, int],
    group: str,
    batches: Batches,
) -> OneShotResult:
    """Prune ``model`` in place block by block, each block's inputs captured after its predecessors were pruned
    (and, for a reconstructing method, updated); the result holds the reconstructed weights' new values and each
    such layer's relative change of its kept weights, ``||W' - W|| / ||W||`` over the mask."""
    masks: Masks = {}
    updated: dict[str, torch.Tensor] = {}
    change: dict[str, float] = {}
    for block in pruning_blocks(model, list(weights)):
        inputs = capture_inputs(model, block, _inputs(batches), hessian=method.needs_hessian)
        for name in block:
            weight = weights[name]
            pruned = method.prune_layer(weight.detach().clone(), inputs[name], counts[name], group)
            _checked_mask(method, name, pruned.mask, weight, counts[name])
            kept = pruned.mask.to(weight.dtype)
            if pruned.weight is not None:
                new = pruned.weight.to(weight.dtype).reshape(weight.shape) * kept
                change[name] = float((new - weight * kept).norm() / (weight * kept).norm().clamp_min(1e-30))
                weight.copy_(new)
                updated[name] = new.clone()
            weight.mul_(kept)
            masks[name] = pruned.mask
    details: dict[str, Any] = {"weights_updated": bool(updated)}
    if updated:
        details["kept_weight_change"] = change
    return OneShotResult(masks, updated, details)


def one_shot(
    model: nn.Module,
    weights: dict[str, nn.Parameter],
    method: OneShotMethod | ScoringMethod,
    sparsity: float,
    scope: str,
    group: str,
    batches: Batches,
) -> OneShotResult:
    """The one-shot pass on ``model`` (whose prunable weights are ``weights``), pruned in place: allocation on the
    dense model, then a one-shot method's sequential pruning or a criterion's masks from its dense scores."""
    scores = dense_scores(model, weights, method, batches) if isinstance(method, ScoringMethod) else None
    counts, found = allocate(model, weights, method, sparsity, scope, group, batches, scores)
    if scores is not None:
        masks = {name: group_mask(scores[name], counts[name], group) for name in weights}
        apply_masks(model, masks)
        result = OneShotResult(masks, details={"weights_updated": False})
    else:
        result = prune_sequentially(model, weights, method, counts, group, batches)
    samples = sum(len(inputs) for inputs, _ in batches)
    result.details = {"calibration_samples": samples, "layer_counts": counts, **found, **result.details}
    return result
