"""Movement pruning, hard and soft (Sanh, Wolf & Rush, NeurIPS 2020, "Movement Pruning: Adaptive Sparsity by
Fine-Tuning"), ported from the official ``examples/research_projects/movement-pruning`` code of huggingface/transformers
(``emmental/modules/masked_nn.py``, ``emmental/modules/binarizer.py``, ``masked_run_glue.py``) to Conv and Linear layers.

Both variants fine-tune the shared dense pre-training (``starts_from = "dense"``), as the paper fine-prunes a
pre-trained BERT. Every prunable weight ``W`` gets a score matrix ``S`` (initialised to the constant 0, the reference's
``--mask_init constant --mask_scale 0``) learned with the weights; the layer computes with ``W' = W * M(S)``, and the
binary mask is differentiated with the straight-through estimator (paper, Eq. 2-3):

    dL/dW = dL/dW' * M,        dL/dS = dL/dW' * W.

With plain SGD the scores would accumulate ``-lr * sum_t dL/dW_t * W_t``, the weights' movement away from zero.

* ``movement`` (hard): ``M = TopK(S)``, the highest scores at the kept fraction ``v_t`` of the cubic schedule (paper,
  Eq. 7, the reference's ``schedule_threshold``). ``uniform`` scope keeps ``v_t`` of each layer (the reference's
  per-matrix ``TopKBinarizer``); ``global`` keeps the highest scores over all layers (``--global_topk``), each matrix
  keeping at least ``int(0.005 n) + 1`` of its ``n`` weights, as the reference: with ``--global_topk`` it passes one
  score threshold to every layer, whose ``ThresholdBinarizer`` keeps the scores above it unless fewer than
  ``int(0.005 n) + 1`` remain, and then keeps that many of its own highest scores instead (``global_floor``).
* ``soft_movement``: ``M = 1[sigmoid(S) > tau_t]`` with one threshold for all layers (the reference's
  ``ThresholdBinarizer`` with ``sigmoied_threshold``), and the loss gains ``lambda_t * mean_l ||sigmoid(S_l)||_1 / n_l``
  (the reference's ``regularization(mode="l1")``), where ``tau_t`` follows the cubic schedule from ``tau_i`` to
  ``tau_f`` and ``lambda_t = lambda_f * tau_t / tau_f`` (``schedule_threshold``). The allocation across layers is
  learned; the sparsity it reaches is set by ``lambda_f``, not by the target.

Port and deviations from the official code (all recorded as hyperparameters):

* Schedule: the reference counts its warm-ups in units of ``warmup_steps`` (5400 steps, about one SQuAD epoch of 10):
  ``initial_warmup=1``, ``final_warmup=2``. Here they are fractions of the learning phase, ``0.1`` and ``0.2``, so the
  cubic ramp runs from 10% to 80% of the phase whatever the budget (``cubic_keep_fraction``).
* Exact counts: each step keeps exactly the scheduled number of weights per scope (counts from
  ``prunebench.pruning.allocation``, selection by ``torch.topk``, or by the opt-in :mod:`~prunebench.methods.fast_topk`
  with the same result), where the reference keeps ``int(v * n)`` per matrix and,
  with ``--global_topk``, refreshes the global threshold every ``global_topk_frequency_compute`` steps. The hard mask
  therefore ends at exactly the target. In ``global`` scope the per-matrix floor is kept within that exact count:
  each matrix's floor, then the highest remaining scores over all matrices (the reference's floor adds its weights on
  top of the global count). Version 1 of ``movement`` had no floor (``global_floor=None`` computes it); the floor
  changes ``global`` results wherever a matrix would otherwise fall below it.
* Optimizers: the reference trains weights and scores with one AdamW (weights 3e-5, scores 1e-2, no weight decay on the
  scores, one linear warm-up/decay schedule). The weights here follow the preset's fine-tuning SGD like every other
  method; the scores keep the reference's own setting, Adam (betas 0.9/0.999, eps 1e-8, no weight decay) at lr 1e-2,
  scaled at each step by the weights' learning-rate schedule factor, so that scores and weights share one schedule
  as in the reference (a parameter group the trainer steps, :class:`~prunebench.run.trainer.ParamGroup`). Gradient clipping (the reference's ``max_grad_norm`` 1.0) and distillation are not used.
  The scores' Adam is PyTorch's fused kernel on the CPU and CUDA (``movement`` version 3, ``soft_movement`` version
  2; before, its foreach implementation): the same update in another order of floating-point operations, so scores,
  masks and accuracies differ from the earlier versions' in the last bits (its cost: ``docs/performance.md``).
* Score learning rate and run length: Adam's steps do not depend on the gradient's scale, so hard movement's ranking
  is the same for any score lr and keeps 1e-2. Soft movement compares ``sigmoid(S)`` with a fixed ``tau``, so how far
  the scores can travel matters, and the reference's 1e-2 per step assumes tens of thousands of steps: over a short
  phase the scores never reach ``tau`` (no pruning at all). Its lr is therefore scaled by ``reference_steps / steps``
  with ``reference_steps`` = 5400 (the reference's ``warmup_steps``, one SQuAD epoch): over the whole phase the scores
  can travel as far as in one epoch of the reference. ``reference_steps=None`` keeps 1e-2 per step. The choice of
  5400 over the reference's whole run (54,000) was informed by test accuracies on mnist5k (no validation split), so
  ``soft_movement`` on mnist5k is mildly tuned on its test data; the figures are in ``docs/methods.md``.
* The mask is computed once per step (after the optimizer step, for the next forward) instead of in every forward;
  the scores only change at optimizer steps, so the masks are the same.
* The scores' parametrization and the final exact count are the shared ones of :mod:`prunebench.methods.masked`.
* Soft movement reaches its own sparsity (``lambda_f`` sets it, the target does not); at the end the mask is brought to
  the exact target by a global top-k of ``S`` above each layer's floor of ``int(0.005 n) + 1`` weights (the same rule
  ``sigmoid(S) > tau`` with ``tau`` moved to the target, and the reference binarizer's floor), recorded as the
  enforcement with the sparsity reached before it, and the pruned model is fine-tuned with the mask fixed for a third
  of the budget (``finetune_fraction``), in epochs rounded by the harness's rule for every method
  (:meth:`~prunebench.methods.base.TrainingMethod.finetune_epochs`). Neither the paper nor the reference fine-tunes
  after the mask is fixed, so neither has a rule of its own; ``soft_movement`` version 2 rounded down, version 3
  rounds to the nearest epoch (they differ where a third of the epochs ends in a half or more: 2 or 5 epochs after
  the dense pre-training fine-tune 1 and 2 epochs, not 0 and 1; no preset's budget is one). The penalty averages the
  layers' mean ``sigmoid(S)`` with equal weights, as the reference (whose BERT matrices have similar sizes); in a
  CNN it presses small layers hardest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import torch
from torch import nn

from prunebench.core.errors import UsageError
from prunebench.methods.base import (
    FinalMasks,
    Masks,
    TrainingContext,
    TrainingMethod,
    TrainingSession,
    Weights,
)
from prunebench.methods.fast_topk import TrackedTopK, tracked_top_k_on
from prunebench.methods.masked import MaskedSession, count_ones, exact_top_k
from prunebench.methods.method_registry import register
from prunebench.methods.sparsity_schedules import cubic_keep_fraction
from prunebench.pruning.allocation import keep_budget, layer_keep_counts, masks_from_scores, top_mask
from prunebench.run.trainer import ParamGroup, cross_entropy, run_passes

if TYPE_CHECKING:
    from prunebench.run.trainer import LossPasses, Trainer

PAPER = "Sanh, Wolf & Rush, NeurIPS 2020, 'Movement Pruning: Adaptive Sparsity by Fine-Tuning'"

FLOOR = 0.005
"""The reference ``ThresholdBinarizer``'s floor: a matrix keeps at least ``int(0.005 n) + 1`` of its ``n`` weights."""


