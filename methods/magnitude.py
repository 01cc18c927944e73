"""Magnitude: keep the weights of largest |w|, under every schedule the harness runs a criterion under.

One criterion, five schedules (:mod:`prunebench.run.criterion_schedules`), each a published method:

* ``magnitude`` (``after_training``, the default): Han et al., NeurIPS 2015, "Learning both Weights and Connections
  for Efficient Neural Networks": prune the dense-trained network once, fine-tune with the mask fixed. With
  ``global`` scope this equals ``torch.nn.utils.prune.global_unstructured`` with ``L1Unstructured``; with ``uniform``
  per-layer ``l1_unstructured`` (the LAMP repository's ``glob`` and ``unif``). Deviation from Han et al.: one shot
  instead of their prune/retrain cycles, so that every method shares one budget; the iterative form is ``imp``.
* ``magnitude_init`` (``magnitude@at_init``): the data-free baseline of the pruning-at-initialization literature,
  ``Mag`` in Tanaka et al. 2020 (SynFlow, ``Pruners/pruners.py``) and the magnitude-at-init baseline of Frankle et
  al., ICLR 2021, "Pruning Neural Networks at Initialization: Why Are We Missing the Mark?". No deviation. With
  ``global`` scope it inherits the scale of each layer's initializer (Kaiming's bound shrinks with fan-in), so the
  widest layers are pruned hardest and can collapse at high sparsity; the record's ``min_layer_density`` and
  ``collapsed`` show it.
* ``gmp`` (``magnitude@gradual``): Zhu & Gupta 2017, gradual magnitude pruning along the cubic schedule while the
  weights train from initialization (:mod:`prunebench.run.gradual_schedule`, which documents the schedule and its deviations).
  Scopes ``global``, ``uniform`` and ``erk``, as published (RigL's and the reference's per-layer pruning).
* ``imp`` (``magnitude@iterative``): iterative magnitude pruning with rewinding, Frankle & Carbin, ICLR 2019, and
  Frankle et al., ICML 2020, as open_lth's ``sparse_global`` strategy (:mod:`prunebench.run.iterative_schedule`). It trains
  ``rounds + 1`` times the recipe (less the rewound part), so ``--methods all`` leaves it out.
* ``magnitude@one_shot``: the magnitude baseline of the post-training papers (Frantar & Alistarh 2023, SparseGPT;
  Sun et al. 2024, Wanda): prune the dense pre-training once, without fine-tuning by default, in any comparison
  group and N:M pattern, and in scope ``owl`` (Yin et al. 2024; the allocation comes from the Wanda scores of the
  calibration data, :mod:`prunebench.run.one_shot`). It differs from ``magnitude`` only in the fine-tuning (none
  by default) and in the scopes it allows; ``--methods all`` leaves it out.

The score is ``|w|`` of the weights as they are when the schedule prunes: initial, dense-trained, training, or
trained in the previous round.
"""

from __future__ import annotations

import torch
from torch import nn

from prunebench.methods.base import ScoringData, ScoringMethod, Weights
from prunebench.methods.method_registry import alias, register


@register(
    "magnitude",
    schedules=("after_training", "at_init", "gradual", "iterative", "one_shot"),
    scopes=("global", "uniform", "uniform_plus", "erk", "owl"),
    paper="Han et al., NeurIPS 2015, 'Learning both Weights and Connections for Efficient Neural Networks'",
)
class Magnitude(ScoringMethod):
    """Keep the largest |w|.

    Score s = |w|; see the module docstring for the paper and deviations under each schedule.
    """

    def scores(self, model: nn.Module, weights: Weights, data: ScoringData | None) -> dict[str, torch.Tensor]:
        return {name: w.detach().abs() for name, w in weights.items()}


alias(
    "magnitude_init",
    "magnitude@at_init",
    paper="Frankle et al., ICLR 2021, 'Pruning Neural Networks at Initialization: Why Are We Missing the Mark?'",
)
alias(
    "gmp",
    "magnitude@gradual",
    scopes=("global", "uniform", "erk"),
    paper="Zhu & Gupta 2017, 'To prune, or not to prune: exploring the efficacy of pruning for model compression'",
)
alias(
    "imp",
    "magnitude@iterative",
    paper="Frankle & Carbin, ICLR 2019, 'The Lottery Ticket Hypothesis'; Frankle et al., ICML 2020, "
    "'Linear Mode Connectivity and the Lottery Ticket Hypothesis'",
)
