"""ASL: Adaptive Sparsity Loss (Retsinas, Elafrou, Goumas & Maragos, "Weight Pruning via Adaptive Sparsity Loss",
arXiv 2006.02768, 2020; ICIP 2021), ported from the official ``georgeretsi/SparsityLoss`` code (``sparse_utils.py``:
``SparseSTE``, ``SparseConv``/``SparseFc``, ``adaptive_loss``, ``iter_desparsify``; ``sparse_example.py``: the
training recipe).

Every prunable layer ``l`` gets one trainable pruning parameter ``r_l``; its weights are pruned by magnitude at the
threshold ``b_l = r_l * std(W_l)``, in units of the layer's standard deviation:

* **Re-centring.** Before every forward pass the official code sets ``W_l <- W_l - mean(W_l)`` in place (on
  ``.data``: no gradient flows through the mean). Here the session does it at the start and after every optimizer
  step, which is the same sequence of weights (the last re-centring is the one before ``iter_desparsify``).
* **Hard threshold with a straight-through gradient.** The layer computes with
  ``W'_l = hardshrink(W_l, b_l)``, ``b_l = clamp(r_l, 0, 5) * std(W_l) + 1e-6`` with ``std`` detached (unbiased, as
  ``torch.std``). The official code writes it as ``b * STE(hardshrink(W / b, 1))`` with the identity as the
  hardshrink's gradient, which gives (:class:`HardshrinkSTE`)::

      dL/dW_l = dL/dW'_l                                   (every weight, pruned ones included),
      dL/db_l = -sum_{|W_l| <= b_l} dL/dW'_l * W_l / b_l,  dL/dr_l = std(W_l) * dL/db_l for 0 <= r_l <= 5.

* **Gaussian sparsity estimate.** With zero-mean Gaussian weights, the fraction of a layer below its threshold is
  ``s_l = P(|W| <= r_l sigma_l) = erf(r_l / sqrt 2)``: a differentiable function of ``r_l`` alone (``adaptive_loss``;
  the estimate uses ``r_l`` unclamped, as the official code).
* **Budget loss**, added to the task loss with weight ``lv`` (``loss_weight``, official 10), for a target ``s_t``:

  - ``global`` scope, the paper's adaptive budget (``--sparsity adaptive``): the network's density estimate meets
    the budget, the layers share it as the task loss prefers,
    ``lv * (sum_l n_l (1 - erf(r_l / sqrt 2)) / sum_l n_l - (1 - s_t))^2``;
  - ``uniform`` scope, the per-layer target (``--sparsity fixed``): every layer at ``s_t``,
    ``lv * mean_l ((1 - erf(r_l / sqrt 2)) - (1 - s_t))^2``. The official branch calls
    ``adaptive_loss(model, False, reduce=False)``, which raises a TypeError (``reduce`` given twice); this is the loss
    it evidently means, ``adaptive_loss(model, reduce=False)``, the per-layer densities, in its own expression.

* **Initialization** ``r_l = sqrt 2 * erfinv(0.6 s_t)`` (``init_fraction``): the layers start at 60% of the target
  sparsity and the budget loss takes them the rest of the way.
* **Optimizer** (``sparse_example.py``): the ``r_l`` share the weights' SGD (momentum 0.9, its schedule) at 1/100 of
  their learning rate (``r_lr_ratio``; here also scaled to the budget, below) and without weight decay (here a
  parameter group the trainer steps, :class:`~prunebench.run.trainer.ParamGroup`).

End of the learning phase (``iter_desparsify``): the weights become ``hardshrink(W_l, b_l)``. ASL's own sparsity,
the fraction of prunable weights with ``|W_l| <= b_l``, is recorded as ``method_sparsity``; the budget loss is a
penalty, so it ends near the target, not on it. The mask is then brought to the exact target by moving the
thresholds: the survivors are the weights with the highest ``(|W_l| - b_l) / std(W_l)`` (positive exactly for the
weights ASL keeps), per layer at the target in ``uniform`` scope (each layer's own threshold moved to its count,
i.e. its top-k of ``|W|``), and over all layers in ``global`` scope, which is one common shift ``delta`` of every
``r_l`` (in each layer's units of standard deviation), so the learned allocation shapes the result. Survivors keep
their values (``hardshrink`` leaves them unchanged). ``delta`` and the per-layer figures are in the record's details.

Scaling to the benchmark's budget. The official example trains WRN-16-8 on CIFAR-100 for 60 epochs of 391 steps
(batch 128): 23,460 steps. Every setting is the official one except the weights' recipe, which is the preset's as
for every method, and two additions:

* ``reference_steps`` (23,460): the ``r_l`` learning rate is scaled by ``reference_steps / steps`` of the learning
  phase, so that over a short phase the thresholds can travel as far as in the official run (as soft movement's
  scores, :mod:`prunebench.methods.movement`). At 1/100 of the weights' rate unscaled they do not reach their
  balance within the default preset's budget: on ``mnist5k-lenet300`` at 99% (seed 0, global scope; 1,580 steps
  without fine-tuning) ASL's own sparsity ends at 0.935 unscaled and 0.964 scaled (with fine-tuning, 1,264 steps:
  0.962 scaled, 0.966 with ten times that rate).
* ``finetune_fraction`` (0.2, as STR): the budget loss is a quadratic penalty whose pull vanishes at the target,
  while the task loss keeps pulling the thresholds down, so ASL settles short of the target; the more so at high
  sparsity, where the Gaussian tail makes the estimate flat in ``r`` (on the same run: 0.964 for a 0.99 target, the
  layers' estimates ``erf(r_l / sqrt 2)`` within 0.03 of their counted sparsities). The exact step then removes
  weights the network computed with, and the model fine-tunes with the mask fixed for this share of the budget
  (same run: top-1 77.7 without, 91.2 with), in epochs rounded by the harness's rule for every method
  (:meth:`~prunebench.methods.base.TrainingMethod.finetune_epochs`). The official code has no such step; ``0``
  leaves it out. A heavier penalty gets closer (``loss_weight=100``: own sparsity 0.986, top-1 92.9 on that run) but
  the default stays the official ``lv = 10``: that figure is one seed on the preset's test data.

Deviations from the official code, all named:

* Every layer of the benchmark's prunable set gets an ``r_l`` (the official code skips Conv and Linear layers with
  fewer than 1000 weights, ``--pthres``): the prunable set is the same for every method.
* The weights (and with them the ``r_l``) follow the preset's learning-rate schedule instead of the official cosine
  annealing with one warm restart at half of the epochs, and the preset's optimizer settings (the ``r_l`` take its
  momentum and Nesterov setting, at ``r_lr_ratio`` of its current learning rate, in an optimizer of their own:
  ``torch.optim.SGD``'s default implementation, not the fused kernel of the weights').
* The forward computes ``hardshrink(W, b)`` directly, which equals the official ``b * hardshrink(W / b, 1)`` up to
  the rounding of the division, with the same gradients.
* The exact-target step above (the official code keeps whatever sparsity the thresholds give), fine-tuning with the
  mask fixed, and the scaled ``r_l`` learning rate (see the scaling above).
* The per-layer budget loss is the evident intent of the official ``fixed`` branch, which does not run (see above).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any

import torch
from torch import nn
from torch.nn import functional as F

from prunebench.core.errors import UsageError
from prunebench.methods.base import FinalMasks, TrainingContext, TrainingMethod, Weights
from prunebench.methods.masked import MaskedSession
from prunebench.methods.method_registry import register
from prunebench.pruning.allocation import masks_from_scores
from prunebench.run.trainer import ParamGroup, cross_entropy, run_passes

if TYPE_CHECKING:
    from prunebench.run.trainer import LossPasses, Trainer

R_MAX = 5.0
"""The official clamp of ``r``: thresholds between 0 and 5 standard deviations."""

EPS = 1e-6
"""Added to every threshold, as the official code (so that ``r = 0`` prunes only exact zeros)."""

SCOPES = ("global", "uniform")
"""``global``: the paper's adaptive budget over all layers; ``uniform``: every layer at the target."""


