"""Structured (channel) methods: Network Slimming, MaskSparsity, L1-norm filter pruning, first-order Taylor.

They run on the structured track only (``bench run --track structured``, :mod:`prunebench.structured.structured_run`). Each scores
the group channels of :func:`prunebench.structured.channels.channel_groups` (channels tied by a residual addition are one group
channel); the harness turns the scores into keep masks at the exact target with the run's scope (``global`` or
``uniform``, :func:`prunebench.structured.channels.allocate`), removes the channels physically and fine-tunes the recipe's
fine-tuning epochs.

A group channel shared by several layers (a residual group: the stream's BatchNorms and the convolutions that add
into it) is scored from its layers' scores by ``group_reduce``: ``mean`` (the default) puts it on the scale of a
channel of one layer, so that a global ranking compares like with like; ``sum`` (these methods' version 1) scores it
about ``k`` times higher for ``k`` layers, which protects residual channels from a global threshold. Torch-Pruning's
group importances (``torch_pruning/pruner/importance.py``: ``GroupMagnitudeImportance``, ``BNScaleImportance``,
``GroupTaylorImportance``) reduce a group by its mean by default as well; docs/structured.md measures both.

Two kinds:

* :class:`ChannelCriterion` (schedule ``after_training``): scores the shared dense pre-training once (L1-norm,
  Taylor), as the unstructured after-training criteria do.
* :class:`SparsityTraining` (schedule ``during_training``): trains from the initial weights for the pre-training
  epochs with a sparsity penalty on the BatchNorm scales (Slimming, MaskSparsity), then scores |gamma|.

Common deviations from the papers, for a fair comparison on one harness: every method trains the same budget (the
recipe's epochs: training phase, then ``finetune_epochs`` of fine-tuning at the recipe's fine-tuning optimizer);
every method prunes once to the exact target in either scope, instead of each paper's own stopping rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from prunebench.methods.base import Method, ScoringData
from prunebench.methods.method_registry import register
from prunebench.run.trainer import Trainer, TrainHook
from prunebench.structured.channels import ChannelGroup, group_norms

Scores = dict[str, torch.Tensor]
"""One score per group channel, keyed by group name; higher scores are kept."""
Allocator = Callable[[Scores], dict[str, torch.Tensor]]
"""Keep masks at the run's target and scope from group-channel scores (:func:`prunebench.structured.channels.allocate`)."""

_SCOPES = ("global", "uniform")

GroupReduce = Literal["mean", "sum"]
"""How a group channel's score combines the scores of its layers (:func:`reduce_group`)."""
GROUP_REDUCES = ("mean", "sum")
_REDUCE_HELP = "how a channel shared by several layers (a residual group) is scored: mean or sum over them"
OFFICIAL_THRESHOLD = 0.01
"""MaskSparsity's pruning threshold on each BatchNorm's |gamma| (``PRUNE.FACTOR`` of the official ``prune.sh``)."""


def reduce_group(scores: list[torch.Tensor], how: str) -> torch.Tensor:
    """One score per group channel from each member layer's (one tensor per layer, one entry per group channel):
    their mean (``mean``) or their sum (``sum``)."""
    stacked = torch.stack([score.float().cpu() for score in scores])
    return stacked.mean(0) if how == "mean" else stacked.sum(0)


def _checked_reduce(how: str) -> str:
    if how not in GROUP_REDUCES:
        raise ValueError(f"group_reduce is one of {', '.join(GROUP_REDUCES)}, got {how!r}")
    return how


class ChannelCriterion(Method):
    """A criterion that scores the channels of a trained model once."""

    def group_scores(self, model: nn.Module, groups: list[ChannelGroup], data: ScoringData) -> Scores:
        raise NotImplementedError


class SparsitySession(TrainHook):
    """A sparsity-training method's state while the weights train; :meth:`keep` at the end."""

    def scores(self) -> Scores:
        raise NotImplementedError

    def keep(self, allocate: Allocator) -> dict[str, torch.Tensor]:
        """The channels kept at the end of training (by default: the allocation of :meth:`scores`)."""
        return allocate(self.scores())

    def details(self) -> dict:
        return {}


