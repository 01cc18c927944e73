"""LAMP: layer-adaptive magnitude-based pruning (Lee et al., ICLR 2021)."""

from __future__ import annotations

import torch
from torch import nn

from prunebench.methods.base import ScoringData, ScoringMethod, Weights
from prunebench.methods.registry import register


def lamp_scores(weight: torch.Tensor) -> torch.Tensor:
    """LAMP score of every entry of one layer (Lee et al. 2021, Eq. 2).

    With the layer's weights sorted by magnitude ascending (u < v means |w_u| <= |w_v|),
    ``score(u) = w_u^2 / sum_{v >= u} w_v^2``: each weight's squared magnitude over the sum of its own and all larger
    ones. The largest weight of every layer scores 1, so one global threshold never empties a layer.
    """
    squares = weight.detach().reshape(-1).float() ** 2
    ordered, order = squares.sort()
    tail_sums = ordered.flip(0).cumsum(0).flip(0)
    scores = torch.empty_like(squares)
    scores[order] = ordered / tail_sums.clamp_min(torch.finfo(squares.dtype).tiny)
    return scores.view_as(weight)


@register(
    "lamp",
    schedule="after_training",
    scopes=("global",),
    paper="Lee et al., ICLR 2021, 'Layer-adaptive Sparsity for the Magnitude-based Pruning'",
)
class LAMP(ScoringMethod):
    """LAMP scores on the dense-trained weights, one global threshold, then fine-tune with the mask fixed.

    As the official code (``tools/pruners.py``), the global top-k of the LAMP scores sets each layer's survivor count
    and each layer keeps its largest weights; since LAMP is monotone in |w| within a layer, keeping the top LAMP scores
    is the same mask. Only ``global`` scope: a layer-wise LAMP is layer-wise magnitude. Deviation from the paper's
    protocol: one shot at the target instead of 20 rounds of 20% pruning with retraining, so that every method shares
    one budget.
    """

    def scores(self, model: nn.Module, weights: Weights, data: ScoringData | None) -> dict[str, torch.Tensor]:
        return {name: lamp_scores(w) for name, w in weights.items()}