class HardshrinkSTE(torch.autograd.Function):
    """``hardshrink(W, b)`` whose gradient passes the weights straight through (the official ``SparseSTE``).

    ``forward(W, b)`` keeps the entries with ``|W| > b``; ``backward`` returns ``dL/dW' `` for ``W`` and
    ``-sum_{|W| <= b} dL/dW' * W / b`` for ``b``, the gradients of the official ``b * STE(hardshrink(W / b, 1))``.
    The sum runs over ``dL/dW' * (W - W')``, which is ``dL/dW' * W`` where ``|W| <= b`` and zero elsewhere: the
    same terms as masking the product, without a boolean mask (on the CPU a boolean comparison and a masked fill
    cost several elementwise passes each; there ``W'`` is PyTorch's ``hardshrink``, one pass).
    """

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
        if weight.device.type == "cpu":
            kept = F.hardshrink(weight, float(threshold))
        else:
            kept = weight * (weight.abs() > threshold)
        ctx.save_for_backward(weight, threshold, kept)
        return kept

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        weight, threshold, kept = ctx.saved_tensors
        grad_threshold = None
        if ctx.needs_input_grad[1]:
            grad_threshold = -(grad * (weight - kept)).sum() / threshold
        return grad, grad_threshold


def layer_threshold(weight: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """``b = clamp(r, 0, 5) * std(W) + 1e-6`` with ``std`` detached (differentiable in ``r`` only)."""
    return r.clamp(0.0, R_MAX) * weight.detach().std() + EPS


def sparse_weight(weight: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """ASL's pruned weight ``hardshrink(W, b)``, ``b = clamp(r, 0, 5) std(W) + 1e-6``, straight-through in ``W``."""
    return HardshrinkSTE.apply(weight, layer_threshold(weight, r))


def gaussian_sparsity(r: torch.Tensor) -> torch.Tensor:
    """The sparsity of a zero-mean Gaussian layer pruned at ``r`` standard deviations: ``erf(r / sqrt 2)``."""
    return torch.erf(r / math.sqrt(2.0))


def budget_loss(r: torch.Tensor, sizes: torch.Tensor, sparsity: float, scope: str) -> torch.Tensor:
    """ASL's budget loss (without ``lv``) for the vector ``r`` of all layers with ``sizes`` weights each.

    ``global``: ``(sum_l n_l (1 - erf(r_l / sqrt 2)) / sum_l n_l - (1 - s))^2``; ``uniform``:
    ``mean_l ((1 - erf(r_l / sqrt 2)) - (1 - s))^2``.
    """
    density = 1.0 - gaussian_sparsity(r)
    if scope == "global":
        return ((density * sizes).sum() / sizes.sum() - (1.0 - sparsity)) ** 2
    if scope == "uniform":
        return ((density - (1.0 - sparsity)) ** 2).mean()
    raise UsageError(f"asl runs in scopes {', '.join(SCOPES)}, not {scope!r}")


def initial_r(sparsity: float, fraction: float) -> float:
    """``sqrt 2 * erfinv(fraction * s)``: the ``r`` whose Gaussian sparsity is ``fraction`` of the target."""
    return math.sqrt(2.0) * float(
        torch.special.erfinv(torch.tensor(fraction * sparsity, dtype=torch.float64))
    )


class SparseWeight(nn.Module):
    """Parametrization ``W -> hardshrink(W, clamp(r[index], 0, 5) std(W) + 1e-6)`` of one layer's weight.

    ``r`` is the vector of every layer's pruning parameter, shared by the layers' parametrizations, so that the budget
    loss and the optimizer step treat all of them at once.
    """

    def __init__(self, r: nn.Parameter, index: int) -> None:
        super().__init__()
        self.r = r
        self.index = index

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return sparse_weight(weight, self.r[self.index])


class ASLSession(MaskedSession):
    """ASL's pruning parameters ``r`` (a parameter group trained by SGD), the re-centring and the budget loss, while the
    weights train."""

    def __init__(self, method: ASL, model: nn.Module, weights: Weights, sparsity: float, scope: str) -> None:
        if scope not in SCOPES:
            raise UsageError(f"asl runs in scopes {', '.join(SCOPES)}, not {scope!r}")
        self.method = method
        self.sparsity = sparsity
        self.scope = scope
        self.names = list(weights)
        device = next(iter(weights.values())).device
        self.sizes = torch.tensor([float(w.numel()) for w in weights.values()], device=device)
        start = initial_r(sparsity, method.init_fraction)
        self.r = nn.Parameter(torch.full((len(weights),), start, dtype=torch.float32, device=device))
        self.recentre(weights.values())
        super().__init__(model, weights, {name: SparseWeight(self.r, i) for i, name in enumerate(self.names)})

    def param_groups(self) -> list[ParamGroup]:
        """The ``r_l``: SGD with the weights' momentum and Nesterov setting, no weight decay, at :meth:`rate_ratio`
        of the weights' current learning rate."""
        return [
            ParamGroup("r", [self.r], lr=self.rate_ratio, schedule="relative", weight_decay=0.0, fused=False)
        ]

    def rate_ratio(self, trainer: Trainer) -> float:
        """``r_lr_ratio``, times ``reference_steps / steps`` of the learning phase where that is set."""
        ratio = self.method.r_lr_ratio
        if self.method.reference_steps is not None:
            ratio *= self.method.reference_steps / max(trainer.total_steps, 1)
        return ratio

    @staticmethod
    @torch.no_grad()
    def recentre(weights: Iterable[torch.Tensor]) -> None:
        """``W_l <- W_l - mean(W_l)`` for every layer (the official in-place re-centring)."""
        for weight in weights:
            weight.sub_(weight.mean())

    def compute_loss(self, trainer: Trainer, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return run_passes(self.loss_passes(trainer, inputs, targets), lambda: self.model(inputs))

    def loss_passes(self, trainer: Trainer, inputs: torch.Tensor, targets: torch.Tensor) -> LossPasses:
        """The cross-entropy of one forward pass plus the weighted budget loss."""
        loss = cross_entropy((yield), targets)
        return loss + self.method.loss_weight * budget_loss(self.r, self.sizes, self.sparsity, self.scope)

    def after_step(self, trainer: Trainer) -> None:
        self.recentre(self.weights.values())

    @torch.no_grad()
    def final_masks(self, trainer: Trainer) -> FinalMasks:
        """The thresholds moved to the exact target: per layer (``uniform``) or by one common shift (``global``)."""
        r = self.r.detach()
        stds = [w.std() for w in self.weights.values()]
        scores = {
            name: (w.abs() - layer_threshold(w, r[i])) / stds[i].clamp_min(torch.finfo(w.dtype).tiny)
            for i, (name, w) in enumerate(self.weights.items())
        }
        own = {name: float((s <= 0).float().mean()) for name, s in scores.items()}
        sizes = self.sizes.tolist()
        own_sparsity = sum(own[name] * n for name, n in zip(self.names, sizes, strict=True)) / sum(sizes)
        masks = masks_from_scores(scores, self.sparsity, self.scope)
        details: dict[str, Any] = {
            "r": dict(zip(self.names, r.tolist(), strict=True)),
            "own_layer_sparsity": own,
            "gaussian_layer_sparsity": dict(zip(self.names, gaussian_sparsity(r).tolist(), strict=True)),
            "budget_loss": float(budget_loss(r, self.sizes, self.sparsity, self.scope)),
        }
        if self.scope == "global":
            dropped = [s[~masks[name]] for name, s in scores.items()]
            details["delta"] = max((float(d.max()) for d in dropped if d.numel()), default=None)
            enforcement = (
                "every r_l shifted by one common delta (threshold (r_l + delta) std(W_l)) to the exact budget: "
                "global top-k of (|W| - b_l) / std(W_l)"
            )
        else:
            enforcement = "each layer's threshold moved to its exact count (per-layer top-k of |W|)"
        if self.method.finetune_fraction > 0:
            enforcement += ", then fine-tuned with the mask fixed"
        return FinalMasks(masks=masks, method_sparsity=own_sparsity, enforcement=enforcement, details=details)


@register(
    "asl",
    schedule="during_training",
    scopes=SCOPES,
    paper="Retsinas et al., ICIP 2021 (arXiv 2020), 'Weight Pruning via Adaptive Sparsity Loss'",
)
class ASL(TrainingMethod):
    """Per-layer trainable thresholds r std(W) with a Gaussian (erf) budget loss; global or per-layer budget, then exact.

    Defaults are the official ``sparse_example.py``'s (``--lv 10``, the ``r`` learning rate at 1/100 of the weights',
    initial ``r`` at 60% of the target) with two additions for short budgets: the ``r`` learning rate scaled by
    ``reference_steps / steps`` (the official run's 23,460 steps) and ``finetune_fraction`` of the budget (0.2, at
    least one epoch) fine-tuned with the exact mask fixed. See the module docstring for the mechanism, the two scopes,
    the figures behind the additions and every deviation.
    """

    def __init__(
        self,
        *,
        loss_weight: Annotated[float, "weight lv of the budget loss (official --lv)"] = 10.0,
        r_lr_ratio: Annotated[
            float, "learning rate of the r_l relative to the weights' (official 1/100)"
        ] = 0.01,
        init_fraction: Annotated[
            float,
            "initial r_l = sqrt(2) erfinv(init_fraction * target): the start's share of the target (0.6)",
        ] = 0.6,
        reference_steps: Annotated[
            int | None,
            "the r_l learning rate is scaled by reference_steps / steps of the learning phase (official run: "
            "60 epochs of 391 steps); none: not scaled",
        ] = 23460,
        finetune_fraction: Annotated[
            float, "share of the budget fine-tuned with the exact mask fixed (official: none)"
        ] = 0.2,
    ) -> None:
        if loss_weight < 0:
            raise ValueError(f"loss_weight must be at least 0, got {loss_weight}")
        if r_lr_ratio < 0:
            raise ValueError(f"r_lr_ratio must be at least 0, got {r_lr_ratio}")
        if not 0.0 <= init_fraction <= 1.0:
            raise ValueError(f"init_fraction is a share of the target in [0, 1], got {init_fraction}")
        if reference_steps is not None and reference_steps < 1:
            raise ValueError(f"reference_steps must be at least 1 (or none), got {reference_steps}")
        if not 0.0 <= finetune_fraction < 1.0:
            raise ValueError(f"finetune_fraction is a share of the budget in [0, 1), got {finetune_fraction}")
        self.loss_weight = loss_weight
        self.r_lr_ratio = r_lr_ratio
        self.init_fraction = init_fraction
        self.reference_steps = reference_steps
        self.finetune_fraction = finetune_fraction

    def attach(
        self, model: nn.Module, weights: Weights, sparsity: float, scope: str, context: TrainingContext
    ) -> ASLSession:
        return ASLSession(self, model, weights, sparsity, scope)