class SparsityTraining(Method):
    """A method that trains with a penalty that drives channels to zero, then scores them."""

    needs_batchnorm: ClassVar[bool] = False
    """Whether it scores BatchNorm scales, so that every channel group needs a BatchNorm (checked at planning)."""

    def attach(self, model: nn.Module, groups: list[ChannelGroup], allocate: Allocator) -> SparsitySession:
        raise NotImplementedError


Norms = dict[str, list[tuple[nn.Module, list[int]]]]
"""Per group, its BatchNorm layers with the channel of each group channel
(:func:`prunebench.structured.channels.group_norms`)."""


def _gammas(members: list[tuple[nn.Module, list[int]]]) -> list[torch.Tensor]:
    """|gamma| of each group channel in each of the group's BatchNorm layers."""
    return [module.weight.detach().abs()[index].float().cpu() for module, index in members]


def _abs_gamma(norms: Norms, how: str) -> Scores:
    """|gamma| of each group channel, reduced over the group's BatchNorm layers (:func:`reduce_group`)."""
    return {name: reduce_group(_gammas(members), how) for name, members in norms.items()}


def threshold_pruned(gammas: list[torch.Tensor], threshold: float = OFFICIAL_THRESHOLD) -> torch.Tensor:
    """The channels of one group that MaskSparsity's official pruning removes, from |gamma| of each of the group's
    BatchNorm layers (one tensor per layer, one entry per group channel).

    As ``netslim/prune.py::liu2017`` does with ``PRUNE.THRESHOLD_METHOD = 'th'``: each BatchNorm on its own prunes
    the channels whose |gamma| is not above ``threshold`` (``prune_mask = scale_weight > prune_th`` keeps), keeping
    its largest when it would prune all (``MIN_CHANNELS`` 1). A residual group (``PRUNE.SPUER_NORM_LAYERS``)
    combines its layers conservatively: the channels that all ``k`` layers prune, or, while these are fewer than
    the fewest any one layer prunes, those that ``k - 1``, ``k - 2``, ... of them prune.
    """
    votes = []
    for gamma in gammas:
        pruned = ~(gamma.abs() > threshold)
        if bool(pruned.all()):
            pruned[int(torch.argmax(gamma.abs()))] = False
        votes.append(pruned)
    stacked = torch.stack(votes)
    count, least = stacked.sum(0), int(stacked.sum(1).min())
    needed = len(votes)  # at needed = 1, every channel some layer prunes: at least `least`
    while int((count >= needed).sum()) < least:
        needed -= 1
    return count >= needed


@torch.no_grad()
def add_l1_subgradient(
    modules: list[nn.Module], strength: float, masks: list[torch.Tensor] | None = None
) -> None:
    """``gamma.grad += strength * sign(gamma)`` on each BatchNorm (times its 0/1 mask where given): the
    subgradient of ``strength * sum |gamma|``, added after ``loss.backward()`` as the official code does
    (network-slimming ``updateBN``; MaskSparsity ``update_bn_by_names_dict``)."""
    for i, module in enumerate(modules):
        step = torch.sign(module.weight) * strength
        if masks is not None:
            step = step * masks[i]
        module.weight.grad.add_(step)


@register(
    "l1_filter",
    version=2,
    schedule="after_training",
    scopes=_SCOPES,
    paper="Li et al. 2017, Pruning Filters for Efficient ConvNets (ICLR)",
    track="structured",
)
class L1Filter(ChannelCriterion):
    """L1-norm filter pruning: remove the filters with the smallest sum of absolute kernel weights.

    Li et al. 2017, Section 3.1: ``s_j = sum_l |F_{i,j}|`` over filter ``j``'s kernel weights, filters pruned with
    the smallest ``s_j`` from the trained network, then retraining. A group channel's score is the mean (or, with
    ``group_reduce=sum``, the sum) of ``s_j`` over the group's Conv/Linear layers that produce it (a residual
    group: every convolution that adds into it).

    Deviations: Li et al. choose a sensitivity-based ratio per layer and do not prune the convolutions joined by a
    residual addition (they prune only the first layer of each residual block); here both scopes of the track apply
    (``uniform``: the same fraction of every group; ``global``: one ranking of the raw ``s_j``, which the paper
    does not use) and residual groups are pruned as groups.
    """

    def __init__(self, group_reduce: Annotated[GroupReduce, _REDUCE_HELP] = "mean") -> None:
        self.group_reduce = _checked_reduce(group_reduce)

    def group_scores(self, model: nn.Module, groups: list[ChannelGroup], data: ScoringData) -> Scores:
        modules = dict(model.named_modules())
        return {
            group.name: reduce_group(
                [
                    modules[m.module].weight.detach().abs().flatten(1).sum(1)[list(m.index)]
                    for m in group.of("producer")
                ],
                self.group_reduce,
            )
            for group in groups
        }