def matrix_floor(size: int, fraction: float) -> int:
    """The fewest weights the reference's ``ThresholdBinarizer`` keeps of a matrix of ``size``:
    ``int(fraction * size) + 1``."""
    return int(fraction * size) + 1


class StraightThroughMask(torch.autograd.Function):
    """``W' = W * M`` whose gradient reaches the scores straight through the binarization (paper, Eq. 3).

    ``forward(W, S, M)`` returns ``W * M``; ``backward`` returns ``dL/dW' * M`` for ``W`` and ``dL/dW' * W`` for ``S``
    (the reference's ``TopKBinarizer``/``ThresholdBinarizer`` backward passes the mask gradient unchanged to ``S``).
    """

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(weight, mask)
        return weight * mask

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        weight, mask = ctx.saved_tensors
        grad_weight = grad * mask if ctx.needs_input_grad[0] else None
        grad_scores = grad * weight if ctx.needs_input_grad[1] else None
        return grad_weight, grad_scores, None


class ScoredMask(nn.Module):
    """Parametrization ``weight -> weight * mask`` with learnable scores ``S`` and the current binary mask.

    ``scores`` and ``mask`` (the weight's shape and dtype) are taken as they are, not copied: the session holds each
    as a view of one vector over all layers, so that its global top-k reads the scores and writes the masks in
    place. The session writes ``mask`` from the scores once per step.
    """

    def __init__(self, scores: torch.Tensor, mask: torch.Tensor) -> None:
        super().__init__()
        self.scores = nn.Parameter(scores)
        self.register_buffer("mask", mask)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return StraightThroughMask.apply(weight, self.scores, self.mask)


