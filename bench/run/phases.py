"""Phases: the steps a schedule plans for one run (start, prune, train, learn the mask, ...), and the loop that runs them.

A schedule (:mod:`prunebench.run.schedule_plans`) turns a run into an ordered list of phases; :func:`run_plan` runs
them one after the other on a :class:`RunState` they hand on (the model, its masks, the epochs spent, what the method
did). Each phase has a name and the epochs it trains, and trains through :meth:`RunContext.fit
<prunebench.run.run_context.RunContext.fit>`, which checkpoints within and between phases under the phase's name and
reports every epoch; a phase that a resumed run completed before is skipped there. The allocation controls
(:mod:`prunebench.run.allocation_controls`) plan their runs from the same phases.

The random streams are the harness's contract: a run's initial weights come from its seed, and its training stream
from ``seed + 1`` (:class:`SeedTraining`), reseeded at the points every schedule has always reseeded it, so that a
refactoring of the plans changes no number.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prunebench.datasets import DataLoaders, get_dataset
from prunebench.methods.base import (
    FinalMasks,
    Masks,
    OneShotMethod,
    ScoringData,
    ScoringMethod,
    TrainingContext,
    TrainingMethod,
)
from prunebench.pruning.mask_application import MaskEnforcer, apply_masks
from prunebench.run.gradual_schedule import GradualPruning
from prunebench.run.iterative_schedule import prune_iteratively
from prunebench.run.one_shot import calibration_set, one_shot
from prunebench.run.recipe import OptimConfig
from prunebench.run.run_context import RunContext, run_prunable


def epochs_of(steps: int, steps_per_epoch: int) -> int | float:
    """``steps`` in epochs: a whole number when it is one, else rounded to 4 decimals."""
    whole, rest = divmod(steps, max(steps_per_epoch, 1))
    return whole if rest == 0 else round(steps / steps_per_epoch, 4)


@dataclass
class Outcome:
    """What a run's phases leave for the record: the final model and what the run spent and did."""

    model: nn.Module
    train_loss: float
    """Mean training loss of the last epoch (of the last phase)."""
    epochs: dict[str, int | float]
    method_sparsity: float | None = None
    enforcement: str | None = None
    details: dict[str, Any] | None = None


@dataclass
class RunState:
    """What the phases of one run hand on to each other; :meth:`outcome` is what is left at the end."""

    loaders: DataLoaders
    data: ScoringData
    epochs: dict[str, int | float]
    """The epochs spent, by phase (``budget``: the recipe's, unless a phase spends a multiple of it)."""
    model: nn.Module | None = None
    masks: Masks | None = None
    train_loss: float = float("nan")
    final: FinalMasks | None = None
    details: dict[str, Any] | None = None

    def outcome(self) -> Outcome:
        assert self.model is not None, "a plan must start the model"
        final = self.final
        return Outcome(
            self.model,
            self.train_loss,
            self.epochs,
            final.method_sparsity if final else None,
            final.enforcement if final else None,
            final.details if final else self.details,
        )


class Phase:
    """One step of a run's plan: ``name`` (the checkpoint's and the progress's name for it), ``epochs`` it trains."""

    name: str
    epochs: int

    def run(self, ctx: RunContext, state: RunState) -> None:
        raise NotImplementedError


def run_plan(ctx: RunContext, plan: Sequence[Phase], loaders: DataLoaders, data: ScoringData) -> Outcome:
    """Run the phases of ``plan`` in order on a fresh :class:`RunState`; return its :class:`Outcome`."""
    state = RunState(loaders, data, {"budget": ctx.config.recipe.epochs})
    for phase in plan:
        phase.run(ctx, state)
    return state.outcome()


@dataclass(frozen=True)
class Criterion:
    """A scoring criterion at work in one run: its masks of a model, once or as the model trains."""

    ctx: RunContext
    method: ScoringMethod
    data: ScoringData

    def masks(self, model: nn.Module) -> Masks:
        """The masks of ``model`` at the target, scored once on a copy (kept in the checkpoint)."""
        config = self.ctx.config

        def score() -> Masks:
            scratch = copy.deepcopy(model)
            torch.manual_seed(config.seed + 1)
            return self.method.masks(
                scratch,
                run_prunable(config, scratch),
                config.sparsity,
                config.scope,
                self.data,
                **_group(config),
            )

        return self.ctx.memo("masks", score)

    def live_masks(self, model: nn.Module, sparsity: float, alive: Masks | None) -> Masks:
        """The masks of ``model`` as it trains (:func:`live_masks`)."""
        config = self.ctx.config
        prunable = functools.partial(run_prunable, config)
        group = _group(config)
        return live_masks(
            self.method, model, prunable, sparsity, alive, config.scope, self.data, config.seed, **group
        )