@register(
    "taylor",
    version=2,
    schedule="after_training",
    scopes=_SCOPES,
    paper="Molchanov et al. 2019, Importance Estimation for Neural Network Pruning (CVPR)",
    track="structured",
)
class TaylorFO(ChannelCriterion):
    """First-order Taylor importance of each channel, with the gate after BatchNorm (Taylor-FO-BN).

    Molchanov et al. 2019, Eq. 8: the importance of a set ``S`` of parameters is ``(sum_{s in S} g_s w_s)^2``,
    averaged over minibatches. For a channel, ``S`` is its gate after BatchNorm; a gate of 1 after the BatchNorm has
    gradient ``sum z dL/dz = gamma * dL/dgamma + beta * dL/dbeta`` (NVlabs/Taylor_pruning, method 22 on a gate
    after BatchNorm, and its BatchNorm variant), so the importance is ``(gamma g_gamma + beta g_beta)^2``. A channel
    with no BatchNorm uses the gate at the layer's output: ``sum w g_w + b g_b`` over its weights. A group channel
    has one gate per layer of the group (its BatchNorms, else its producers): ``group_reduce=mean`` scores it by the
    mean of the gates' importances ``(g_i w_i)^2``, as Torch-Pruning's ``GroupTaylorImportance`` reduces a group;
    ``group_reduce=sum`` sums the gates' contributions inside the square, ``(sum_i g_i w_i)^2`` (the group's
    parameters as one set ``S``: the joint removal's first-order estimate, which grows with the number of layers).
    The importances are averaged over ``batches`` training minibatches (NVlabs' default pruning ``frequency``, 30),
    with the model in training mode as there.

    Deviation: the paper prunes iteratively during fine-tuning (a few neurons every ``frequency`` minibatches, with
    a momentum over pruning steps); here it prunes once, after training, to the exact target, and fine-tunes.
    """

    def __init__(
        self,
        batches: Annotated[int, "training minibatches the importance is averaged over"] = 30,
        group_reduce: Annotated[GroupReduce, _REDUCE_HELP] = "mean",
    ) -> None:
        if batches < 1:
            raise ValueError(f"batches must be at least 1, got {batches}")
        self.batches = batches
        self.group_reduce = _checked_reduce(group_reduce)

    def group_scores(self, model: nn.Module, groups: list[ChannelGroup], data: ScoringData) -> Scores:
        modules = dict(model.named_modules())
        gates: Norms = {}
        for group in groups:
            kind = "norm" if group.of("norm") else "producer"
            gates[group.name] = [(modules[m.module], list(m.index)) for m in group.of(kind)]
        totals = {g.name: torch.zeros(g.size) for g in groups}
        model.train()
        seen = 0
        for inputs, targets in data:
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(inputs), targets).backward()
            for name, members in gates.items():
                contributions = [_gate_contribution(module, index) for module, index in members]
                totals[name] += self._importance(contributions)
            seen += 1
            if seen == self.batches:
                break
        model.zero_grad(set_to_none=True)
        return {name: total / max(seen, 1) for name, total in totals.items()}

    def _importance(self, contributions: list[torch.Tensor]) -> torch.Tensor:
        """One minibatch's importance of each group channel from its gates' contributions ``g_i w_i``."""
        if self.group_reduce == "sum":
            return reduce_group(contributions, "sum").pow(2)
        return reduce_group([c.float().pow(2) for c in contributions], "mean")


def _gate_contribution(module: nn.Module, index: list[int]) -> torch.Tensor:
    """``sum w dL/dw`` over the weight and bias of each of ``module``'s channels ``index``: the gradient of a gate
    of 1 after the layer."""
    contribution = torch.zeros(len(index), device=module.weight.device)
    for param in (module.weight, module.bias):
        if param is not None and param.grad is not None:
            product = param.detach() * param.grad
            contribution += product.reshape(product.shape[0], -1).sum(1)[index]
    return contribution


