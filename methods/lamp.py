"""LAMP: layer-adaptive magnitude-based pruning (Lee et al., ICLR 2021)."""

from __future__ import annotations

import torch
from torch import nn

from prunebench.methods.base import ScoringData, ScoringMethod, Weights
from prunebench.methods.method_registry import register


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
    schedules=("after_training", "iterative"),
    scopes=("global",),
    paper="Lee et al., ICLR 2021, 'Layer-adaptive Sparsity for the Magnitude-based Pruning'",
)
class LAMP(ScoringMethod):
    """LAMP scores, one global threshold.

    As the official code (``tools/pruners.py``), the global top-k of the LAMP scores sets each layer's survivor count
    and each layer keeps its largest weights; since LAMP is monotone in |w| within a layer, keeping the top LAMP scores
    is the same mask. Only ``global`` scope: a layer-wise LAMP is layer-wise magnitude.

    Schedules. The paper's protocol is iterative (``iterate.py``: 20 rounds that prune 20% of the remaining weights
    and retrain from the pruned weights with a fresh optimizer); the paper also evaluates LAMP with weight rewinding
    (its abstract: "LAMP continues to outperform baselines even in weight-rewinding setups").

    * ``lamp`` (``after_training``, the default): one shot at the target on the dense pre-training, then fine-tuning,
      so that it shares every other method's budget. Deviation: one round instead of 20.
    * ``lamp@iterative``: the harness's iterative schedule (:mod:`prunebench.run.iterative_schedule`), the paper's weight-rewinding
      setting: ``rounds`` rounds of ``1 - (1 - s)^(1/k)`` each, survivors rewound to ``rewind``. Deviations: the
      per-round fraction follows the target instead of 20%, and the survivors are rewound, where ``iterate.py``
      retrains them from their pruned values.
    """

    def scores(self, model: nn.Module, weights: Weights, data: ScoringData | None) -> dict[str, torch.Tensor]:
        return {name: lamp_scores(w) for name, w in weights.items()}
