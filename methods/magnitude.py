"""Magnitude pruning after training (Han et al., NeurIPS 2015): one-shot prune, then fine-tune."""

from __future__ import annotations

import torch
from torch import nn

from prunebench.methods.base import ScoringData, ScoringMethod, Weights
from prunebench.methods.registry import register


@register(
    "magnitude",
    schedule="after_training",
    scopes=("global", "uniform", "uniform_plus", "erk"),
    paper="Han et al., NeurIPS 2015, 'Learning both Weights and Connections for Efficient Neural Networks'",
)
class Magnitude(ScoringMethod):
    """Keep the largest |w| of the dense-trained model, then fine-tune with the mask fixed.

    Score s = |w|. With ``global`` scope this equals ``torch.nn.utils.prune.global_unstructured`` with
    ``L1Unstructured``; with ``uniform`` it equals per-layer ``l1_unstructured`` (the LAMP repository's ``glob`` and
    ``unif``). Deviation from Han et al.: one shot instead of iterative prune/retrain cycles, so that every method
    shares one budget; the iterative variant is LAMP's protocol, not this baseline.
    """

    def scores(self, model: nn.Module, weights: Weights, data: ScoringData | None) -> dict[str, torch.Tensor]:
        return {name: w.detach().abs() for name, w in weights.items()}
