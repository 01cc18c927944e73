"""ProbMask (Zhou et al., CVPR 2021, "Effective Sparsification of Neural Networks with Global Sparsity Constraint").

Every prunable weight ``w_i`` gets a keep probability ``s_i in [0, 1]``; weights and probabilities are trained
together on

    min_{w, s}  E_{m ~ Bernoulli(s)} L(w * m)    subject to  0 <= s <= 1,  sum_i s_i <= k,

with one budget ``k`` over all layers, so the per-layer allocation is learned (scope ``learned``).

Training step (official code: ``utils/conv_type.py::ProbMaskConv``, ``trainers/default.py``):

* Relaxation (binary concrete / Gumbel-sigmoid): ``m = sigmoid((log s - log(1 - s) + n) / tau)`` with logistic noise
  ``n = log u - log(1 - u)``, ``u ~ U(0, 1)``; every layer computes with ``w * m``. ``K`` masks are drawn per step
  (default 2) and the loss is their mean.
* Temperature ``tau = tau_end + (tau_start - tau_end) * (1 - p)`` from 1 to 0.03, ``p`` the fraction of the learning
  phase done (the code's ``T = 1 / tau``).
* Gradient-norm clipping at 3 over the weights and the probabilities together (the code clips
  ``model.parameters()``, which holds both; a preset's own clip of the weights, if any, runs first), then the
  probabilities' Adam step (lr 6e-3, no weight decay, cosine to zero over the learning phase: a parameter group the
  trainer steps, :class:`~prunebench.run.trainer.ParamGroup`) and the weights' SGD step (the harness's; the two
  update different tensors, so their order does not matter).
* Projection of ``s`` onto ``{0 <= s <= 1, sum(s) <= k}`` over all layers jointly (``utils/net_utils.py::
  solve_v_total, constrainScoreByWhole``): ``s <- clamp(s - v, 0, 1)`` with the shift ``v >= 0`` solving
  ``sum_i clamp(s_i - v, 0, 1) = k`` (``v = 0`` when the clamped sum already meets the budget). This is the exact
  Euclidean projection (KKT conditions of ``min ||x - s||^2``); see :func:`project_to_budget`.
* Budget ``k = rho(p) * N`` with the cubic schedule of ``main.py``: keep everything until ``p = ts = 0.16``, cubic
  decay to the target keep fraction until ``p = te = 0.6``, then hold (:func:`~prunebench.methods.sparsity_schedules.
  cubic_keep_fraction`).

End of the learning phase (``main.py``, ``--finetune`` and ``--sample_from_training_set``, on by default): draw 10
masks ``m ~ Bernoulli(s)``, keep the one with the best training accuracy, then fine-tune the weights with that mask
fixed (SGD lr 1e-3 constant, momentum 0.9, weight decay 5e-4, gradient clipping 3).

Scaling to the benchmark's budget. The reference trains 300 epochs and fine-tunes 20; here the fine-tuning takes the
same share, ``finetune_fraction = 20 / 320`` of the budget (the harness's rule,
:meth:`~prunebench.methods.base.TrainingMethod.finetune_epochs`: rounded, at least 1, leaving at least 1 to learn),
and the learning phase the rest. Every schedule of the learning phase (temperature, sparsity, the probabilities'
cosine learning rate) is a function of the fraction ``p`` of it done, so the reference's 300-epoch curves keep their
shape at any budget. The probabilities' learning rate is not rescaled: with far fewer steps than the reference's
(about 59,000 on CIFAR-10), they end less polarized and the Bernoulli draw costs more accuracy, which the records
show as the spread of ``candidate_train_top1``.

Deviations from the official code, by design:

* Schedules are evaluated at every step, ``p = step / steps``; the code updates them once per epoch
  (``p = epoch / epochs``). At 300 epochs the two differ by less than 1/300 of each range; at a budget of a few epochs
  per-epoch updates would turn the curves into a handful of steps.
* Logistic noise from one uniform draw (``logit(u)``, ``u`` clamped to ``[2^-24, 1 - 2^-24]`` so the noise stays
  finite); the code takes the difference of two Gumbel draws, which has the same distribution.
* The ``K`` losses are averaged and back-propagated once; the code back-propagates each ``loss / K`` (same gradient).
* The weights use the preset's recipe (the code: SGD lr 0.1, momentum 0.9, weight decay 5e-4, cosine), as every method
  does; fine-tuning uses the preset's momentum and weight decay at 1/100 of its learning rate, held constant (the
  code's 1e-3 after 0.1), with the preset's batch size (the code switches from 256 to 128).
* The 10 candidate masks are compared on a fixed subset of the training data: the first whole batches of the
  training loader, in its last epoch's order, that hold at least ``selection_examples`` (default 2048) examples, the
  same for every candidate (the code uses the whole training set). As the code, the model stays in
  training mode (normalization layers use batch statistics); running statistics are updated on copies, so the
  selection leaves the model unchanged.
* The sampled mask meets the budget only in expectation. It is brought to the exact target count
  (``round(N * (1 - sparsity))``) by dropping the kept weights with the lowest ``s`` or adding the dropped weights
  with the highest ``s`` (ties broken by ``|w|``); the record keeps the sampled mask's own sparsity as
  ``method_sparsity`` and says how many weights were changed. The code fine-tunes the sampled mask as it is.
* The projection's shift is found to the working precision (``max(s) / 2^25`` in float32) by Newton and secant
  steps from the previous step's shift (:func:`budget_shift`, three to five evaluations of the budget per step);
  the code bisects at most 21 times on the host and stops when the budget is met within 1e-3. Version 1 ran 25
  bisection steps on the device from ``[0, max s]``.
* The ``K`` relaxed masks of a step come from one draw of ``K x N`` uniforms, and their gradient is computed in closed
  form (:class:`RelaxedMasks`, the same function as the official formula); the probabilities' Adam is PyTorch's fused
  kernel. Version 2 (these three changes) computes what version 1 did up to float32 rounding: 1.9x faster per
  step on LeNet-300-100, with different bits in the records.

Numerics: the log-odds are ``log(s + eps) - log(1 - s + eps)`` with ``eps = 1e-20``, as in the code (computed as
``log((s + eps) / (1 - s + eps))``, one logarithm), which keeps them
finite (``|log-odds| <= 46`` in float32) at ``s`` in ``{0, 1}``. A hard clamp of ``s`` to ``[eps, 1 - eps]`` would
instead zero the gradient at ``s = 1``, where every probability starts, and freeze them all until the budget first
pushes them down. The probabilities and the relaxation are kept in float32 (float16 cannot hold ``eps``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from prunebench.core.errors import UsageError
from prunebench.methods.base import FinalMasks, TrainingContext, TrainingMethod, Weights
from prunebench.methods.masked import MaskedSession, count_ones
from prunebench.methods.method_registry import register
from prunebench.methods.sparsity_schedules import cubic_keep_fraction
from prunebench.pruning.allocation import keep_budget
from prunebench.run.recipe import OptimConfig
from prunebench.run.trainer import ParamGroup, cross_entropy, run_passes

if TYPE_CHECKING:
    from prunebench.run.recipe import Recipe
    from prunebench.run.trainer import LossPasses, Trainer

LOG_EPS = 1e-20
"""Added inside both logarithms of the log-odds, as the official code, so that ``s = 0`` and ``s = 1`` stay finite."""

NOISE_CLAMP = 2.0**-24
"""Uniform draws are clamped to ``[NOISE_CLAMP, 1 - NOISE_CLAMP]``: float32's resolution below 1, so ``|noise| <= 16.6``."""


