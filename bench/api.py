"""The public Python API: use the registered methods outside the harness."""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from prunebench.errors import UsageError
from prunebench.masks import apply_masks
from prunebench.methods.base import ScoringData, ScoringMethod
from prunebench.methods.registry import MethodSpec, all_methods, get_method
from prunebench.prunable import prunable_weights

__all__ = ["apply_masks", "list_methods", "prune"]


def list_methods() -> list[MethodSpec]:
    """Every registered method with its schedule, scopes and paper."""
    return all_methods()


def prune(
    model: nn.Module,
    method: str,
    sparsity: float,
    scope: str | None = None,
    data: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    **hparams,
) -> dict[str, torch.Tensor]:
    """Boolean keep masks for ``model`` at exactly ``sparsity``, one per prunable weight; ``model`` is not modified.

    ``method`` is a registered method whose schedule is ``at_init`` or ``after_training``; ``scope`` one of its scopes
    (its first by default); ``data`` an iterable of ``(inputs, targets)`` batches for methods that score with data.
    Keyword arguments override the method's hyperparameters. Masks are keyed as in ``model.named_parameters()``.
    """
    spec = get_method(method)
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
    instance = spec.build(spec.resolve(hparams))
    assert isinstance(instance, ScoringMethod)
    scratch = copy.deepcopy(model)
    scoring_data = ScoringData(data) if data is not None else None
    masks = instance.masks(scratch, prunable_weights(scratch), sparsity, scope, scoring_data)
    return {name: mask.detach().to(torch.bool).cpu() for name, mask in masks.items()}
