"""Wanda: pruning by weights and activations (Sun et al., ICLR 2024, "A Simple and Effective Pruning Approach for
Large Language Models")."""

from __future__ import annotations

import torch

from prunebench.methods.base import LayerPruning, OneShotMethod
from prunebench.methods.method_registry import register
from prunebench.pruning.calibration import LayerInputs
from prunebench.pruning.comparison_groups import group_mask


def wanda_scores(weight: torch.Tensor, inputs: LayerInputs) -> torch.Tensor:
    """``|W_ij| * ||X_j||_2`` (Sun et al. 2024, eq. 1): each weight's magnitude times the norm of its input feature over
    the calibration rows; ``weight``'s shape (a convolution's input features are its unfolded patch entries)."""
    rows = weight.detach().reshape(weight.shape[0], -1).abs().to(torch.float32)
    return (rows * inputs.sq_norms.sqrt().reshape(1, -1)).view(weight.shape)


@register(
    "wanda",
    schedule="one_shot",
    scopes=("global", "uniform", "erk", "owl"),
    paper="Sun et al., ICLR 2024, 'A Simple and Effective Pruning Approach for Large Language Models'",
    version=1,
)
class Wanda(OneShotMethod):
    """Keep the weights of largest ``|W| * ||X||_2``, from calibration inputs, without any weight update.

    Sun et al. 2024, eq. 1; the layers are pruned block by block on the outputs of the already-pruned earlier blocks,
    as the official ``prune_wanda`` (``locuslab/wanda``, ``lib/prune.py``) does per decoder layer. The comparison group
    is the run's axis (:mod:`prunebench.pruning.comparison_groups`): the paper's default for language models is
    ``per_output`` (each output row keeps its share, section 3); the suite's default is ``per_layer`` for every method,
    so the comparison of the two is an explicit axis of the grid (the paper's analysis finds ``per_output`` better on
    LLaMA and ``per_layer`` on image classifiers).

    Deviations from the official code: (1) the official ``per_output`` prunes ``int(in * sparsity)`` weights of every
    row; here the layer's exact count (``round(numel * (1 - s))`` kept, by the scope) is split over the rows, one more
    for the first rows with the largest remainders when it does not divide (the same mask when ``in * s`` is whole);
    (2) the official ``WrappedGPT`` divides the squared norms by the number of calibration sequences; the plain sum is
    used here, which ranks the weights of a layer the same and, across layers (``global`` scope), differs only where
    layers see different numbers of input rows per sample (convolutions); (3) ties: ``per_output`` prunes the lower
    column index first, as the official stable sort; ``per_layer`` and N:M break them by ``torch.topk`` (the official
    per-layer threshold prunes every score equal to it); (4) the official ``image_classifiers`` code prunes per layer
    the scores at most the one at rank ``int(numel * s)``, one weight more than its share, and only ``nn.Linear``
    layers; here the count is exact and a convolution is scored on its unfolded patches. docs/one-shot.md ("Fidelity
    to the official code") has the comparison with the official code.
    """

    def layer_scores(self, weight: torch.Tensor, inputs: LayerInputs) -> torch.Tensor:
        return wanda_scores(weight, inputs)

    def prune_layer(self, weight: torch.Tensor, inputs: LayerInputs, count: int, group: str) -> LayerPruning:
        return LayerPruning(group_mask(wanda_scores(weight, inputs), count, group))
