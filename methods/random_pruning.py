"""Random pruning: the control every pruning criterion must beat, at initialization and after training."""

from __future__ import annotations

import torch
from torch import nn

from prunebench.methods.base import ScoringData, ScoringMethod, Weights
from prunebench.methods.method_registry import register


@register(
    "random",
    schedules=("at_init", "after_training"),
    scopes=("global", "uniform", "uniform_plus", "erk"),
    paper="Random pruning control (Liu et al., ICLR 2022, 'The Unreasonable Effectiveness of Random Pruning')",
)
class RandomPruning(ScoringMethod):
    """Random scores: within each layer the kept weights are uniformly random.

    Scores are i.i.d. uniform, drawn from PyTorch's global generator (which the harness seeds per run), so the mask
    is fixed by the seed. With ``global`` scope the per-layer counts follow the random draw (close to uniform); the
    other scopes fix them exactly (``erk`` gives the random ER/ERK baseline of RigL).

    Schedules: ``at_init`` (``random``, the default) is the control of the pruning-at-initialization methods (Liu et
    al. 2022; Frankle et al. 2021); ``random@after_training`` prunes the dense pre-training at random and fine-tunes
    like every after-training criterion, the ``RandomPruning`` control of ShrinkBench (Blalock et al., MLSys 2020,
    "What is the State of Neural Network Pruning?"). It is not declared for ``gradual`` or ``iterative``: no paper
    uses random scores there, and a new random draw at each pruning step would be no criterion at all.
    """

    def scores(self, model: nn.Module, weights: Weights, data: ScoringData | None) -> dict[str, torch.Tensor]:
        return {name: torch.rand(w.shape, device=w.device) for name, w in weights.items()}
