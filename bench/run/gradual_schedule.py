"""The gradual schedule: a criterion prunes along Zhu & Gupta's cubic schedule while the weights train.

Zhu & Gupta 2017, "To prune, or not to prune: exploring the efficacy of pruning for model compression", as in
``tensorflow/contrib/model_pruning`` and its uses in google-research ``state_of_sparsity`` and ``rigl``
(``cifar_resnet/resnet_train_eval.py``: ``training_method='prune'``). Magnitude under this schedule is ``gmp``; any
criterion that declares ``gradual`` runs the same way.

Training starts from the seed's initial weights. Every ``dt`` steps between the start ``t0`` and the end ``t0 + n dt``
of the pruning window, the criterion scores the live weights and the lowest-scoring ones are pruned so that the
sparsity follows (paper, Eq. 1)

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n dt))**3,

here written for the kept fraction (``cubic_keep_fraction``). Between pruning steps the mask is fixed and re-applied in
place after every optimizer step (the ``MaskEnforcer`` multiply), so pruned weights stay exactly zero; after the window
the final mask is fixed for the rest of training.

Defaults (:class:`~prunebench.run.criterion_schedules.Gradual`), scaled to the budget as fractions of training: the window runs from
20% to 80% (the RigL CIFAR-10 runs prune from step 20k to 75k of 97.6k, STR's GMP baseline over epochs 20-79 of 100)
and the mask is recomputed every 1% of training (RigL's ``pruning_frequency`` 1000 of 97.6k steps), about 60 pruning
steps. ``s_i = 0``.

Deviations from the reference:

* Exact counts: each pruning step keeps exactly the scheduled number of weights, allocated by the scope
  (``prunebench.pruning.allocation``): ``uniform`` is the reference's per-layer pruning, ``global`` one threshold over all
  layers, ``erk`` the RigL ERK densities at the scheduled sparsity. The last pruning step is at exactly the target.
* ``model_pruning`` multiplies a mask in the forward pass and keeps the pruned values, which could in principle be
  selected again; here pruned weights are set to zero and score below every live weight, so the masks only shrink.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from prunebench.methods.base import Masks
from prunebench.methods.sparsity_schedules import cubic_keep_fraction
from prunebench.pruning.mask_application import MaskEnforcer, apply_masks
from prunebench.run.criterion_schedules import Gradual
from prunebench.run.trainer import Trainer, TrainHook

Pruner = Callable[[float, Masks | None], Masks]
"""``(sparsity, alive) -> masks``: the criterion's masks of the live model at ``sparsity``, within ``alive``."""


class GradualPruning(TrainHook):
    """Prunes with ``prune`` every ``interval`` steps along the cubic schedule; keeps the masks in place in between."""

    def __init__(self, model: nn.Module, sparsity: float, schedule: Gradual, prune: Pruner) -> None:
        self.model = model
        self.sparsity = sparsity
        self.schedule = schedule
        self.pruner = prune
        self.total_steps = 1
        self.start_step = 0
        self.end_step = 1
        self.interval = 1
        self.current_sparsity = 0.0
        self.reached_target = False
        self.pruning_steps: list[int] = []
        self.masks: Masks | None = None
        self._enforcer: MaskEnforcer | None = None

    def keep_fraction(self, step: int) -> float:
        """Scheduled kept fraction after ``step`` optimizer steps (Zhu & Gupta, Eq. 1)."""
        s = self.schedule
        return cubic_keep_fraction(
            step / self.total_steps,
            1.0 - self.sparsity,
            s.start,
            s.end,
            initial_keep=1.0 - s.initial_sparsity,
        )

    def is_pruning_step(self, step: int) -> bool:
        """Whether the mask is recomputed after ``step`` optimizer steps: ``t0, t0 + dt, ...`` and the window's end."""
        if step < self.start_step or self.reached_target:
            return False
        return step >= self.end_step or (step - self.start_step) % self.interval == 0

    def prune(self, sparsity: float, step: int) -> None:
        """Keep the criterion's highest-scoring live weights at ``sparsity``, zero the rest in place."""
        self.masks = self.pruner(sparsity, self.masks)
        apply_masks(self.model, self.masks)
        self._enforcer = MaskEnforcer(self.model, self.masks)
        self.current_sparsity = sparsity
        self.pruning_steps.append(step)

    def on_train_start(self, trainer: Trainer) -> None:
        s = self.schedule
        self.total_steps = max(trainer.total_steps, 1)
        self.start_step = round(s.start * self.total_steps)
        self.end_step = max(round(s.end * self.total_steps), self.start_step + 1)
        self.interval = max(1, round(s.frequency * self.total_steps))
        self.maybe_prune(0)

    def maybe_prune(self, step: int) -> None:
        """Prune after ``step`` optimizer steps if it is a pruning step (at exactly the target at the window's end)."""
        if not self.is_pruning_step(step):
            return
        if step >= self.end_step:
            self.prune(self.sparsity, step)
            self.reached_target = True
            return
        target = 1.0 - self.keep_fraction(step)
        if target > self.current_sparsity:
            self.prune(target, step)

    def after_step(self, trainer: Trainer) -> None:
        if self._enforcer is not None:
            self._enforcer.after_step(trainer)
        self.maybe_prune(trainer.step)

    def stacked_masks(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Between its pruning steps the pruner only keeps its masks (none before the first)."""
        return [] if self._enforcer is None else self._enforcer.stacked_masks()

    def acts_after_step(self, step: int) -> bool:
        """It prunes after the steps :meth:`is_pruning_step` names."""
        return self.is_pruning_step(step)

    def curve_values(self, trainer: Trainer) -> dict[str, float]:
        """For the curves: the target sparsity the masks hold now."""
        return {"target_sparsity": self.current_sparsity}

    def state_dict(self) -> dict[str, Any]:
        """The masks and the schedule's position (the window itself is recomputed by ``on_train_start``)."""
        return {
            "masks": self.masks,
            "current_sparsity": self.current_sparsity,
            "reached_target": self.reached_target,
            "pruning_steps": list(self.pruning_steps),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.masks = state["masks"]
        self.current_sparsity = state["current_sparsity"]
        self.reached_target = state["reached_target"]
        self.pruning_steps = list(state["pruning_steps"])
        self._enforcer = None if self.masks is None else MaskEnforcer(self.model, self.masks)

    def finish(self, step: int) -> Masks:
        """The final masks, at exactly the target (pruned now if training ended before the window did)."""
        if not self.reached_target:
            self.prune(self.sparsity, step)
        assert self.masks is not None
        return self.masks

    def details(self) -> dict[str, Any]:
        """For the record: how many times the criterion pruned, and at which steps it started and stopped."""
        return {
            "pruning_steps": len(self.pruning_steps),
            "first_step": self.pruning_steps[0],
            "last_step": self.pruning_steps[-1],
            "total_steps": self.total_steps,
        }
