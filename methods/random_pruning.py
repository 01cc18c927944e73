"""Random pruning at initialization: the control every pruning criterion must beat."""

from __future__ import annotations

import torch
from torch import nn

from prunebench.methods.base import ScoringData, ScoringMethod, Weights
from prunebench.methods.registry import register


@register(
    "random",
    schedule="at_init",
    scopes=("global", "uniform", "uniform_plus", "erk"),
    paper="Random pruning control (Liu et al., ICLR 2022, 'The Unreasonable Effectiveness of Random Pruning')",
)
class RandomPruning(ScoringMethod):
    """Random scores at initialization: within each layer the kept weights are uniformly random.

    Scores are i.i.d. uniform, drawn from PyTorch's global generator (which the harness seeds per run), so the mask
    is fixed by the seed. With ``global`` scope the per-layer counts follow the random draw (close to uniform); the
    other scopes fix them exactly (``erk`` gives the random ER/ERK baseline of RigL).
    """

    def scores(self, model: nn.Module, weights: Weights, data: ScoringData | None) -> dict[str, torch.Tensor]:
        return {name: torch.rand(w.shape, device=w.device) for name, w in weights.items()}
