"""SynFlow: iterative synaptic flow pruning, data-free (Tanaka et al., NeurIPS 2020)."""

from __future__ import annotations

import torch
from torch import nn

from prunebench.core.errors import UsageError
from prunebench.methods._scoring import MissingData, model_device, set_batchnorm_mode
from prunebench.methods.base import Masks, ScoringData, ScoringMethod, Weights
from prunebench.methods.method_registry import register
from prunebench.pruning.allocation import masks_from_scores


@register(
    "synflow",
    schedule="at_init",
    scopes=("global", "uniform", "uniform_plus", "erk"),
    paper="Tanaka et al., NeurIPS 2020, 'Pruning neural networks without any data by iteratively conserving synaptic flow'",
)
class SynFlow(ScoringMethod):
    """Iteratively remove the weights of least synaptic flow |dR/dθ ⊙ θ|, with R computed on |θ| and no data.

    Tanaka et al. 2020, Eq. 2 and Algorithm 1: every parameter and buffer is replaced by its absolute value, the
    network is fed an all-ones input, ``R = 1ᵀ f(1; |θ|)`` (the sum of the outputs), and the score is
    ``|dR/dθ ⊙ θ|``. Pruning runs over ``rounds`` rounds (100) with the exponential schedule: after round ``k`` the
    density is ``d^(k/n)`` (``d = 1 - sparsity``); each round zeroes the pruned weights and scores again, and every
    round allocates its budget with the requested scope. BatchNorm runs in eval mode (the running statistics, made
    non-negative like every other buffer), as ``prune_loop``'s ``model.eval()``; dropout is off.

    The input shape is the ``input_shape`` hyperparameter, or when it is not given that of the scoring data's first
    batch (the values are never read).

    Deviations from the official code (``ganguli-lab/Synaptic-Flow``, ``Pruners/pruners.py``, ``prune.py``):
    (1) scoring runs in float64 (``double=True``): in float32, as the official code (whose ``model.double()`` is
    commented out), R grows with depth and overflows to inf on deep residual networks (the CIFAR ResNet-32 and
    ResNet-56 and torchvision's ResNet-50 at their default init; VGG-16/19 and ResNet-18/20 stay finite), which makes
    every score inf or NaN. Where float32 is finite the two precisions still give different masks: scores that
    float32 rounds together or swaps near a round's threshold are ordered otherwise in float64, and over 100 rounds
    the differences compound (ResNet-20 at initialization, seeds 0-2, global and uniform scope at 0.9/0.95/0.99:
    identical masks in 14 of 18 settings, Jaccard overlap of the kept sets 0.66 and 0.87 at 0.99 in global scope).
    So the default does not reproduce the official masks; ``double=False`` scores in float32 like the official code
    and is the setting that reproduces them, on networks where float32 stays finite (up to deviation (2)). Scores
    are divided by their largest value before the masks are chosen and a non-finite score raises.
    (2) A weight pruned in an earlier round stays pruned: it scores below every live weight, whereas the official
    threshold (``score <= kthvalue``) relies on pruned weights scoring exactly 0; the masks are at the exact target
    in every round. (3) Only the weights of the prunable set are pruned (Conv/Linear weights, attention projections,
    embeddings when asked; the official ``--prune-bias`` and ``--prune-batchnorm`` are off by default too). (4) The per-layer counts follow the requested scope: ``global`` is
    the official ``global`` scope, ``uniform`` its ``local`` scope. (5) Embeddings, which the official code never
    meets (its models take images): an ``nn.Embedding`` is the linear map ``x -> E^T x`` of a one-hot input ``x``, so
    the all-ones input of a network that starts with one is defined where it enters that map, the all-ones vector
    over the vocabulary: every embedding lookup outputs ``1^T |E|``, the sum of the rows of ``|E|``, at every
    position (position and token-type embeddings alike; the ids fed are never read). The embedding matrix then gets
    the flow of any first layer, ``|E_vj| dR/d(1^T|E|)_j``, and is scored like one when it is pruned. Defining the
    ones at the embedding's output instead would feed ``1`` in place of ``1^T |E|`` and leave ``E`` out of the flow.
    On attention models the ``R`` of Eq. 2 is computed as it is on any network (the softmax and LayerNorm are not
    linear, so the paper's conservation theorem does not hold through them; neither does it through BatchNorm).
    """

    def __init__(
        self, rounds: int = 100, input_shape: tuple[int, ...] | None = None, double: bool = True
    ) -> None:
        self.rounds = rounds
        self.input_shape = input_shape
        self.double = double

    def scores(self, model: nn.Module, weights: Weights, data: ScoringData | None) -> dict[str, torch.Tensor]:
        """One round of SynFlow scores of ``model`` as it is (single shot)."""
        params, ones = self._linearize(model, weights, data)
        return _flow_scores(model, params, ones)

    def masks(
        self, model: nn.Module, weights: Weights, sparsity: float, scope: str, data: ScoringData | None
    ) -> Masks:
        if self.rounds < 1:
            raise UsageError(f"synflow needs at least one round, got rounds={self.rounds}")
        params, ones = self._linearize(model, weights, data)
        keep = {name: torch.ones_like(p, dtype=torch.bool) for name, p in params.items()}
        for k in range(1, self.rounds + 1):
            with torch.no_grad():
                for name, p in params.items():
                    p.mul_(keep[name])
            scores = _flow_scores(model, params, ones)
            # Already-pruned weights rank below every live one (live scores lie in [0, 1]).
            scores = {name: torch.where(keep[name], s, -1.0) for name, s in scores.items()}
            density = (1.0 - sparsity) ** (k / self.rounds)
            keep = masks_from_scores(scores, sparsity if k == self.rounds else 1.0 - density, scope)
        return keep

    def _linearize(
        self, model: nn.Module, weights: Weights, data: ScoringData | None
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Make every parameter and buffer of ``model`` non-negative (in float64 if ``double``); the all-ones input."""
        shape = self._shape(data)
        if self.double:
            model.double()
        set_batchnorm_mode(model, train=False)
        with torch.no_grad():
            for tensor in model.state_dict().values():
                if tensor.is_floating_point():
                    tensor.abs_()
        for module in model.modules():
            if isinstance(module, nn.Embedding):
                module.register_forward_pre_hook(_any_valid_ids)
                module.register_forward_hook(_all_ones_lookup)
        named = dict(model.named_parameters())
        params = {name: named[name] for name in weights}
        reference = next(iter(params.values()))
        return params, torch.ones(1, *shape, dtype=reference.dtype, device=model_device(model))

    def _shape(self, data: ScoringData | None) -> tuple[int, ...]:
        if self.input_shape is not None:
            return tuple(self.input_shape)
        if data is not None and not isinstance(data, MissingData):
            return tuple(data.first_batch()[0].shape[1:])
        raise UsageError(
            "synflow needs the input shape: pass data=[(inputs, targets)] or input_shape=(channels, height, width)"
        )


def _any_valid_ids(module: nn.Embedding, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The ids an embedding reads while SynFlow scores (any valid ones: :func:`_all_ones_lookup` replaces the output)."""
    return (torch.zeros(args[0].shape, dtype=torch.long, device=args[0].device), *args[1:])


def _all_ones_lookup(
    module: nn.Embedding, args: tuple[torch.Tensor, ...], output: torch.Tensor
) -> torch.Tensor:
    """The embedding of the all-ones one-hot input: the sum of the rows of the (non-negative) matrix, everywhere."""
    return module.weight.sum(0).expand_as(output)


def _flow_scores(
    model: nn.Module, params: dict[str, torch.Tensor], ones: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``|dR/dθ ⊙ θ|`` with ``R`` the sum of the outputs on ``ones``, divided by the largest score."""
    flow = model(ones).sum()
    grads = torch.autograd.grad(flow, list(params.values()))
    scores = {name: (g * p.detach()).abs() for (name, p), g in zip(params.items(), grads, strict=True)}
    if not all(bool(torch.isfinite(s).all()) for s in scores.values()):
        raise FloatingPointError(
            f"synflow scores are not finite (R = {float(flow.detach()):g}): the network is too deep for "
            f"{ones.dtype}; use double=True"
        )
    largest = max(float(s.max()) for s in scores.values())
    return {name: s / max(largest, torch.finfo(s.dtype).tiny) for name, s in scores.items()}
