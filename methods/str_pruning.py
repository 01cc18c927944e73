"""STR: Soft Threshold Reparameterization (Kusupati et al., ICML 2020), brought to a fixed target sparsity.

STR trains every prunable weight through a soft threshold with one learnable scalar ``s_l`` per layer (the paper's
``S_g``, ``sparseFunction`` in the official ``utils/conv_type.py``)::

    W_eff = sign(W) * relu(|W| - g(s_l)),        g = sigmoid

so the forward pass sees ``W_eff`` and the weights ``W`` and thresholds ``s`` are trained jointly by the same SGD.
Autograd gives ``dL/dW = 1[|W| > g(s_l)] * dL/dW_eff`` and
``dL/ds_l = -g'(s_l) * sum_{|W| > g(s_l)} sign(W) * dL/dW_eff``. Weight decay on ``s`` (the official ``--st-decay``,
the weight decay by default) pulls ``s`` towards 0, i.e. raises the threshold: it is STR's only sparsity knob, and
the sparsity STR ends at follows from it (and from ``sInit``) rather than from a target.

The benchmark needs fixed targets, so this module adds two documented steps (the STR paper and code have neither):

1. **Decay controller** (``control=True``, the default). The threshold decay ``lambda_s`` is adapted at every step
   of the learning phase so that STR's own sparsity (the fraction of ``W_eff`` that is exactly zero) follows a cubic
   ramp (Zhu & Gupta 2017) from 0 to the target, reached at ``ramp_end`` of the learning phase. The law is
   proportional-integral on ``log lambda_s`` with the error on the log density (:class:`DecayController`): more
   decay when STR is denser than the ramp, less when it is sparser, within ``[min_decay, max_decay]``. While
   ``s < 0`` (every threshold below 1/2) more decay always means a higher threshold, so the direction is right. The
   thresholds themselves stay learned by gradient, so the per-layer allocation is STR's; the controller only turns
   STR's own knob, as a user bisecting on ``--st-decay`` would (issue #14 of the official repository), within one run.
2. **Exact projection, then fine-tuning.** At the end of the learning phase every layer's threshold is shifted by one
   common amount ``delta``, chosen so that exactly the budget ``keep`` of weights survives: the survivors are the
   global top-``keep`` of STR's own score ``|W| - g(s_l)``, and their values are the soft threshold at the shifted
   thresholds, ``sign(W) * (|W| - g(s_l) - delta)``, with ``delta`` just below the largest dropped score (so that
   no survivor is zero, ties included). When STR is already at the target, ``delta = 0`` and ``W_eff`` is kept as is;
   when it is too dense (``delta > 0``) the mask is the global magnitude projection of ``W_eff`` (and the survivors
   shrink by ``delta``, as under a higher threshold); when it is too sparse (``delta < 0``) the weights just under
   each threshold come back. The learned per-layer thresholds therefore still set the allocation. The mask is then
   fixed for ``finetune_fraction`` of the budget (the harness's rule,
   :meth:`~prunebench.methods.base.TrainingMethod.finetune_epochs`). The record keeps STR's own sparsity before this
   step (``method_sparsity``) and ``delta`` (``details``).

Defaults, and why they differ from the paper's: the paper's CNN settings are ImageNet's (ResNet-50: sInit -3200,
weight decay 2.25e-5, 100 epochs of ~5000 steps), which give no sparsity at all off ImageNet (issue #2 of the official
repository, whose author advises ``|sInit|`` around 100 and a weight decay above 5e-4): a threshold far below the
weights' scale moves only by decay (``g'(s)`` is ~0 there), and this benchmark's budgets are a few hundred steps. So
``s_init`` is -10 (``g(-10) = 4.5e-5``: the model starts dense, yet the threshold reaches the weights' scale within
the budget) and the decay starts at ``threshold_decay = 1e-3``, then set by the controller. The sweep behind these
values and the sparsities they reach are in ``docs/methods.md`` ("Calibration on short budgets").

Deviations from the official code, all named: the controller and the final projection above (the official STR
never fixes a mask and never fine-tunes); the thresholds are a parameter group of their own, stepped by the trainer's
``torch.optim.SGD`` (PyTorch's fused kernel, as the weights') at the weights' current learning rate, momentum and
Nesterov setting (the official code puts them in a parameter group of the same SGD, which is the same update), with
the controlled decay added to their gradient instead of the weights' decay; the threshold is a scalar per layer of
every Conv and Linear layer in the benchmark's prunable set (the official code wraps convolutions, and the
classifier when it is a 1x1 convolution); the sparse function is the sigmoid one only (the official default). The
reparameterization is the shared parametrization of :mod:`prunebench.methods.masked`, removed at the end of the
learning phase, leaving a plain module; the exact budget is its shared top-k.

Version 2: the thresholds' SGD step is ``torch.optim.SGD``'s fused kernel; version 1 wrote the same update by hand,
in another order of floating-point operations, so thresholds and weights differ from version 1's in the last bits.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from prunebench.methods.base import FinalMasks, TrainingContext, TrainingMethod, Weights
from prunebench.methods.masked import EXACT_FLOAT32_COUNT, MaskedSession, exact_top_k
from prunebench.methods.method_registry import register
from prunebench.methods.sparsity_schedules import cubic_keep_fraction
from prunebench.run.trainer import ParamGroup

if TYPE_CHECKING:
    from prunebench.run.trainer import Trainer


def soft_threshold(weight: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """STR's sparse function ``S_g(W, s) = sign(W) * relu(|W| - g(s))`` with ``g = sigmoid`` (the official form,
    differentiated by autograd; training computes the same values and gradients with :class:`_SoftThreshold`)."""
    return torch.sign(weight) * torch.relu(weight.abs() - torch.sigmoid(threshold))


def shrink(weight: torch.Tensor, cutoff: torch.Tensor) -> torch.Tensor:
    """:func:`soft_threshold`'s value for the cutoff ``c = sigmoid(s)``, to the bit, in as few passes as the device
    allows: on the CPU PyTorch's ``softshrink`` (``W - c`` above ``c``, ``W + c`` below ``-c``, else 0: one pass;
    ``c`` is read to the host, which costs nothing there); elsewhere ``W - clamp(W, -c, c)`` (two passes, no wait
    for the device). Both round ``W -+ c`` as ``sign(W) (|W| - c)`` does, and give 0 where ``|W| <= c``."""
    if weight.device.type == "cpu":
        return F.softshrink(weight, float(cutoff))
    return weight - torch.clamp(weight, -cutoff, cutoff)


class _SoftThreshold(torch.autograd.Function):
    """``sign(W) * relu(|W| - c)`` for a scalar cutoff ``c``, with its gradient written out.

    Forward: :func:`shrink`. Backward, with ``A = 1[|W| > c]`` and ``G = dL/dW_eff``: ``dL/dW = G * A`` and
    ``dL/dc = -sum(G * sign(W) * A)``, the terms autograd forms for :func:`soft_threshold`. Both come from
    ``S = sign(W_eff)``, which is ``sign(W) * A`` (``W_eff`` is zero exactly where ``|W| <= c``): ``G S`` is summed
    for ``dL/dc`` and multiplied by ``S`` again for ``dL/dW`` (products with ``+-1`` are exact), so the values are
    autograd's bits (up to the sign of zeros), without a masked select or the intermediate tensors autograd keeps.
    Given a list ``survivors``, the backward also writes the layer's count of non-zero ``W_eff`` at ``index``
    (``sum(S * S)``, one more pass over ``S``): the count STR's decay controller needs (:meth:`STRSession.
    own_sparsity`), which would otherwise cost a pass of the soft threshold again.
    """

    @staticmethod
    def forward(
        ctx, weight: torch.Tensor, cutoff: torch.Tensor, survivors: list | None = None, index: int = 0
    ) -> torch.Tensor:
        effective = shrink(weight, cutoff)
        ctx.save_for_backward(effective)
        ctx.survivors, ctx.index = survivors, index
        return effective

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        (effective,) = ctx.saved_tensors
        sign = torch.sign(effective)
        if ctx.survivors is not None:
            ctx.survivors[ctx.index] = count_nonzero_signs(sign)
        signed = grad * sign
        grad_cutoff = signed.sum().neg_() if ctx.needs_input_grad[1] else None
        grad_weight = signed.mul_(sign) if ctx.needs_input_grad[0] else None
        return grad_weight, grad_cutoff, None, None


def count_nonzero_signs(sign: torch.Tensor) -> torch.Tensor:
    """The number of non-zero entries of a tensor of signs (``-1``, ``0``, ``1``) as a 0-dim integer tensor on its
    device: ``sum(S * S)`` by one dot product (exact in float32 below 2^24 entries), else summed in float64."""
    flat = sign.reshape(-1)
    if flat.numel() < EXACT_FLOAT32_COUNT:
        return torch.dot(flat, flat).long()
    return flat.abs().sum(dtype=torch.float64).long()


class SoftThreshold(nn.Module):
    """Parametrization ``W -> sign(W) * relu(|W| - sigmoid(s[index]))`` of one layer's weight.

    ``thresholds`` is the vector of every layer's ``s``, shared by the layers' parametrizations, so that the
    session updates all thresholds with a handful of tensor operations. With ``survivors`` (a list with a slot per
    layer), each backward pass writes the layer's count of non-zero ``W_eff`` into its slot (:class:`_SoftThreshold`).
    """

    def __init__(self, thresholds: nn.Parameter, index: int, survivors: list | None = None) -> None:
        super().__init__()
        self.thresholds = thresholds
        self.index = index
        self.survivors = survivors

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return _SoftThreshold.apply(
            weight, torch.sigmoid(self.thresholds[self.index]), self.survivors, self.index
        )


class DecayController:
    """Adapts the threshold decay so that STR's own sparsity follows a cubic ramp to the target.

    The error is measured on the log of the density (kept fraction), ``e = log(density) - log(ramp_density)``, so that
    99% against 98% weighs as much as 90% against 80%; ``e > 0`` means STR is too dense. A proportional-integral law
    in log space, ``log lambda = I + k_p e`` with ``I += k_i e`` each step, both clamped to
    ``[log min_decay, log max_decay]``. Kept as tensors on the training device, so a step never waits for the device.
    """

    def __init__(
        self,
        target: float,
        initial: float,
        *,
        integral_gain: float,
        proportional_gain: float,
        ramp_end: float,
        min_decay: float,
        max_decay: float,
        device: torch.device,
    ) -> None:
        if not 0.0 < min_decay <= initial <= max_decay:
            raise ValueError(f"the initial threshold decay {initial} must lie in [{min_decay}, {max_decay}]")
        self.target = target
        self.integral_gain = integral_gain
        self.proportional_gain = proportional_gain
        self.ramp_end = ramp_end
        self.log_bounds = (math.log(min_decay), math.log(max_decay))
        self.integral = torch.tensor(math.log(initial), device=device)
        self.error = torch.zeros((), device=device)

    def ramp(self, progress: float) -> float:
        """The sparsity STR should have at ``progress`` (fraction of the learning phase done)."""
        return 1.0 - cubic_keep_fraction(progress, 1.0 - self.target, 0.0, self.ramp_end)

    @property
    def decay(self) -> torch.Tensor:
        """The threshold decay for the next step."""
        return (self.integral + self.proportional_gain * self.error).clamp(*self.log_bounds).exp()

    def update(self, progress: float, sparsity: torch.Tensor) -> None:
        """One control step, given STR's sparsity after the step that brought training to ``progress``."""
        density = (1.0 - sparsity).clamp_min(1e-6)
        self.error = density.log() - math.log(1.0 - self.ramp(progress))
        self.integral.add_(self.integral_gain * self.error).clamp_(*self.log_bounds)


class STRSession(MaskedSession):
    """STR's thresholds (a parameter group of the trainer's) and the decay controller, while the weights train."""

    def __init__(self, method: STR, model: nn.Module, weights: Weights, sparsity: float) -> None:
        self.method = method
        self.names = list(weights)
        self.sizes = [w.numel() for w in weights.values()]
        self.sparsity = sparsity
        device = next(iter(weights.values())).device
        self.thresholds = nn.Parameter(torch.full((len(weights),), float(method.s_init), device=device))
        self.survivors: list[torch.Tensor | None] = [None] * len(weights)
        """Each layer's count of non-zero ``W_eff``, written by the last backward pass (with the controller on)."""
        super().__init__(
            model,
            weights,
            {
                name: SoftThreshold(self.thresholds, index, self.survivors if method.control else None)
                for index, name in enumerate(self.names)
            },
        )
        self.decay = torch.zeros((), device=device)
        self.controller: DecayController | None = None
        self.pending_progress: float | None = None
        """The progress of the last step whose sparsity the controller has not seen yet (see :meth:`before_step`)."""

    def param_groups(self) -> list[ParamGroup]:
        """The thresholds: SGD at the weights' current learning rate, momentum and Nesterov setting, with no weight
        decay of the group's own (:meth:`before_step` adds the controlled one to their gradient)."""
        return [ParamGroup("thresholds", [self.thresholds], lr=1.0, schedule="relative")]

    def on_train_start(self, trainer: Trainer) -> None:
        """The threshold decay starts at ``threshold_decay``, or at the weights' decay when that is ``None``."""
        method = self.method
        initial = (
            trainer.optim_config.weight_decay if method.threshold_decay is None else method.threshold_decay
        )
        self.decay.fill_(initial)
        if method.control:
            self.controller = DecayController(
                self.sparsity,
                initial,
                integral_gain=method.control_integral,
                proportional_gain=method.control_proportional,
                ramp_end=method.ramp_end,
                min_decay=method.min_decay,
                max_decay=method.max_decay,
                device=self.thresholds.device,
            )

    @torch.no_grad()
    def own_sparsity(self) -> torch.Tensor:
        """STR's sparsity now: the fraction of prunable ``W_eff`` entries that are exactly zero (a device tensor)."""
        cutoffs = torch.sigmoid(self.thresholds)
        # Each layer's survivors counted as the sum of |sign(W_eff)| (exact below 2^24 entries per layer): a
        # comparison that makes a boolean tensor costs several passes more on the CPU.
        kept = torch.stack(
            [
                torch.sign(shrink(w, cutoffs[i])).abs_().sum().long()
                for i, w in enumerate(self.weights.values())
            ]
        )
        return 1.0 - kept.sum() / sum(self.sizes)

    @torch.no_grad()
    def before_step(self, trainer: Trainer) -> None:
        """The threshold decay of this step, ``lambda_s * s``, added to the thresholds' gradient (the trainer's SGD
        step on them follows).

        The controller's step for the previous training step runs here rather than after it: the weights and
        thresholds have not changed since, so the forward and backward pass just done computed ``W_eff`` at the
        same values, and its backward counted the survivors (:class:`_SoftThreshold`). The decay the controller
        then gives is the one this step uses, as when it ran right after the previous step."""
        if self.controller is not None:
            if self.pending_progress is not None:
                self.controller.update(self.pending_progress, self._sparsity_now())
                self.pending_progress = None
            self.decay = self.controller.decay
        decay = self.thresholds * self.decay
        if self.thresholds.grad is None:
            self.thresholds.grad = decay
        else:
            self.thresholds.grad.add_(decay)

    def _sparsity_now(self) -> torch.Tensor:
        """:meth:`own_sparsity` from the counts of the last backward pass, or computed again where a layer has none."""
        counts, self.survivors[:] = list(self.survivors), [None] * len(self.survivors)
        if any(count is None for count in counts):
            return self.own_sparsity()
        return 1.0 - torch.stack(counts).sum() / sum(self.sizes)

    def after_step(self, trainer: Trainer) -> None:
        if self.controller is not None:
            self.pending_progress = trainer.progress

    @torch.no_grad()
    def curve_values(self, trainer: Trainer) -> dict[str, float]:
        """For the curves: the sparsity of ``W_eff`` (the stored weights are dense until the end), the mean
        threshold ``g(s) = sigmoid(s)`` over the layers, and the threshold decay in use."""
        return {
            "sparsity": float(self.own_sparsity()),
            "threshold": float(torch.sigmoid(self.thresholds).mean()),
            "threshold_decay": float(self.decay),
        }

    # Checkpointed state (prunebench.run.run_checkpoint): the thresholds are the model's (its parametrizations'),
    # their optimizer the trainer's.
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"decay": self.decay}
        if self.controller is not None:
            state["controller"] = {
                "integral": self.controller.integral,
                "error": self.controller.error,
                "pending_progress": self.pending_progress,
            }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = state["decay"]
        if self.controller is not None:
            self.controller.integral = state["controller"]["integral"]
            self.controller.error = state["controller"]["error"]
            self.pending_progress = state["controller"].get("pending_progress")

    def final_masks(self, trainer: Trainer) -> FinalMasks:
        """Shift all thresholds by one ``delta`` so that exactly the budget survives, with the shifted values."""
        cutoffs = torch.sigmoid(self.thresholds).tolist()
        scores = {
            name: w.detach().abs() - cutoff
            for (name, w), cutoff in zip(self.weights.items(), cutoffs, strict=True)
        }
        layer_sparsity = [float((s <= 0).float().mean()) for s in scores.values()]
        own = sum(sp * n for sp, n in zip(layer_sparsity, self.sizes, strict=True)) / sum(self.sizes)
        masks = exact_top_k(scores, self.sparsity)
        kept = torch.cat([s[masks[name]] for name, s in scores.items()])
        dropped = torch.cat([s[~masks[name]] for name, s in scores.items()])
        last_kept = kept.min()
        first_dropped = dropped.max() if dropped.numel() else None
        if last_kept > 0 and (first_dropped is None or first_dropped <= 0):
            delta = torch.zeros_like(last_kept)
        else:
            # Just below the largest dropped score (the smallest kept one if none is dropped), so that every
            # survivor, ties included, keeps a non-zero value.
            bound = last_kept if first_dropped is None else first_dropped
            delta = torch.nextafter(bound, torch.full_like(bound, -math.inf))
        for name, weight in self.weights.items():
            weight.copy_(torch.sign(weight) * (scores[name] - delta) * masks[name])
        return FinalMasks(
            masks=masks,
            method_sparsity=own,
            enforcement=(
                "STR thresholds shifted by one common delta to the exact budget (global top-k of |W| - sigmoid(s))"
                + (", then fine-tuned with the mask fixed" if self.method.finetune_fraction > 0 else "")
            ),
            details={
                "delta": float(delta),
                "thresholds": dict(zip(self.names, cutoffs, strict=True)),
                "s": dict(zip(self.names, self.thresholds.tolist(), strict=True)),
                "layer_sparsity": dict(zip(self.names, layer_sparsity, strict=True)),
                "final_threshold_decay": float(self.decay),
            },
        )


@register(
    "str",
    schedule="during_training",
    scopes=("learned",),
    paper="Kusupati et al., ICML 2020, 'Soft Threshold Weight Reparameterization for Learnable Sparsity'",
    version=2,
)
class STR(TrainingMethod):
    """Learned per-layer soft thresholds W_eff = sign(W) relu(|W| - sigmoid(s)), steered to the target, then exact.

    Hyperparameters (see the module docstring for the mechanism and the choice of defaults):

    * ``s_init`` (-10): initial value of every threshold parameter ``s`` (the official ``sInit``; ImageNet: -3200).
    * ``threshold_decay`` (1e-3): weight decay on ``s`` (the official ``--st-decay``); with ``control`` it is the
      controller's starting point; ``None`` uses the weights' decay, as the official default.
    * ``control`` (True): adapt the threshold decay so that STR's own sparsity follows a cubic ramp to the target.
    * ``control_integral`` (0.05): integral gain of the controller, on ``log lambda_s`` per step per unit of
      log-density error.
    * ``control_proportional`` (2.0): proportional gain of the controller, on ``log lambda_s``.
    * ``ramp_end`` (0.5): fraction of the learning phase at which the ramp reaches the target (the learning rate
      follows a cosine to zero over that phase, so the thresholds must settle while it is still large).
    * ``min_decay``, ``max_decay`` (1e-6, 0.3): bounds of the controlled decay.
    * ``finetune_fraction`` (0.2): share of the budget fine-tuned with the exact mask fixed (the harness's rule,
      :meth:`~prunebench.methods.base.TrainingMethod.finetune_epochs`; 0: none).
    """

    def __init__(
        self,
        *,
        s_init: float = -10.0,
        threshold_decay: float | None = 1e-3,
        control: bool = True,
        control_integral: float = 0.05,
        control_proportional: float = 2.0,
        ramp_end: float = 0.5,
        min_decay: float = 1e-6,
        max_decay: float = 0.3,
        finetune_fraction: float = 0.2,
    ) -> None:
        self.s_init = s_init
        self.threshold_decay = threshold_decay
        self.control = control
        self.control_integral = control_integral
        self.control_proportional = control_proportional
        self.ramp_end = ramp_end
        self.min_decay = min_decay
        self.max_decay = max_decay
        self.finetune_fraction = finetune_fraction

    def attach(
        self, model: nn.Module, weights: Weights, sparsity: float, scope: str, context: TrainingContext
    ) -> STRSession:
        return STRSession(self, model, weights, sparsity)
