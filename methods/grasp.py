"""GraSP: gradient signal preservation (Wang et al., ICLR 2020)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from prunebench.methods._scoring import examples_per_class, model_device, set_batchnorm_mode
from prunebench.methods.base import ScoringData, ScoringMethod, Weights
from prunebench.methods.method_registry import register
from prunebench.pruning.prunable import prunable_weights


@register(
    "grasp",
    schedule="at_init",
    scopes=("global", "uniform", "uniform_plus", "erk"),
    paper="Wang et al., ICLR 2020, 'Picking Winning Tickets Before Training by Preserving Gradient Flow'",
)
class GraSP(ScoringMethod):
    """Gradient signal preservation at init: remove the weights with the largest S = -θ ⊙ Hg.

    Wang et al. 2020, Eq. 8: ``S(-θ) = -θ ⊙ H g``, with ``g`` the gradient and ``H`` the Hessian of the loss at
    initialization, and the loss computed on ``logits / T`` (``T = 200``). As the official code
    (``alecwangcq/GraSP``, ``pruner/GraSP.py``) the weights with the *largest* S are removed, so the keep score
    returned here is ``-S = θ ⊙ Hg`` (highest kept); Synaptic-Flow's port uses the same ``θ ⊙ Hg, keep the highest``.
    The official normalization by ``|sum S|`` is a positive constant and is left out (same ranking).

    ``Hg`` is a Hessian-vector product by double backpropagation: ``g`` is computed first and detached, then the
    gradient of ``g · ∇L`` (with the graph of ``∇L`` kept) is ``H g``. ``g`` and ``Hg`` are taken with respect to every
    Conv/Linear weight and attention projection, as the official code takes them over every Conv/Linear weight, even
    when the first or last layer is kept dense (and over the embeddings when they are pruned); only the prunable ones
    are scored. The double backward runs with PyTorch's math kernel of scaled-dot-product attention
    (``sdpa_kernel(SDPBackend.MATH)``): the fused kernels (flash, memory-efficient) have no second derivative. The
    math kernel computes the same function, so ``Hg`` is unchanged; the first gradient uses the default kernels.

    Data: ``samples_per_class`` examples of each class (10, the official configs' value), ordered by class as the
    official ``GraSP_fetch_data`` returns them, split into ``chunks`` consecutive parts (2: the official two halves)
    to bound memory. BatchNorm runs in **train** mode (batch statistics of each chunk), as the official code, whose
    ``.eval()`` is commented out; dropout is off.

    Deviations from the official code: (1) the chunks' losses are weighted by their share of the examples, so that
    ``g`` and ``Hg`` are those of the mean loss over all examples (with two equal halves this is the official sum
    divided by 4: same ranking); without BatchNorm any number of chunks gives the same scores, with it each chunk has
    its own batch statistics, so ``chunks=2`` is the official setting; (2) the official scoring copy
    re-initializes every Linear layer with Xavier-normal before scoring while the network that is then trained keeps
    its own initialization, so the official scores of Linear layers belong to weights that are never trained; we score
    the weights that will be trained (``reinit_linear=True`` reproduces the official behaviour); (3) the official
    threshold keeps scores ``<=`` the k-th largest, i.e. removes one weight fewer than asked; our masks are at the
    exact target; (4) the per-layer counts follow the requested scope (the paper is ``global``); (5) dropout, if the
    model has any, is off while scoring (the official copy stays in train mode, which would sample it).
    """

    def __init__(
        self,
        samples_per_class: int = 10,
        temperature: float = 200.0,
        chunks: int = 2,
        reinit_linear: bool = False,
    ) -> None:
        self.samples_per_class = samples_per_class
        self.temperature = temperature
        self.chunks = chunks
        self.reinit_linear = reinit_linear

    def scores(self, model: nn.Module, weights: Weights, data: ScoringData | None) -> dict[str, torch.Tensor]:
        set_batchnorm_mode(model, train=True)
        if self.reinit_linear:
            for module in model.modules():
                if isinstance(module, nn.Linear):
                    nn.init.xavier_normal_(module.weight)
        inputs, targets = examples_per_class(data, self.samples_per_class, "grasp", model_device(model))
        order = torch.sort(targets, stable=True).indices
        parts = list(
            zip(
                inputs[order].tensor_split(self.chunks), targets[order].tensor_split(self.chunks), strict=True
            )
        )
        parts = [(x, y) for x, y in parts if len(x)]
        every = prunable_weights(model) | weights
        params = list(every.values())

        def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(model(x) / self.temperature, y) * (len(x) / len(inputs))

        g = [torch.zeros_like(p) for p in params]
        for x, y in parts:
            for total, grad in zip(g, torch.autograd.grad(loss_of(x, y), params), strict=True):
                total.add_(grad)
        hg = [torch.zeros_like(p) for p in params]
        with sdpa_kernel(SDPBackend.MATH):  # the fused attention kernels have no double backward
            for x, y in parts:
                grads = torch.autograd.grad(loss_of(x, y), params, create_graph=True)
                flow = sum((stop * grad).sum() for stop, grad in zip(g, grads, strict=True))
                for total, grad in zip(hg, torch.autograd.grad(flow, params), strict=True):
                    total.add_(grad)
        hg_of = dict(zip(every, hg, strict=True))
        return {name: w.detach() * hg_of[name] for name, w in weights.items()}