def live_masks(
    method: ScoringMethod,
    model: nn.Module,
    prunable: Callable[[nn.Module], dict[str, nn.Parameter]],
    sparsity: float,
    alive: Masks | None,
    scope: str,
    data: ScoringData,
    seed: int,
    **group: str,
) -> Masks:
    """The criterion's masks of ``model`` as it trains, at ``sparsity`` within ``alive``: scored on a copy (whose
    prunable weights ``prunable`` gives) with a random stream of their own, seeded ``seed + 1``, which leaves the
    training's stream as it was. The harness's gradual runs and :func:`prunebench.sparsify` both prune with it."""
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        scratch = copy.deepcopy(model)
        torch.manual_seed(seed + 1)
        return method.masks(scratch, prunable(scratch), sparsity, scope, data, alive=alive, **group)


def _group(config) -> dict[str, str]:
    """The comparison group as a keyword of :meth:`ScoringMethod.masks`, only when it is not ``per_layer`` (a
    criterion that makes its own masks, SynFlow, takes no group and never runs in another)."""
    return {"group": config.group} if config.group != "per_layer" else {}


# Starting points -----------------------------------------------------------------------------------------------
class StartFromInit(Phase):
    """The seed's initial weights, identical for every method."""

    name = "initialize"
    epochs = 0

    def run(self, ctx: RunContext, state: RunState) -> None:
        state.model = ctx.initial_model()


class StartFromDense(Phase):
    """The shared dense pre-training of the run's data, model, seed and recipe (a job of the grid of its own,
    cached; trained here only when no runner has cached it yet)."""

    name = "pretrain"
    epochs = 0

    def run(self, ctx: RunContext, state: RunState) -> None:
        state.model = ctx.dense_pretrained(state.loaders)
        state.epochs["dense"] = 0 if ctx.pretrained else ctx.config.recipe.pretrain_epochs


class SeedTraining(Phase):
    """Seed the training's random stream (``seed + 1``), as every pruned run does before it trains."""

    name = "seed the training"
    epochs = 0

    def run(self, ctx: RunContext, state: RunState) -> None:
        torch.manual_seed(ctx.config.seed + 1)


# Pruning -------------------------------------------------------------------------------------------------------
@dataclass
class PruneOnce(Phase):
    """Score the model once with the criterion and apply the masks at the target (kept in the checkpoint)."""

    method: ScoringMethod
    name: str = "prune"
    epochs = 0

    def run(self, ctx: RunContext, state: RunState) -> None:
        state.masks = Criterion(ctx, self.method, state.data).masks(state.model)
        apply_masks(state.model, state.masks)


@dataclass
class PruneOneShot(Phase):
    """Prune the model once from the schedule's calibration set (:mod:`prunebench.run.one_shot`): a one-shot method
    layer by layer, a criterion from its scores. The masks, the weights a method reconstructed and what it did are kept
    in the checkpoint; the random stream is seeded as :class:`PruneOnce` seeds it (``seed + 1``, before scoring)."""

    method: OneShotMethod | ScoringMethod
    name: str = "prune"
    epochs = 0

    def run(self, ctx: RunContext, state: RunState) -> None:
        config = ctx.config

        def prune() -> dict[str, Any]:
            scratch = copy.deepcopy(state.model)
            torch.manual_seed(config.seed + 1)
            calibration = config.spec.schedule_options(config.hparams).calibration
            batches = calibration_set(state.loaders.train, calibration)
            weights = run_prunable(config, scratch)
            method, group = self.method, config.group
            done = one_shot(scratch, weights, method, config.sparsity, config.scope, group, batches)
            return {"masks": done.masks, "weights": done.weights, "details": done.details}

        pruned = ctx.memo("one_shot", prune)
        with torch.no_grad():
            parameters = dict(state.model.named_parameters())
            for name, value in pruned["weights"].items():
                parameters[name].copy_(value)
        apply_masks(state.model, pruned["masks"])
        state.masks, state.details = pruned["masks"], pruned["details"]


@dataclass
class ApplyMasks(Phase):
    """Apply masks given by the plan (an allocation control's source mask)."""

    masks: Masks
    name: str = "apply masks"
    epochs = 0

    def run(self, ctx: RunContext, state: RunState) -> None:
        state.masks = self.masks
        apply_masks(state.model, self.masks)