def logistic_noise(like: torch.Tensor) -> torch.Tensor:
    """Standard logistic noise ``log u - log(1 - u)`` shaped like ``like``, from the global torch RNG of its device."""
    return torch.logit(torch.rand_like(like), eps=NOISE_CLAMP)


def relaxed_mask(scores: torch.Tensor, temperature: float, noise: torch.Tensor) -> torch.Tensor:
    """The binary-concrete relaxation of ``Bernoulli(scores)``: ``sigmoid((log s - log(1 - s) + noise) / tau)``.

    With logistic ``noise`` it is a differentiable sample; as ``tau -> 0`` it tends to the hard sample
    ``1[log-odds(s) + noise > 0]``, which is ``Bernoulli(s)``; at ``tau = 1`` and zero noise it equals ``s``.
    (The reference form, differentiated by autograd; training uses :class:`RelaxedMasks`, the same function.)
    """
    log_odds = torch.log(scores + LOG_EPS) - torch.log(1.0 - scores + LOG_EPS)
    return torch.sigmoid((log_odds + noise) / temperature)


class Scratch:
    """Tensors of fixed shapes kept from one training step to the next, by name.

    ProbMask's step works on several vectors as long as all the probabilities together. Allocated afresh at every
    step, such vectors cost more than the arithmetic on them wherever the allocator hands large blocks back to the
    system and their pages are faulted in again (measured in ``docs/performance.md``).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._tensors: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The tensor kept under ``name`` (uninitialized), made anew when ``shape`` or ``dtype`` changed."""
        tensor = self._tensors.get(name)
        if tensor is None or tensor.shape != shape or tensor.dtype != dtype:
            tensor = self._tensors[name] = torch.empty(shape, dtype=dtype, device=self.device)
        return tensor