class _SlimmingSession(SparsitySession):
    def __init__(
        self, model: nn.Module, groups: list[ChannelGroup], strength: float, group_reduce: str
    ) -> None:
        self.norms = group_norms(model, groups)
        self.modules = list({id(m): m for members in self.norms.values() for m, _ in members}.values())
        self.strength = strength
        self.group_reduce = group_reduce

    def before_step(self, trainer: Trainer) -> None:
        add_l1_subgradient(self.modules, self.strength)

    def scores(self) -> Scores:
        return _abs_gamma(self.norms, self.group_reduce)


@register(
    "slimming",
    version=2,
    schedule="during_training",
    scopes=_SCOPES,
    paper="Liu et al. 2017, Learning Efficient Convolutional Networks through Network Slimming (ICCV)",
    track="structured",
)
class NetworkSlimming(SparsityTraining):
    """Network Slimming: train with an L1 penalty on the BatchNorm scales, prune the channels with the smallest |gamma|.

    Liu et al. 2017, Eq. 1: ``L = sum l(f(x, W), y) + lambda sum_gamma |gamma|``, the penalty's subgradient
    ``lambda sign(gamma)`` added to every BatchNorm scale's gradient after the backward pass (official
    ``Eric-mingjie/network-slimming`` ``updateBN``, ``--s 0.0001``); then the channels below one global threshold on
    |gamma| are pruned and the network fine-tuned. ``strength`` defaults to the official code's (and the paper's
    CIFAR VGG) 1e-4; the paper uses 1e-5 for ResNet and DenseNet on CIFAR.

    Scopes: ``global`` is the paper's one threshold (at the exact target); ``uniform`` prunes the same fraction of
    every layer by |gamma|, which the paper does not. The official code ranks every BatchNorm channel on its own
    (the ``resprune.py`` script: one threshold over the |gamma| of all BatchNorm layers) and never removes a residual
    channel (its pre-activation ResNet keeps the block input's BatchNorm behind a ``channel_selection`` layer and
    the last convolution of each block at full width, ``conv_count % 3 != 1``). Here a residual group channel is
    removed as a whole and scores the mean of its BatchNorms' |gamma| (``group_reduce=mean``: on the scale of one
    BatchNorm's, as the official ranking sees each), or their sum (``group_reduce=sum``). Deviation: trained from
    initialization for the recipe's training epochs, fine-tuned for its fine-tuning epochs (the paper fine-tunes
    as long as it trained).
    """

    needs_batchnorm = True

    def __init__(
        self,
        strength: Annotated[float, "lambda, the L1 penalty on BatchNorm scales (official --s)"] = 1e-4,
        group_reduce: Annotated[GroupReduce, _REDUCE_HELP] = "mean",
    ) -> None:
        if strength < 0:
            raise ValueError(f"strength must be non-negative, got {strength}")
        self.strength = strength
        self.group_reduce = _checked_reduce(group_reduce)

    def attach(self, model: nn.Module, groups: list[ChannelGroup], allocate: Allocator) -> SparsitySession:
        return _SlimmingSession(model, groups, self.strength, self.group_reduce)


