"""Helpers shared by the methods that score a network at initialization (SNIP, GraSP, SynFlow).

They fix the two things that silently change an at-init mask: the mode of the normalization layers while scoring,
and which examples are scored; and they say clearly when a method was given no data.
"""

from __future__ import annotations

import torch
from torch import nn

from prunebench.core.errors import UsageError
from prunebench.methods.base import ScoringData


class _Absent:
    """Batches that were never given: iterating raises the one-line error of :class:`MissingData`."""

    def __init__(self, method: str) -> None:
        self.method = method

    def __iter__(self):
        raise UsageError(f"{self.method} scores with training data: pass data=[(inputs, targets), ...]")


class MissingData(ScoringData):
    """The data of a call that gave none (``prunebench.prune`` without ``data=``).

    A data-free method never draws from it; a method that does (SNIP, GraSP, or a plug-in that iterates over its
    data) gets a one-line :class:`~prunebench.core.errors.UsageError` naming the method, not a ``TypeError`` on ``None``.
    """

    def __init__(self, method: str) -> None:
        super().__init__(_Absent(method))


def set_batchnorm_mode(model: nn.Module, *, train: bool) -> None:
    """Put the BatchNorm layers of ``model`` in train mode (batch statistics) or eval mode (running statistics).

    Every other module is put in eval mode, so that dropout never randomizes a score.
    """
    model.eval()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.train(train)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter."""
    return next(model.parameters()).device


def examples_per_class(
    data: ScoringData | None, k: int, method: str, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` training examples of each class on ``device``; a clear error if the method was given no data."""
    if data is None:
        raise UsageError(f"{method} scores with training data: pass data=[(inputs, targets), ...]")
    inputs, targets = data.per_class(k)
    return inputs.to(device), targets.to(device)
