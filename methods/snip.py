"""SNIP: single-shot network pruning based on connection sensitivity (Lee et al., ICLR 2019)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from prunebench.methods._scoring import examples_per_class, model_device, set_batchnorm_mode
from prunebench.methods.base import ScoringData, ScoringMethod, Weights
from prunebench.methods.method_registry import register

CHUNK = 256
"""Examples per forward pass; the gradient is accumulated exactly over chunks (eval-mode BN makes it additive)."""


@register(
    "snip",
    schedule="at_init",
    scopes=("global", "uniform", "uniform_plus", "erk"),
    paper="Lee et al., ICLR 2019, 'SNIP: Single-shot Network Pruning based on Connection Sensitivity'",
)
class SNIP(ScoringMethod):
    """Keep the weights with the largest connection sensitivity |dL/dc| at c = 1, from training data at init.

    Lee et al. 2019, Eq. 6: with a multiplicative gate c on every connection, ``g_j = dL(c ⊙ w)/dc_j`` at ``c = 1``
    equals ``w_j * dL/dw_j``, and the score is ``s_j = |g_j| / sum_k |g_k|``. The normalization by the sum is a
    positive constant, so it is left out (same ranking). ``L`` is the mean cross-entropy over the scoring examples.

    Data: ``samples_per_class`` examples of every class from the training data, the first ones of each class in the
    seed's training order (10 by default: 100 examples on 10-class data). The official code
    (``namhoonlee/snip-public``, ``snip/prune.py``) scores one random training batch of ``batch_size`` = 100, i.e.
    10 examples per class on average on MNIST and CIFAR-10; on class-balanced data both estimate the same mean
    gradient, and the balanced draw removes the batch's class imbalance. ``samples_per_class`` sets the size.

    BatchNorm mode while scoring: eval (running statistics, which are the initial ones: mean 0, variance 1), as the
    official code (``is_train=False``) and Synaptic-Flow (``model.eval()`` in ``prune_loop``). Dropout is off.

    Deviations from the official code: (1) balanced examples per class instead of one random batch (above); (2) biases
    are not scored or pruned: the benchmark's prunable set is the weights (Conv, Linear, attention projections) for every method, whereas the
    TF code also prunes the biases (keys ``b``); (3) the kept count per layer follows the requested scope (the paper is
    ``global``); (4) the gradient is accumulated over chunks of at most 256 examples to bound memory, which is exact
    because eval-mode BN makes the mean loss a weighted sum of the chunks' losses.
    """

    def __init__(self, samples_per_class: int = 10) -> None:
        self.samples_per_class = samples_per_class

    def scores(self, model: nn.Module, weights: Weights, data: ScoringData | None) -> dict[str, torch.Tensor]:
        set_batchnorm_mode(model, train=False)
        inputs, targets = examples_per_class(data, self.samples_per_class, "snip", model_device(model))
        params = list(weights.values())
        grads = [torch.zeros_like(p) for p in params]
        for x, y in zip(inputs.split(CHUNK), targets.split(CHUNK), strict=True):
            loss = F.cross_entropy(model(x), y) * (len(x) / len(inputs))
            for total, grad in zip(grads, torch.autograd.grad(loss, params), strict=True):
                total.add_(grad)
        return {name: (g * w.detach()).abs() for (name, w), g in zip(weights.items(), grads, strict=True)}