class RelaxedMasks(torch.autograd.Function):
    """``K`` relaxed masks ``m_k = sigmoid((log-odds(s) + n_k) / tau)`` from one draw, with their gradient in closed form.

    ``forward(scores, tau, samples, sizes, scratch)`` fills a ``K x N`` tensor of ``scratch`` (:class:`Scratch`,
    kept from step to step) with uniform draws in one call, turns them into logistic noise in place (``logit`` with
    the clamp of :data:`NOISE_CLAMP`) and then into the masks; the log-odds of ``s``, ``log(s + eps) - log(1 - s + eps)``,
    are computed once for the ``K`` samples in one logarithm, ``log(a / b)`` with ``a = s + eps``, ``b = 1 - s + eps``
    (the ratio lies in ``[1e-20, 1e20]`` for ``s`` in ``[0, 1]``, inside float32's range, so it is finite wherever
    the two-log form is), and ``a`` and ``b`` are kept for the gradient. It returns each sample's mask cut into the layers' ``sizes`` (``K * len(sizes)``
    views), so that each layer's gradient arrives as its own tensor (slicing one flat mask per layer would make
    autograd add a zero vector of size ``N`` per layer and sample). ``backward``: ``dm_k/ds = m_k (1 - m_k) / tau *
    d log-odds/ds`` with ``d log-odds/ds = 1/a + 1/b = (1 + 2 eps) / (a b)``, so
    ``dL/ds = sum_k dL/dm_k m_k (1 - m_k) / (tau a b)`` (``1 + 2 eps`` is 1 in float32). Autograd of
    :func:`relaxed_mask` would keep six intermediate tensors per sample and run as many kernels backward.
    The masks are valid until the next draw into ``scratch`` (the next training step).
    """

    @staticmethod
    def forward(
        ctx, scores: torch.Tensor, temperature: float, samples: int, sizes: list[int], scratch: Scratch
    ) -> tuple[torch.Tensor, ...]:
        shape = tuple(scores.shape)
        above = torch.add(scores, LOG_EPS, out=scratch.get("s + eps", shape))
        below = torch.neg(scores, out=scratch.get("1 - s + eps", shape)).add_(1.0).add_(LOG_EPS)
        odds = torch.div(above, below, out=scratch.get("vector", shape)).log_()
        masks = scratch.get("masks", (samples, *shape)).uniform_()
        torch.logit(masks, eps=NOISE_CLAMP, out=masks)
        masks.add_(odds).mul_(1.0 / temperature).sigmoid_()
        ctx.save_for_backward(scores, masks)
        ctx.temperature, ctx.sizes, ctx.scratch = temperature, sizes, scratch
        return tuple(part for row in masks for part in row.split(sizes))

    @staticmethod
    def backward(ctx, *grads: torch.Tensor | None) -> tuple[torch.Tensor | None, None, None, None, None]:
        scores, masks = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        layers, scratch, shape = len(ctx.sizes), ctx.scratch, tuple(scores.shape)
        total = torch.zeros_like(scores)
        vector = scratch.get("vector", shape)
        for k, mask in enumerate(masks):
            parts = grads[k * layers : (k + 1) * layers]
            if all(g is None for g in parts):
                continue
            torch.cat(
                [
                    g.reshape(-1) if g is not None else mask.new_zeros(n)
                    for g, n in zip(parts, ctx.sizes, strict=True)
                ],
                out=vector,
            )
            total.add_(torch.ops.aten.sigmoid_backward.grad_input(vector, mask, grad_input=vector))
        above, below = scratch.get("s + eps", shape), scratch.get("1 - s + eps", shape)
        scale = torch.mul(above, below, out=vector).mul_(ctx.temperature)
        return total.div_(scale), None, None, None, None