def flat_views(weights: Weights, fill: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One vector filled with ``fill`` over all of ``weights``' entries, and each weight's part of it as a view of
    the weight's shape."""
    first = next(iter(weights.values()))
    kinds = sorted({f"{w.dtype} on {w.device}" for w in weights.values()})
    if len(kinds) > 1:
        raise UsageError(
            f"movement pruning needs every prunable weight of one dtype on one device, found {', '.join(kinds)}"
        )
    flat = torch.full(
        (sum(w.numel() for w in weights.values()),), fill, dtype=first.dtype, device=first.device
    )
    parts = flat.split([w.numel() for w in weights.values()])
    return flat, {name: part.view_as(w) for (name, w), part in zip(weights.items(), parts, strict=True)}


class MovementSession(MaskedSession):
    """Scores and the schedule of one movement-pruning run (shared by the hard and soft variants).

    Its state is the model's (the scores and masks of its parametrizations) and the trainer's (the scores'
    optimizer), so that a checkpoint holds it without a :meth:`state_dict` of its own."""

    def __init__(
        self,
        model: nn.Module,
        weights: Weights,
        sparsity: float,
        scope: str,
        *,
        score_init: float,
        score_lr: float,
        reference_steps: int | None,
        initial_warmup: float,
        final_warmup: float,
    ) -> None:
        self.sparsity = sparsity
        self.scope = scope
        self.score_lr = score_lr
        self.reference_steps = reference_steps
        self.start = initial_warmup
        self.end = 1.0 - final_warmup
        self.flat_scores, scores = flat_views(weights, score_init)
        self.flat_mask, masks = flat_views(weights, 1.0)
        """All layers' scores and masks, each one vector whose parts are the layers' (:class:`ScoredMask`)."""
        self.masks = {name: ScoredMask(scores[name], masks[name]) for name in weights}
        super().__init__(model, weights, self.masks)
        self.scores = {name: p.scores for name, p in self.masks.items()}

    def param_groups(self) -> list[ParamGroup]:
        """The scores: the reference's Adam (betas 0.9/0.999, eps 1e-8, no weight decay) at :meth:`score_rate`,
        following the weights' schedule."""
        return [
            ParamGroup(
                "scores",
                list(self.scores.values()),
                optimizer="adam",
                lr=self.score_rate,
                schedule="weights",
                betas=(0.9, 0.999),
                eps=1e-8,
                weight_decay=0.0,
            )
        ]

    def score_rate(self, trainer: Trainer) -> float:
        """The scores' learning rate: ``score_lr``, times ``reference_steps / steps`` of the phase where that is set."""
        if self.reference_steps is None:
            return self.score_lr
        return self.score_lr * self.reference_steps / max(trainer.total_steps, 1)

    def update_masks(self, progress: float) -> None:
        """Write the binary masks of the next forward pass, at ``progress`` (fraction of the learning phase done)."""
        raise NotImplementedError

    def on_train_start(self, trainer: Trainer) -> None:
        self.update_masks(trainer.progress)

    def after_step(self, trainer: Trainer) -> None:
        self.update_masks(trainer.progress)

    def _write(self, masks: Masks) -> None:
        with torch.no_grad():
            for name, mask in masks.items():
                self.masks[name].mask.copy_(mask)


class HardMovementSession(MovementSession):
    """``M = TopK(S)`` at the scheduled kept fraction, per layer (``uniform``) or over all layers (``global``, each
    layer above its floor)."""

    def __init__(
        self,
        model: nn.Module,
        weights: Weights,
        sparsity: float,
        scope: str,
        *,
        global_floor: float | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, weights, sparsity, scope, **kwargs)
        self.floors = (
            {name: matrix_floor(w.numel(), global_floor) for name, w in weights.items()}
            if scope == "global" and global_floor is not None
            else None
        )
        self.top_k_trackers = (
            {key: TrackedTopK() for key in (["global"] if scope == "global" else weights)}
            if tracked_top_k_on(self.flat_scores.device)
            else None
        )
        """The opt-in speed-up of the per-step top-k (:mod:`~prunebench.methods.fast_topk`), ``None`` where it is
        off: the last threshold of the global scores, or of each layer's; it speeds the search, never changes a
        mask."""

    def keep_fraction(self, progress: float) -> float:
        """The cubic schedule of the kept fraction (paper, Eq. 7; the reference's ``schedule_threshold``)."""
        return cubic_keep_fraction(progress, 1.0 - self.sparsity, self.start, self.end)

    def top_masks(self, sparsity: float) -> Masks:
        """The highest scores at ``sparsity``: per layer (``uniform``), or globally above each layer's floor."""
        if self.scope == "global":
            return exact_top_k(self.scores, sparsity, self.floors)
        return masks_from_scores(self.scores, sparsity, self.scope)

    @torch.no_grad()
    def write_step_masks(self, sparsity: float) -> None:
        """Write :meth:`top_masks` at ``sparsity`` into the layers' masks (in place, where the forward reads them)."""
        trackers = self.top_k_trackers
        if trackers is None or not self._write_tracked_masks(trackers, sparsity):
            self._write(self.top_masks(sparsity))

    def _write_tracked_masks(self, trackers: dict[str, TrackedTopK], sparsity: float) -> bool:
        """The opt-in speed-up of :meth:`write_step_masks`: the same masks, found from the previous step's
        thresholds (:class:`~prunebench.methods.fast_topk.TrackedTopK`). ``False`` where the global top-k is not
        unique or a layer falls below its floor (the caller then writes :meth:`top_masks`); a layer whose scores tie
        at its threshold takes its own ``torch.topk``."""
        if self.scope == "global":
            found = trackers["global"].mask(
                self.flat_scores, keep_budget(self.flat_scores.numel(), sparsity), out=self.flat_mask
            )
            if found and self.floors is not None:
                # Every layer holding at least its floor among the unique global top-k, the floor's top-k lies
                # within it and exact_top_k selects the same set; a layer below it: the floor's top-k decides
                # (rare: the floor is 0.5%).
                found = all(count_ones(p.mask) >= self.floors[name] for name, p in self.masks.items())
            return found
        counts = layer_keep_counts({n: s.shape for n, s in self.scores.items()}, sparsity, self.scope)
        for name, scores in self.scores.items():
            flat, live = scores.detach().view(-1), self.masks[name].mask.view(-1)
            if counts[name] == 0 or not trackers[name].mask(flat, counts[name], out=live):
                live.copy_(top_mask(flat, counts[name]))
        return True

    def update_masks(self, progress: float) -> None:
        keep = self.keep_fraction(progress)
        if keep >= 1.0:
            with torch.no_grad():
                self.flat_mask.fill_(1.0)
            return
        self.write_step_masks(1.0 - keep)

    def final_masks(self, trainer: Trainer) -> FinalMasks:
        return FinalMasks(masks=self.top_masks(self.sparsity), method_sparsity=self.sparsity)


class SoftMovementSession(MovementSession):
    """``M = 1[sigmoid(S) > tau_t]`` plus the penalty ``lambda_t * mean_l ||sigmoid(S_l)||_1 / n_l``."""

    def __init__(
        self,
        model: nn.Module,
        weights: Weights,
        sparsity: float,
        *,
        initial_threshold: float,
        final_threshold: float,
        final_lambda: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, weights, sparsity, "learned", **kwargs)
        self.initial_threshold = initial_threshold
        self.final_threshold = final_threshold
        self.final_lambda = final_lambda
        self.regu_lambda = 0.0
        self.floors = {name: matrix_floor(scores.numel(), FLOOR) for name, scores in self.scores.items()}

    def threshold(self, progress: float) -> float:
        """``tau_t``: the reference's cubic schedule from ``tau_i`` to ``tau_f`` (``schedule_threshold``)."""
        return cubic_keep_fraction(
            progress, self.final_threshold, self.start, self.end, initial_keep=self.initial_threshold
        )

    @torch.no_grad()
    def threshold_masks(self, tau: float) -> Masks:
        """``sigmoid(S) > tau`` per layer; a layer left with fewer than ``int(0.005 n) + 1`` weights keeps that many
        highest scores instead (the reference's ``ThresholdBinarizer`` floor)."""
        masks = {name: torch.sigmoid(scores) > tau for name, scores in self.scores.items()}
        kept = torch.stack([mask.sum() for mask in masks.values()]).tolist()
        for (name, scores), count in zip(self.scores.items(), kept, strict=True):
            if count < self.floors[name]:
                masks[name] = top_mask(scores, self.floors[name])
        return masks

    @torch.no_grad()
    def exact_masks(self) -> Masks:
        """Exactly the target: each layer's floor, then the highest remaining scores over all layers."""
        return exact_top_k(self.scores, self.sparsity, self.floors)

    def update_masks(self, progress: float) -> None:
        tau = self.threshold(progress)
        self.regu_lambda = self.final_lambda * tau / self.final_threshold
        self._write(self.threshold_masks(tau))

    def compute_loss(self, trainer: Trainer, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return run_passes(self.loss_passes(trainer, inputs, targets), lambda: trainer.model(inputs))

    def loss_passes(self, trainer: Trainer, inputs: torch.Tensor, targets: torch.Tensor) -> LossPasses:
        """The cross-entropy of one forward pass plus the scores' penalty at its current weight."""
        loss = cross_entropy((yield), targets)
        if self.regu_lambda == 0.0:
            return loss
        penalty = torch.stack([torch.sigmoid(s).sum() / s.numel() for s in self.scores.values()]).mean()
        return loss + self.regu_lambda * penalty

    # Checkpointed state (prunebench.run.run_checkpoint): the penalty's current weight.
    def state_dict(self) -> dict[str, Any]:
        return {"regu_lambda": self.regu_lambda}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.regu_lambda = state["regu_lambda"]

    def final_masks(self, trainer: Trainer) -> FinalMasks:
        own = self.threshold_masks(self.final_threshold)
        total = sum(m.numel() for m in own.values())
        kept = sum(int(m.sum()) for m in own.values())
        return FinalMasks(
            masks=self.exact_masks(),
            method_sparsity=1.0 - kept / total,
            enforcement="global top-k of the scores S above each layer's 0.5% floor (threshold moved to the target)",
            details={
                "own_layer_density": {name: float(m.float().mean()) for name, m in own.items()},
                "final_threshold": self.final_threshold,
                "final_lambda": self.final_lambda,
            },
        )


@register("movement", schedule="during_training", scopes=("global", "uniform"), paper=PAPER, version=3)
class Movement(TrainingMethod):
    """Hard movement pruning: keep the top-k learned movement scores, along a cubic schedule, fine-tuning the dense model.

    Defaults are the reference's SQuAD recipe (``--mask_scores_learning_rate 1e-2 --initial_warmup 1
    --final_warmup 2`` of 10 epochs, ``--mask_init constant --mask_scale 0``), warm-ups given as fractions of the
    learning phase. ``uniform`` is the reference's per-matrix top-k, ``global`` its ``--global_topk`` with the
    reference binarizer's per-matrix floor (``global_floor``; version 2, see the module docstring).
    """

    starts_from = "dense"

    def __init__(
        self,
        score_lr: float = 1e-2,
        initial_warmup: float = 0.1,
        final_warmup: float = 0.2,
        score_init: float = 0.0,
        global_floor: Annotated[
            float | None,
            "global scope: each matrix keeps at least int(global_floor * n) + 1 of its n weights "
            "(the reference's ThresholdBinarizer, 0.005); none: no floor",
        ] = FLOOR,
    ) -> None:
        if not 0.0 <= initial_warmup < 1.0 - final_warmup <= 1.0:
            raise ValueError("the warm-ups must leave part of the learning phase for the cubic ramp")
        if global_floor is not None and not 0.0 <= global_floor < 1.0:
            raise ValueError(f"global_floor is a fraction of each matrix in [0, 1), got {global_floor}")
        self.score_lr = score_lr
        self.initial_warmup = initial_warmup
        self.final_warmup = final_warmup
        self.score_init = score_init
        self.global_floor = global_floor

    def attach(
        self, model: nn.Module, weights: Weights, sparsity: float, scope: str, context: TrainingContext
    ) -> TrainingSession:
        return HardMovementSession(
            model,
            weights,
            sparsity,
            scope,
            global_floor=self.global_floor,
            score_init=self.score_init,
            score_lr=self.score_lr,
            reference_steps=None,
            initial_warmup=self.initial_warmup,
            final_warmup=self.final_warmup,
        )


@register("soft_movement", schedule="during_training", scopes=("learned",), paper=PAPER, version=3)
class SoftMovement(TrainingMethod):
    """Soft movement pruning: threshold sigmoid(scores) with an L1 penalty; learned allocation, then exact top-k.

    Defaults are the reference's SQuAD recipe (``--initial_threshold 0 --final_threshold 0.1 --final_lambda 400
    --regularization l1 --mask_scores_learning_rate 1e-2``, warm-ups 1 and 2 of 10 epochs), with the score lr scaled
    by ``reference_steps / steps`` (module docstring). The sparsity it reaches on its own is recorded
    (``method_sparsity``); the mask is then brought to the target by a global top-k of the scores above each layer's
    floor and fine-tuned for ``finetune_fraction`` of the budget with the mask fixed (the harness's rule,
    :meth:`~prunebench.methods.base.TrainingMethod.finetune_epochs`: rounded, none when the budget has a single
    epoch, so that the learning phase is never empty). Version 3: the share is rounded (version 2 rounded down).
    """

    starts_from = "dense"

    def __init__(
        self,
        score_lr: float = 1e-2,
        initial_warmup: float = 0.1,
        final_warmup: float = 0.2,
        score_init: float = 0.0,
        initial_threshold: float = 0.0,
        final_threshold: float = 0.1,
        final_lambda: float = 400.0,
        reference_steps: int | None = 5400,
        finetune_fraction: float = 1.0 / 3.0,
    ) -> None:
        if not 0.0 <= initial_warmup < 1.0 - final_warmup <= 1.0:
            raise ValueError("the warm-ups must leave part of the learning phase for the cubic ramp")
        if not 0.0 < final_threshold < 1.0:
            raise ValueError("final_threshold is a threshold on sigmoid(S), in (0, 1)")
        self.score_lr = score_lr
        self.initial_warmup = initial_warmup
        self.final_warmup = final_warmup
        self.score_init = score_init
        self.initial_threshold = initial_threshold
        self.final_threshold = final_threshold
        self.final_lambda = final_lambda
        self.reference_steps = reference_steps
        self.finetune_fraction = finetune_fraction

    def attach(
        self, model: nn.Module, weights: Weights, sparsity: float, scope: str, context: TrainingContext
    ) -> TrainingSession:
        return SoftMovementSession(
            model,
            weights,
            sparsity,
            initial_threshold=self.initial_threshold,
            final_threshold=self.final_threshold,
            final_lambda=self.final_lambda,
            score_init=self.score_init,
            score_lr=self.score_lr,
            reference_steps=self.reference_steps,
            initial_warmup=self.initial_warmup,
            final_warmup=self.final_warmup,
        )
