"""The public Python API: use the registered methods outside the harness, and see a model's prunable set."""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from prunebench.core.errors import UsageError
from prunebench.methods._scoring import MissingData
from prunebench.methods.base import ScoringData, ScoringMethod
from prunebench.methods.method_registry import MethodSpec, all_methods, get_method
from prunebench.pruning.mask_application import apply_masks
from prunebench.pruning.prunable import prunable_set, prunable_weights
from prunebench.pruning.saved_masks import load_mask

__all__ = ["apply_masks", "list_methods", "load_mask", "prunable_set", "prune"]


def list_methods() -> list[MethodSpec]:
    """Every registered method with its schedule, scopes and paper."""
    return all_methods()


def prune(
    model: nn.Module,
    method: str,
    sparsity: float,
    scope: str | None = None,
    data: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    *,
    prune_embeddings: bool = False,
    **hparams,
) -> dict[str, torch.Tensor]:
    """Boolean keep masks for ``model`` at exactly ``sparsity``, one per prunable weight; ``model`` is not modified.

    ``method`` is a registered method whose schedule is ``at_init`` or ``after_training``; ``scope`` one of its scopes
    (its first by default); ``data`` an iterable of ``(inputs, targets)`` batches for methods that score with data
    (a method that needs data and was given none raises a one-line :class:`~prunebench.core.errors.UsageError`).
    ``prune_embeddings`` adds the ``nn.Embedding`` weights to the prunable set (see :mod:`prunebench.pruning.prunable`).
    Keyword arguments override the method's hyperparameters. Masks are keyed as in ``model.named_parameters()``.
    A model on the ``meta`` device is refused: its weights have no values to score (:func:`prunable_set` lists its
    prunable set all the same).
    """
    spec = get_method(method)
    if spec.track != "unstructured":
        raise UsageError(
            f"prune() computes weight masks; {method!r} prunes channels (bench run --track structured)"
        )
    if spec.schedule not in ("at_init", "after_training"):
        raise UsageError(
            f"prune() computes masks for at_init and after_training methods; {method!r} is {spec.schedule}: "
            "run it with `bench run`"
        )
    scope = scope or spec.scopes[0]
    if scope not in spec.scopes:
        raise UsageError(f"{method} supports scopes {', '.join(spec.scopes)}; got {scope!r}")
    if not 0.0 < sparsity < 1.0:
        raise UsageError(f"sparsity must lie in (0, 1), got {sparsity}")
    if any(p.is_meta for p in model.parameters()):
        raise UsageError(
            "the model is on the meta device, so its weights have no values to score: materialize it first "
            "(model.to_empty(device='cpu'), then initialize it); prunebench.prunable_set(model) lists its prunable set"
        )
    prunable_weights(
        model, prune_embeddings=prune_embeddings
    )  # refuses reparametrized weights before copying
    instance = spec.build(spec.resolve(hparams))
    assert isinstance(instance, ScoringMethod)
    scratch = copy.deepcopy(model)
    scoring_data = ScoringData(data) if data is not None else MissingData(method)
    weights = prunable_weights(scratch, prune_embeddings=prune_embeddings)
    masks = instance.masks(scratch, weights, sparsity, scope, scoring_data)
    return {name: mask.detach().to(torch.bool).cpu() for name, mask in masks.items()}