def bisection_steps(dtype: torch.dtype) -> int:
    """Bisection steps that shrink a bracket of width ``max(s)`` below the resolution of ``dtype`` near 1."""
    return round(-math.log2(torch.finfo(dtype).eps)) + 2


def budget_shift(s: torch.Tensor, k: float, start: float = 0.0, scratch: Scratch | None = None) -> float:
    """The shift ``v`` of the projection ``clamp(s - v, 0, 1)`` of the flat ``s`` onto ``sum <= k`` (see
    :func:`project_to_budget`): ``0`` when ``sum(clamp(s, 0, 1)) <= k``, else the root of
    ``f(v) = sum(clamp(s - v, 0, 1)) - k`` within ``max(s) / 2^bisection_steps`` (the bisection's tolerance), on the
    side where the budget is met (``f(v) <= 0``).

    ``f`` is piecewise linear and non-increasing, with slope ``-#{0 < s_i - v < 1}``. From ``start`` (in training
    the previous step's shift: the scores move little per step) a Newton step with that slope, then secant steps,
    land on the root of the current linear piece; each is aimed half a tolerance past it, so that the root gets
    bracketed. A step that would leave the bracket ``[lo, hi]`` (``f(lo) > 0 >= f(hi)``) is replaced by a
    bisection, and so is the step after two that did not halve the bracket. A training step takes three to five
    evaluations of ``f`` where a fixed bisection takes :func:`bisection_steps` (25 in float32). ``f`` is summed in
    float64; its vectors are kept in ``scratch`` (in training the session's, from step to step).
    """
    scratch = scratch or Scratch(s.device)
    shape = tuple(s.shape)
    work = torch.clamp(s, 0.0, 1.0, out=scratch.get("vector", shape, s.dtype))
    if float(work.sum()) <= k:
        return 0.0
    lo, hi = 0.0, float(s.max())
    tolerance = hi * 2.0 ** -bisection_steps(s.dtype)
    v = start if lo < start < hi else 0.5 * (lo + hi)
    width, slow, previous = hi - lo, 0, None
    for _ in range(3 * bisection_steps(s.dtype)):
        torch.sub(s, v, out=work)
        active = _count_inside(work, scratch) if previous is None else 0
        work.clamp_(0.0, 1.0)
        excess = float(scratch.get("float64 vector", shape, torch.float64).copy_(work).sum()) - k
        if excess > 0.0:
            lo = v
        else:
            hi = v
        if excess == 0.0 or hi - lo <= tolerance:
            break
        slow = 0 if hi - lo <= 0.5 * width else slow + 1
        width = hi - lo
        if previous is None:
            slope = -active
        else:
            slope = (excess - previous[1]) / (v - previous[0]) if v != previous[0] else 0.0
        previous = (v, excess)
        aim = math.inf
        if slope < 0.0:
            aim = v - excess / slope + (0.5 * tolerance if excess > 0.0 else -0.5 * tolerance)
        v = aim if slow < 2 and lo < aim < hi else 0.5 * (lo + hi)
    return hi


def _count_inside(values: torch.Tensor, scratch: Scratch) -> int:
    """``#{0 < v_i < 1}``, from comparisons written as 0/1 floats (boolean tensors cost several times more on the CPU)."""
    shape = tuple(values.shape)
    above_zero = torch.gt(values, 0.0, out=scratch.get("indicator", shape))
    below_one = torch.lt(values, 1.0, out=scratch.get("second indicator", shape))
    return count_ones(above_zero.mul_(below_one))


def project_to_budget(s: torch.Tensor, k: float, start: float = 0.0) -> torch.Tensor:
    """Euclidean projection of the flat vector ``s`` onto ``{x : 0 <= x <= 1, sum(x) <= k}``.

    The KKT conditions of ``min ||x - s||^2`` give ``x = clamp(s - v, 0, 1)`` with ``v = 0`` if
    ``sum(clamp(s, 0, 1)) <= k``, else the ``v > 0`` solving ``f(v) = sum(clamp(s - v, 0, 1)) - k = 0``. ``f`` is
    continuous and non-increasing with ``f(0) > 0 >= f(max s)`` (for ``k > 0``); :func:`budget_shift` finds ``v``
    (from ``start``, the previous step's shift in training). ``k`` is a number of entries; the result has the dtype
    and device of ``s``.
    """
    return (s - budget_shift(s, k, start)).clamp_(0.0, 1.0)


