"""Schedules as plans: each schedule a method may declare turns a run into its ordered list of phases.

The one place that tells the schedules apart (:data:`PLANS`); nothing else branches on a schedule's name. The
phases are those of :mod:`prunebench.run.phases`:

* ``dense``: start from the seed's initial weights, train for the whole budget.
* ``at_init``: start, prune once (the criterion scores the initial weights), train sparse for the whole budget.
* ``after_training``: start from the shared dense pre-training (``epochs - finetune_epochs``, a cached job of the
  grid), prune once, fine-tune ``finetune_epochs`` with the mask fixed.
* ``gradual``: start, seed the training, train for the whole budget while the criterion prunes along the cubic
  schedule.
* ``iterative``: start, seed the training, rounds of train, prune, rewind; every round counts in the recorded
  budget, a multiple of the recipe's.
* ``during_training``: start (from initialization, or from the dense pre-training for a method that declares
  ``starts_from = "dense"``, which then spends the pre-training's epochs of the budget on it), seed the training,
  learn the mask to the exact target, fine-tune with the mask fixed for the epochs the method reserves.
* ``one_shot``: start from the shared dense pre-training, prune it once from calibration data
  (:mod:`prunebench.run.one_shot`), fine-tune ``finetune_epochs`` with the mask fixed only when the schedule's
  ``finetune`` asks (the post-training papers' setting is none).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prunebench.methods.base import TrainingMethod
from prunebench.run.criterion_schedules import OneShot
from prunebench.run.phases import (
    LearnMask,
    Phase,
    PruneGradually,
    PruneIteratively,
    PruneOnce,
    PruneOneShot,
    SeedTraining,
    StartFromDense,
    StartFromInit,
    Train,
)
from prunebench.run.recipe import Recipe
from prunebench.run.run_config import RunConfig


def _dense(recipe: Recipe, method: Any, options: Any) -> list[Phase]:
    return [StartFromInit(), Train("train", recipe.optim, recipe.epochs, "dense")]


def _at_init(recipe: Recipe, method: Any, options: Any) -> list[Phase]:
    return [StartFromInit(), PruneOnce(method), Train("train", recipe.optim, recipe.epochs, "sparse")]


def _after_training(recipe: Recipe, method: Any, options: Any) -> list[Phase]:
    finetune = Train("finetune", recipe.finetune_optim, recipe.finetune_epochs, "finetune")
    return [StartFromDense(), PruneOnce(method), finetune]


def _gradual(recipe: Recipe, method: Any, options: Any) -> list[Phase]:
    return [StartFromInit(), SeedTraining(), PruneGradually(method, recipe.epochs)]


def _iterative(recipe: Recipe, method: Any, options: Any) -> list[Phase]:
    return [StartFromInit(), SeedTraining(), PruneIteratively(method, recipe.epochs)]


def _during_training(recipe: Recipe, method: TrainingMethod, options: Any) -> list[Phase]:
    if method.starts_from == "dense":
        start, available, optim = StartFromDense(), recipe.finetune_epochs, recipe.finetune_optim
    else:
        start, available, optim = StartFromInit(), recipe.epochs, recipe.optim
    finetune = method.finetune_epochs(available)
    return [
        start,
        SeedTraining(),
        LearnMask(method, optim, available - finetune),
        Train("finetune", method.finetune_optim(recipe), finetune, "finetune"),
    ]


def _one_shot(recipe: Recipe, method: Any, options: OneShot) -> list[Phase]:
    epochs = recipe.finetune_epochs if options.finetune else 0
    finetune = Train("finetune", recipe.finetune_optim, epochs, "finetune")
    return [StartFromDense(), PruneOneShot(method), finetune]


@dataclass(frozen=True)
class Plan:
    """How a schedule plans a run (``phases(recipe, method, options)``, ``options`` the schedule's hyperparameters or
    ``None``), and whether the run starts from the shared dense pre-training (``starts_from_dense(spec)``, asked of
    the registered spec without building the method)."""

    phases: Callable[[Recipe, Any, Any], list[Phase]]
    starts_from_dense: Callable[[Any], bool] = lambda spec: False


PLANS: dict[str, Plan] = {
    "dense": Plan(_dense),
    "at_init": Plan(_at_init),
    "after_training": Plan(_after_training, lambda spec: True),
    "gradual": Plan(_gradual),
    "iterative": Plan(_iterative),
    "during_training": Plan(
        _during_training, lambda spec: getattr(spec.cls, "starts_from", "init") == "dense"
    ),
    "one_shot": Plan(_one_shot, lambda spec: True),
}
"""Every schedule a method may declare (:data:`prunebench.run.criterion_schedules.SCHEDULES`), as its plan."""


def plan_of(config: RunConfig, method: Any) -> list[Phase]:
    """The phases of ``config``'s run, for its built ``method``."""
    options = config.spec.schedule_options(config.hparams)
    return PLANS[config.spec.schedule].phases(config.recipe, method, options)


def needs_dense_pretraining(config: RunConfig) -> bool:
    """Whether the run starts from the shared dense pre-training (after-training methods, movement pruning): its
    schedule's plan says; never for a pretrained model, whose given weights are the dense model."""
    from prunebench.zoo.model_zoo import model_is_pretrained

    spec = config.spec
    return PLANS[spec.schedule].starts_from_dense(spec) and not model_is_pretrained(config.model)