class _MaskSparsitySession(_SlimmingSession):
    def __init__(
        self,
        model: nn.Module,
        groups: list[ChannelGroup],
        strength: float,
        mask_at: float,
        allocate: Allocator,
        group_reduce: str,
    ) -> None:
        super().__init__(model, groups, strength, group_reduce)
        self.mask_at = mask_at
        self.allocate = allocate
        self.mask: dict[str, torch.Tensor] | None = None
        self.penalty_masks: list[torch.Tensor] | None = None
        self.mask_step = 0

    def choose_mask(self) -> None:
        """The mask from global sparse regularization: the channels the allocation removes at |gamma| now."""
        self.mask = self.allocate(self.scores())
        per_module: dict[int, torch.Tensor] = {
            id(m): torch.zeros_like(m.weight, dtype=torch.float32) for m in self.modules
        }
        for name, members in self.norms.items():
            removed = (~self.mask[name]).nonzero().flatten().tolist()
            for module, index in members:
                per_module[id(module)][[index[k] for k in removed]] = 1.0
        self.penalty_masks = [per_module[id(m)].to(m.weight.dtype) for m in self.modules]

    def before_step(self, trainer: Trainer) -> None:
        if self.mask is None and trainer.progress >= self.mask_at:
            self.choose_mask()
            self.mask_step = trainer.step
        add_l1_subgradient(self.modules, self.strength, self.penalty_masks)

    def keep(self, allocate: Allocator) -> dict[str, torch.Tensor]:
        """Exactly the masked channels are removed (chosen now if the training phase was too short to reach
        ``mask_at``)."""
        if self.mask is None:
            self.choose_mask()
        assert self.mask is not None
        return self.mask

    def details(self) -> dict:
        """How many channels the mask removes, and how many of them (and of all) the official threshold would
        prune, per BatchNorm with its residual vote (:func:`threshold_pruned`)."""
        if self.mask is None:
            return {}
        masked = {name: ~keep for name, keep in self.mask.items()}
        below = {name: threshold_pruned(_gammas(members)) for name, members in self.norms.items()}
        return {
            "mask_step": self.mask_step,
            "masked_channels": sum(int(m.sum()) for m in masked.values()),
            "masked_below_threshold": sum(int((masked[n] & below[n]).sum()) for n in below),
            "below_threshold": sum(int(b.sum()) for b in below.values()),
        }


@register(
    "masksparsity",
    version=2,
    schedule="during_training",
    scopes=_SCOPES,
    paper="Jiang et al. 2022, Pruning-aware Sparse Regularization for Network Pruning (MaskSparsity)",
    track="structured",
)
class MaskSparsity(SparsityTraining):
    """MaskSparsity: the sparse penalty only on the channels a mask will prune, then prune them and fine-tune.

    Jiang et al. (official ``CASIA-IVA-Lab/MaskSparsity``): (1) global Network-Slimming L1 training, (2) a
    threshold on |gamma| gives a channel mask, (3) training with ``s * sign(gamma)`` added to the gradient of the
    masked channels only (``netslim/sparse.py::update_bn_by_names_dict``, after ``loss.backward()`` in
    ``pycls/core/trainer.py``), (4) pruning (threshold 0.01 on |gamma|), (5) fine-tuning. ``strength`` is the
    configs' ``SPARSE.SPARSITY`` 5e-4 (``mask_sparsity.sh``).

    Here the training phase (the recipe's training epochs, from initialization) runs (1) for its first ``mask_at``
    fraction, then the mask is the run's allocation of the group channels at the target by |gamma| (global or
    uniform scope; the official masks come in both, e.g. ``0.5_uniform.mask``), then (3) for the rest; (4) prunes
    exactly the masked channels (the record reports how many of them the official pruning would remove, |gamma|
    not above 0.01 per BatchNorm with the official residual vote, :func:`threshold_pruned`, and how many channels
    that rule would remove in all), and (5) fine-tunes.

    Deviations: the official code runs (1) and (3) each as a full training from the dense baseline's weights (100
    ImageNet epochs each, 3.4x the baseline's budget with fine-tuning); here both share the equal budget and (3)
    continues from the weights (1) ends with. The mask is chosen at the exact target, not by a threshold, so a
    residual group channel needs one score: the mean of its BatchNorms' |gamma| (``group_reduce=mean``, on the
    scale of the one BatchNorm the official per-layer threshold judges at a time), or their sum
    (``group_reduce=sum``).
    """

    needs_batchnorm = True

    def __init__(
        self,
        strength: Annotated[float, "s, the L1 penalty on BatchNorm scales (SPARSE.SPARSITY)"] = 5e-4,
        mask_at: Annotated[
            float, "fraction of the training phase with global sparse regularization before the mask is fixed"
        ] = 0.5,
        group_reduce: Annotated[GroupReduce, _REDUCE_HELP] = "mean",
    ) -> None:
        if strength < 0:
            raise ValueError(f"strength must be non-negative, got {strength}")
        if not 0.0 <= mask_at < 1.0:
            raise ValueError(f"mask_at is a fraction of the training phase in [0, 1), got {mask_at}")
        self.strength = strength
        self.mask_at = mask_at
        self.group_reduce = _checked_reduce(group_reduce)

    def attach(self, model: nn.Module, groups: list[ChannelGroup], allocate: Allocator) -> SparsitySession:
        return _MaskSparsitySession(model, groups, self.strength, self.mask_at, allocate, self.group_reduce)