def _lexicographic_order(primary: torch.Tensor, secondary: torch.Tensor) -> torch.Tensor:
    """Indices sorting by ``primary`` ascending, then ``secondary`` ascending (two stable sorts)."""
    by_secondary = torch.argsort(secondary, stable=True)
    return by_secondary[torch.argsort(primary[by_secondary], stable=True)]


def to_exact_count(
    mask: torch.Tensor, probabilities: torch.Tensor, magnitudes: torch.Tensor, keep: int
) -> torch.Tensor:
    """``mask`` (flat, boolean) changed as little as possible to keep exactly ``keep`` entries.

    Too many kept: drop the kept entries with the lowest probability; too few: add the dropped entries with the
    highest. Ties in probability (common at exactly 0 or 1) go by magnitude, then by position.
    """
    order = _lexicographic_order(probabilities, magnitudes)
    result = mask.clone()
    excess = int(mask.sum()) - keep
    if excess > 0:
        kept = order[mask[order]]
        result[kept[:excess]] = False
    elif excess < 0:
        dropped = order[~mask[order]]
        result[dropped[excess:]] = True
    return result


class _SampledMask(nn.Module):
    """Parametrization of one layer's weight: ``w * m``, ``m`` its part of the session's current relaxed mask."""

    def __init__(self, session: ProbMaskSession, index: int) -> None:
        super().__init__()
        self.session = session
        self.index = index

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        masks = self.session.current_masks
        if masks is None:
            raise RuntimeError(
                "a ProbMask layer computes only inside the training step, with the mask the session drew"
            )
        return weight * masks[self.index].view_as(weight)


