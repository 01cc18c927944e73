"""SparseGPT: one-shot pruning with layer-wise reconstruction (Frantar & Alistarh, ICML 2023, "SparseGPT: Massive
Language Models Can Be Accurately Pruned in One-Shot")."""

from __future__ import annotations

from typing import Annotated

import torch

from prunebench.methods.base import LayerPruning, OneShotMethod
from prunebench.methods.method_registry import register
from prunebench.pruning.calibration import LayerInputs
from prunebench.pruning.obs_reconstruction import obs_saliency, sparsegpt_prune


@register(
    "sparsegpt",
    schedule="one_shot",
    scopes=("global", "uniform", "erk", "owl"),
    paper="Frantar & Alistarh, ICML 2023, 'SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot'",
    version=1,
)
class SparseGPT(OneShotMethod):
    """Prune each layer by the OBS saliency and update its kept weights to reconstruct its calibration outputs.

    Algorithm 1 of Frantar & Alistarh 2023 (:mod:`prunebench.pruning.obs_reconstruction`, which states its deviations
    from the official ``fasterprune``: exact counts, dead inputs), on the Hessian ``2 X X^T`` of each layer's
    calibration inputs, layer by layer on the outputs of the already-pruned earlier blocks, as the official
    ``prune_sparsegpt`` (``locuslab/wanda``, ``lib/prune.py``) per decoder layer. The kept weights change: the record
    says so (``weights_updated``) with each layer's relative change. The ``global`` scope compares the saliencies of
    the dense layers (the official code prunes every layer at the target).
    """

    needs_hessian = True

    def __init__(
        self,
        blocksize: Annotated[int, "columns whose mask is chosen at once (lazy batch updates)"] = 128,
        percdamp: Annotated[
            float, "dampening of the Hessian, as a fraction of the mean of its diagonal"
        ] = 0.01,
    ) -> None:
        if blocksize < 1:
            raise ValueError(f"blocksize must be at least 1, got {blocksize}")
        if not percdamp > 0:
            raise ValueError(f"percdamp must be positive, got {percdamp}")
        self.blocksize = blocksize
        self.percdamp = percdamp

    def layer_scores(self, weight: torch.Tensor, inputs: LayerInputs) -> torch.Tensor:
        rows = weight.detach().reshape(weight.shape[0], -1)
        return obs_saliency(rows, inputs.hessian, self.percdamp).view(weight.shape)

    def prune_layer(self, weight: torch.Tensor, inputs: LayerInputs, count: int, group: str) -> LayerPruning:
        rows = weight.detach().reshape(weight.shape[0], -1)
        updated, keep = sparsegpt_prune(rows, inputs.hessian, count, group, self.blocksize, self.percdamp)
        return LayerPruning(keep.view(weight.shape), updated.view(weight.shape))