# Training ------------------------------------------------------------------------------------------------------
@dataclass
class Train(Phase):
    """Train ``epochs`` epochs with ``optim``, the masks fixed if the state has any; recorded as ``spent`` (``None``:
    the plan records what it spent itself).

    ``start``/``stop`` train only those optimizer steps of the ``epochs``-long schedule (a rewind point)."""

    name: str
    optim: OptimConfig
    epochs: int
    spent: str | None
    start: int = 0
    stop: int | None = None

    def run(self, ctx: RunContext, state: RunState) -> None:
        if self.spent is not None:
            state.epochs[self.spent] = self.epochs
        if self.epochs == 0:
            return
        hooks = [MaskEnforcer(state.model, state.masks)] if state.masks is not None else []
        loader = state.loaders.train
        trainer = ctx.fit(
            state.model, loader, self.optim, self.epochs, self.name, hooks, start=self.start, stop=self.stop
        )
        state.train_loss = trainer.last_loss


@dataclass
class PruneGradually(Phase):
    """Train from the current weights for the whole budget while the criterion prunes along the cubic schedule
    (:mod:`prunebench.run.gradual_schedule`)."""

    method: ScoringMethod
    epochs: int
    name: str = "train"

    def run(self, ctx: RunContext, state: RunState) -> None:
        config = ctx.config
        criterion = Criterion(ctx, self.method, state.data)
        pruning = GradualPruning(
            state.model,
            config.sparsity,
            config.spec.schedule_options(config.hparams),
            functools.partial(criterion.live_masks, state.model),
        )
        trainer = ctx.fit(
            state.model, state.loaders.train, config.recipe.optim, self.epochs, self.name, [pruning]
        )
        apply_masks(state.model, pruning.finish(trainer.step))
        state.epochs["gradual"] = self.epochs
        state.train_loss, state.details = trainer.last_loss, pruning.details()


@dataclass
class PruneIteratively(Phase):
    """Rounds of train, prune, rewind (:mod:`prunebench.run.iterative_schedule`); every round counts in the
    recorded budget, a multiple of the recipe's."""

    method: ScoringMethod
    epochs: int
    name: str = "rounds"

    def run(self, ctx: RunContext, state: RunState) -> None:
        config, model, loader = ctx.config, state.model, state.loaders.train

        def train(start: int, stop: int, hooks: list, phase: str):
            return ctx.fit(
                model, loader, config.recipe.optim, self.epochs, phase, hooks, start=start, stop=stop
            )

        steps_per_epoch = len(loader)
        result = prune_iteratively(
            model,
            config.sparsity,
            config.spec.schedule_options(config.hparams),
            steps_per_epoch * self.epochs,
            train,
            functools.partial(Criterion(ctx, self.method, state.data).live_masks, model),
            ctx.checkpoint,
        )
        apply_masks(model, result.masks)
        state.epochs.update(
            budget=epochs_of(result.steps, steps_per_epoch),
            dense=self.epochs,
            retrain=epochs_of(result.retrain_steps, steps_per_epoch),
        )
        state.train_loss, state.details = result.train_loss, result.details


@dataclass
class LearnMask(Phase):
    """A during-training method's session shapes the mask while the weights train for ``epochs``, then ends at the
    exact target (kept in the checkpoint, so a run resumed after this phase does not learn again)."""

    method: TrainingMethod
    optim: OptimConfig
    epochs: int
    name: str = "learn"

    def run(self, ctx: RunContext, state: RunState) -> None:
        config, checkpoint, model = ctx.config, ctx.checkpoint, state.model
        context = TrainingContext(
            epochs=self.epochs,
            steps_per_epoch=len(state.loaders.train),
            device=ctx.device,
            seed=config.seed,
            num_classes=get_dataset(config.dataset).num_classes,
            train_data=state.data,
        )
        session = self.method.attach(
            model, run_prunable(config, model), config.sparsity, config.scope, context
        )
        trainer = ctx.fit(
            model,
            state.loaders.train,
            self.optim,
            self.epochs,
            self.name,
            [session],
        )
        if checkpoint is not None and checkpoint.has("final"):  # resumed after the learning phase
            session.release()
            final = FinalMasks(**checkpoint.values["final"])
        else:
            final = session.finish(trainer)
            if checkpoint is not None:
                checkpoint.values["final"] = vars(final)
        apply_masks(model, final.masks)
        state.masks, state.final, state.train_loss = final.masks, final, trainer.last_loss
        state.epochs["learn"] = self.epochs


@dataclass
class Call(Phase):
    """A step of the plan that trains nothing, given as a function of the state (an allocation control's
    re-initialization of the weights)."""

    name: str
    action: Callable[[RunState], None] = field(repr=False)
    epochs = 0

    def run(self, ctx: RunContext, state: RunState) -> None:
        self.action(state)