class ProbMaskSession(MaskedSession):
    """ProbMask's state while the weights train: the flat probability vector (a parameter group trained by Adam) and
    the schedules.

    The probabilities of all layers are one contiguous float32 vector (``scores``), so the relaxation, the clipping,
    the Adam step and the projection are each a few kernels over all layers at once; each prunable weight computes
    with its slice of the current relaxed mask (the shared parametrization of :mod:`prunebench.methods.masked`).
    """

    def __init__(
        self, method: ProbMask, model: nn.Module, weights: Weights, sparsity: float, context: TrainingContext
    ) -> None:
        self.method = method
        self.sparsity = sparsity
        self.context = context
        self.size = sum(w.numel() for w in weights.values())
        device = next(iter(weights.values())).device
        self.scores = nn.Parameter(torch.ones(self.size, dtype=torch.float32, device=device))
        self.current_masks: tuple[torch.Tensor, ...] | None = None
        """The relaxed mask of the sample being computed, one part per layer (only inside ``compute_loss``)."""
        self.scratch = Scratch(device)
        """The step's vectors of ``N`` entries: its draws and relaxed masks, the projection's (:class:`Scratch`)."""
        self.projection_shift = 0.0
        """The last projection's shift ``v``, where the next step's search starts (:func:`budget_shift`)."""
        self.slices: dict[str, tuple[int, int]] = {}
        start = 0
        for name, weight in weights.items():
            self.slices[name] = (start, start + weight.numel())
            start += weight.numel()
        super().__init__(  # unsafe: skip the trial forward, there is no mask yet
            model,
            weights,
            {name: _SampledMask(self, index) for index, name in enumerate(self.slices)},
            unsafe=True,
        )

    def param_groups(self) -> list[ParamGroup]:
        """The probabilities: Adam (PyTorch's defaults, no weight decay) at ``score_lr``, cosine to zero over the
        learning phase."""
        return [
            ParamGroup(
                "probabilities",
                [self.scores],
                optimizer="adam",
                lr=self.method.score_lr,
                schedule="cosine",
                weight_decay=0.0,
            )
        ]

    def temperature(self, progress: float) -> float:
        """``tau`` at ``progress`` (fraction of the learning phase done): linear from ``temperature_start`` to
        ``temperature_end``."""
        m = self.method
        return m.temperature_end + (m.temperature_start - m.temperature_end) * (1.0 - progress)

    def budget(self, progress: float) -> float:
        """``k`` at ``progress``: the cubic keep fraction of the ``N`` probabilities (``N`` before ``ts``)."""
        keep = cubic_keep_fraction(
            progress, 1.0 - self.sparsity, self.method.sparsity_start, self.method.sparsity_end
        )
        return keep * self.size

    def compute_loss(self, trainer: Trainer, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return run_passes(self.loss_passes(trainer, inputs, targets), lambda: self.model(inputs))

    def loss_passes(self, trainer: Trainer, inputs: torch.Tensor, targets: torch.Tensor) -> LossPasses:
        """The mean cross-entropy of ``samples`` forward passes, each with its own relaxed mask of one draw."""
        tau = self.temperature(trainer.progress)
        loss = torch.zeros((), device=inputs.device)
        sizes = [b - a for a, b in self.slices.values()]
        parts = RelaxedMasks.apply(self.scores, tau, self.method.samples, sizes, self.scratch)
        for k in range(self.method.samples):
            self.current_masks = parts[k * len(sizes) : (k + 1) * len(sizes)]
            loss = loss + cross_entropy((yield), targets)
        self.current_masks = None
        return loss / self.method.samples

    def before_step(self, trainer: Trainer) -> None:
        """Clip the gradients of the weights and the probabilities together (the probabilities' Adam step and the
        weights' SGD step follow)."""
        nn.utils.clip_grad_norm_(
            [*trainer.weight_parameters, self.scores], self.method.grad_clip, foreach=True
        )

    @torch.no_grad()
    def after_step(self, trainer: Trainer) -> None:
        """Project the probabilities onto the budget of the step just taken (its progress is the one before
        ``trainer.step`` counted it; the weights' step in between touched other tensors)."""
        progress = (trainer.step - 1) / max(trainer.total_steps, 1)
        shift = budget_shift(self.scores, self.budget(progress), self.projection_shift, self.scratch)
        self.scores.sub_(shift).clamp_(0.0, 1.0)
        self.projection_shift = shift

    evaluable = False  # the layers compute only inside a step, with the mask drawn there

    @torch.no_grad()
    def curve_values(self, trainer: Trainer) -> dict[str, float]:
        """For the curves: the temperature and the kept fraction of the budget the next step uses, and the expected
        sparsity of a mask drawn from the probabilities now (``1 - mean(s)``)."""
        progress = trainer.progress
        return {
            "temperature": self.temperature(progress),
            "budget": self.budget(progress) / self.size,
            "expected_sparsity": 1.0 - float(self.scores.mean()),
        }

    # Checkpointed state (prunebench.run.run_checkpoint): what neither the model nor the trainer holds (the
    # probabilities' optimizer is the trainer's).
    def state_dict(self) -> dict[str, Any]:
        return {"scores": self.scores.detach(), "projection_shift": self.projection_shift}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.scores.copy_(state["scores"])
        self.projection_shift = state["projection_shift"]

    def final_masks(self, trainer: Trainer) -> FinalMasks:
        """The best of the sampled masks, brought to the exact target count."""
        probabilities = self.scores.detach().clone()
        candidates = [
            torch.rand_like(probabilities) < probabilities for _ in range(self.method.mask_candidates)
        ]
        accuracies = self._training_accuracies(candidates)
        chosen = int(torch.argmax(accuracies))
        sampled = candidates[chosen]
        sampled_kept = int(sampled.sum())
        keep = keep_budget(self.size, self.sparsity)
        magnitudes = torch.cat([w.detach().reshape(-1).abs().float() for w in self.weights.values()])
        exact = to_exact_count(sampled, probabilities, magnitudes, keep)
        masks = {name: exact[a:b].view_as(self.weights[name]) for name, (a, b) in self.slices.items()}
        if sampled_kept > keep:
            enforcement = (
                f"best of {len(candidates)} Bernoulli(s) masks kept {sampled_kept} weights; dropped the "
                f"{sampled_kept - keep} kept weights with the lowest s to reach the target {keep}"
            )
        elif sampled_kept < keep:
            enforcement = (
                f"best of {len(candidates)} Bernoulli(s) masks kept {sampled_kept} weights; added the "
                f"{keep - sampled_kept} dropped weights with the highest s to reach the target {keep}"
            )
        else:
            enforcement = None
        return FinalMasks(
            masks=masks,
            method_sparsity=1.0 - sampled_kept / self.size,
            enforcement=enforcement,
            details={
                "expected_kept": float(probabilities.sum()),
                "sampled_kept": sampled_kept,
                "target_kept": keep,
                "candidate_train_top1": [round(float(a), 4) for a in accuracies],
                "chosen_candidate": chosen,
            },
        )

    def _training_accuracies(self, candidates: list[torch.Tensor]) -> torch.Tensor:
        """Top-1 (percent) of the model under each candidate mask on the same fixed subset of the training data."""
        batches, count = [], 0
        for inputs, targets in self.context.train_data:
            batches.append((inputs, targets))
            count += len(targets)
            if count >= self.method.selection_examples:
                break
        self.model.train()
        scratch = {name: b.clone() for name, b in self.model.named_buffers()}
        correct = []
        for candidate in candidates:
            masked = {
                name: w * candidate[a:b].view_as(w)
                for (name, w), (a, b) in zip(self.weights.items(), self.slices.values(), strict=True)
            }
            hits = torch.zeros((), device=candidate.device)
            for inputs, targets in batches:
                logits = torch.func.functional_call(self.model, {**masked, **scratch}, (inputs,))
                hits += (logits.argmax(dim=1) == targets).sum()
            correct.append(hits)
        return 100.0 * torch.stack(correct) / max(count, 1)


@register(
    "probmask",
    schedule="during_training",
    scopes=("learned",),
    paper="Zhou et al., CVPR 2021, 'Effective Sparsification of Neural Networks with Global Sparsity Constraint'",
    version=2,
)
class ProbMask(TrainingMethod):
    """Keep probabilities trained with the weights under one global budget; best sampled mask, then fine-tune.

    See the module docstring for the equations, the schedules and how they scale to the benchmark's budget.
    Hyperparameters default to the official code's: ``samples`` (K), the temperature range, the probabilities'
    Adam learning rate, the sparsity schedule's start and end (``ts``, ``te``, fractions of the learning phase), the
    number of candidate masks, the gradient-norm clip, the fine-tuning share of the budget (``finetune_fraction``:
    20 of 300 + 20 epochs) and its learning rate relative to the weights' (1e-3 / 0.1). ``selection_examples`` is this benchmark's: the size
    of the training subset the candidate masks are compared on.
    """

    def __init__(
        self,
        *,
        samples: int = 2,
        temperature_start: float = 1.0,
        temperature_end: float = 0.03,
        score_lr: float = 6e-3,
        sparsity_start: float = 0.16,
        sparsity_end: float = 0.6,
        mask_candidates: int = 10,
        grad_clip: float = 3.0,
        finetune_fraction: float = 20 / 320,
        finetune_lr_ratio: float = 1e-3 / 0.1,
        selection_examples: int = 2048,
    ) -> None:
        if samples < 1 or mask_candidates < 1:
            raise UsageError("ProbMask needs at least one mask sample per step and one candidate mask")
        if not 0.0 < temperature_end <= temperature_start:
            raise UsageError(f"ProbMask's temperature must fall from {temperature_start} to a positive end")
        self.samples = samples
        self.temperature_start = temperature_start
        self.temperature_end = temperature_end
        self.score_lr = score_lr
        self.sparsity_start = sparsity_start
        self.sparsity_end = sparsity_end
        self.mask_candidates = mask_candidates
        self.grad_clip = grad_clip
        self.finetune_fraction = finetune_fraction
        self.finetune_lr_ratio = finetune_lr_ratio
        self.selection_examples = selection_examples

    def finetune_optim(self, recipe: Recipe) -> OptimConfig:
        """The recipe's SGD at ``finetune_lr_ratio`` of its learning rate, constant, with the gradient-norm clip."""
        return OptimConfig(
            lr=recipe.optim.lr * self.finetune_lr_ratio,
            momentum=recipe.optim.momentum,
            weight_decay=recipe.optim.weight_decay,
            nesterov=recipe.optim.nesterov,
            schedule="constant",
            grad_clip=self.grad_clip,
        )

    def attach(
        self, model: nn.Module, weights: Weights, sparsity: float, scope: str, context: TrainingContext
    ) -> ProbMaskSession:
        if scope != "learned":
            raise UsageError(f"ProbMask learns its layer allocation (scope 'learned'), not {scope!r}")
        return ProbMaskSession(self, model, weights, sparsity, context)
