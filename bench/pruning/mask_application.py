"""Applying keep masks: once in place, and after every optimizer step while a masked model trains.

Masks are applied to the weights themselves (no forward hook, no parametrization), so a masked training step costs one
fused multiply over the prunable weights after the optimizer step. A tied parameter is one weight: its mask may be
keyed by any of its names (:func:`prunebench.pruning.prunable.parameter_names`), and it is applied once.
"""

from __future__ import annotations

import torch
from torch import nn

from prunebench.core.errors import UsageError
from prunebench.pruning.prunable import parameter_names
from prunebench.run.trainer import Trainer, TrainHook


def _paired(
    model: nn.Module, masks: dict[str, torch.Tensor]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    params = dict(model.named_parameters())
    keys = parameter_names(model)
    missing = [name for name in masks if name not in keys]
    if missing:
        raise UsageError(f"masks name parameters the model does not have: {', '.join(missing)}")
    named: dict[str, str] = {}
    for name in masks:
        if keys[name] in named:
            raise UsageError(f"masks name one tied parameter twice: {named[keys[name]]} and {name}")
        named[keys[name]] = name
    weights = [params[keys[name]] for name in masks]
    for name, weight in zip(masks, weights, strict=True):
        if masks[name].shape != weight.shape:
            raise UsageError(
                f"mask for {name} has shape {tuple(masks[name].shape)}, weight {tuple(weight.shape)}"
            )
    factors = [m.to(device=w.device, dtype=w.dtype) for m, w in zip(masks.values(), weights, strict=True)]
    return weights, factors


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero, in place, every weight whose mask entry is ``False``."""
    weights, factors = _paired(model, masks)
    torch._foreach_mul_(weights, factors)


class MaskEnforcer(TrainHook):
    """Keeps pruned weights at exactly zero while the model trains (one fused multiply after each step)."""

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
        self.weights, self.factors = _paired(model, masks)

    @torch.no_grad()
    def on_train_start(self, trainer: Trainer) -> None:
        torch._foreach_mul_(self.weights, self.factors)

    @torch.no_grad()
    def after_step(self, trainer: Trainer) -> None:
        torch._foreach_mul_(self.weights, self.factors)

    def stacked_masks(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """All the enforcer does: the batched engine multiplies these pairs itself."""
        return list(zip(self.weights, self.factors, strict=True))
