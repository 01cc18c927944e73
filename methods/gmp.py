"""Gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune: exploring the efficacy of pruning for model
compression"), as in ``tensorflow/contrib/model_pruning`` and its uses in google-research ``state_of_sparsity`` and
``rigl`` (``cifar_resnet/resnet_train_eval.py``: ``training_method='prune'``).

Training starts from the seed's initial weights. Every ``dt`` steps between the start ``t0`` and the end ``t0 + n dt``
of the pruning window, the smallest-magnitude weights are pruned so that the sparsity follows (paper, Eq. 1)

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n dt))**3,

here written for the kept fraction (``cubic_keep_fraction``). Between pruning steps the mask is fixed and re-applied in
place after every optimizer step (the ``MaskEnforcer`` multiply), so pruned weights stay exactly zero; after the window
the final mask is fixed for the rest of the phase.

Defaults, scaled to the budget as fractions of training: the window runs from 20% to 80% (the RigL CIFAR-10 runs prune
from step 20k to 75k of 97.6k, STR's GMP baseline over epochs 20-79 of 100) and the mask is recomputed every 1% of
training (RigL's ``pruning_frequency`` 1000 of 97.6k steps), about 60 pruning steps. ``s_i = 0``.

Deviations from the reference:

* Exact counts: each pruning step keeps exactly the scheduled number of weights, allocated by the scope
  (``prunebench.allocation``): ``uniform`` is the reference's per-layer pruning, ``global`` one threshold over all
  layers, ``erk`` the RigL ERK densities at the scheduled sparsity. The last pruning step is at exactly the target.
* ``model_pruning`` multiplies a mask in the forward pass and keeps the pruned values, which could in principle be
  selected again; here pruned weights are set to zero, so the masks only shrink.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from prunebench.allocation import masks_from_scores
from prunebench.masks import MaskEnforcer, apply_masks
from prunebench.methods.base import (
    FinalMasks,
    Masks,
    TrainingContext,
    TrainingMethod,
    TrainingSession,
    Weights,
)
from prunebench.methods.registry import register
from prunebench.methods.schedules import cubic_keep_fraction

if TYPE_CHECKING:
    from prunebench.trainer import Trainer


class GradualMagnitudeSession(TrainingSession):
    """Prunes by magnitude every ``interval`` steps along the cubic schedule; keeps the masks in place in between."""

    def __init__(
        self,
        model: nn.Module,
        weights: Weights,
        sparsity: float,
        scope: str,
        *,
        start: float,
        end: float,
        frequency: float,
        initial_sparsity: float,
    ) -> None:
        self.model = model
        self.weights = weights
        self.sparsity = sparsity
        self.scope = scope
        self.start = start
        self.end = end
        self.frequency = frequency
        self.initial_sparsity = initial_sparsity
        self.total_steps = 1
        self.start_step = 0
        self.end_step = 1
        self.interval = 1
        self.current_sparsity = 0.0
        self.reached_target = False
        self.masks: Masks = {}
        self._enforcer: MaskEnforcer | None = None

    def keep_fraction(self, step: int) -> float:
        """Scheduled kept fraction after ``step`` optimizer steps (Zhu & Gupta, Eq. 1)."""
        progress = step / self.total_steps
        return cubic_keep_fraction(
            progress, 1.0 - self.sparsity, self.start, self.end, initial_keep=1.0 - self.initial_sparsity
        )

    def is_pruning_step(self, step: int) -> bool:
        """Whether the mask is recomputed after ``step`` optimizer steps: ``t0, t0 + dt, ...`` and the window's end."""
        if step < self.start_step or self.reached_target:
            return False
        return step >= self.end_step or (step - self.start_step) % self.interval == 0

    @torch.no_grad()
    def prune(self, sparsity: float) -> None:
        """Keep the largest |w| at ``sparsity`` (pruned weights are already zero), zero the rest in place."""
        self.masks = masks_from_scores(
            {n: w.detach().abs() for n, w in self.weights.items()}, sparsity, self.scope
        )
        apply_masks(self.model, self.masks)
        self._enforcer = MaskEnforcer(self.model, self.masks)
        self.current_sparsity = sparsity

    def on_train_start(self, trainer: Trainer) -> None:
        self.total_steps = max(trainer.total_steps, 1)
        self.start_step = round(self.start * self.total_steps)
        self.end_step = max(round(self.end * self.total_steps), self.start_step + 1)
        self.interval = max(1, round(self.frequency * self.total_steps))
        self.maybe_prune(0)

    def maybe_prune(self, step: int) -> None:
        """Prune after ``step`` optimizer steps if it is a pruning step (at exactly the target at the window's end)."""
        if not self.is_pruning_step(step):
            return
        if step >= self.end_step:
            self.prune(self.sparsity)
            self.reached_target = True
            return
        target = 1.0 - self.keep_fraction(step)
        if target > self.current_sparsity:
            self.prune(target)

    def after_step(self, trainer: Trainer) -> None:
        if self._enforcer is not None:
            self._enforcer.after_step(trainer)
        self.maybe_prune(trainer.step)

    def finish(self, trainer: Trainer) -> FinalMasks:
        if not self.reached_target:
            self.prune(self.sparsity)
        return FinalMasks(masks=self.masks, method_sparsity=self.sparsity)


@register(
    "gmp",
    schedule="during_training",
    scopes=("global", "uniform", "erk"),
    paper="Zhu & Gupta 2017, 'To prune, or not to prune: exploring the efficacy of pruning for model compression'",
)
class GradualMagnitude(TrainingMethod):
    """Gradual magnitude pruning: prune the smallest |w| every few steps along a cubic schedule while training.

    ``start``/``end``: the pruning window as fractions of training; ``frequency``: the fraction of training between
    pruning steps; ``initial_sparsity``: ``s_i`` of the schedule.
    """

    def __init__(
        self, start: float = 0.2, end: float = 0.8, frequency: float = 0.01, initial_sparsity: float = 0.0
    ) -> None:
        if not 0.0 <= start < end <= 1.0:
            raise ValueError(f"the pruning window must satisfy 0 <= start < end <= 1, got {start}, {end}")
        if not 0.0 < frequency <= 1.0:
            raise ValueError(f"frequency is a fraction of training in (0, 1], got {frequency}")
        self.start = start
        self.end = end
        self.frequency = frequency
        self.initial_sparsity = initial_sparsity

    def attach(
        self, model: nn.Module, weights: Weights, sparsity: float, scope: str, context: TrainingContext
    ) -> TrainingSession:
        return GradualMagnitudeSession(
            model,
            weights,
            sparsity,
            scope,
            start=self.start,
            end=self.end,
            frequency=self.frequency,
            initial_sparsity=self.initial_sparsity,
        )
