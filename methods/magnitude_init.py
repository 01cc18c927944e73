"""Magnitude pruning at initialization: the data-free baseline of the pruning-at-init literature."""

from __future__ import annotations

import torch
from torch import nn

from prunebench.methods.base import ScoringData, ScoringMethod, Weights
from prunebench.methods.registry import register


@register(
    "magnitude_init",
    schedule="at_init",
    scopes=("global", "uniform", "uniform_plus", "erk"),
    paper="Frankle et al., ICLR 2021, 'Pruning Neural Networks at Initialization: Why Are We Missing the Mark?'",
)
class MagnitudeInit(ScoringMethod):
    """Keep the largest |w| of the initial weights, then train sparse.

    Score s = |w| at initialization: the ``Mag`` baseline of Tanaka et al. 2020 (SynFlow, ``Pruners/pruners.py``) and
    the magnitude-at-init baseline of Frankle et al. 2021. No deviation: the scores are the initial weights' magnitudes,
    one shot. With ``global`` scope it inherits the scale of each layer's initializer (Kaiming's bound shrinks with
    fan-in), so the widest layers are pruned hardest and can collapse at high sparsity; the record's
    ``min_layer_density`` and ``collapsed`` show it.
    """

    def scores(self, model: nn.Module, weights: Weights, data: ScoringData | None) -> dict[str, torch.Tensor]:
        return {name: w.detach().abs() for name, w in weights.items()}
