"""An allocation control's run as phases: its source's starting point, the source's saved mask (shuffled, or on
re-drawn weights), then the source's training after that point (see :mod:`prunebench.run.allocation_controls`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from prunebench.core.errors import UsageError
from prunebench.datasets import DataLoaders
from prunebench.methods.base import Masks
from prunebench.pruning.saved_masks import read_mask
from prunebench.run.allocation_controls import (
    ControlError,
    control_point,
    derived_seed,
    source_config,
    source_run_id,
)
from prunebench.run.phases import (
    ApplyMasks,
    Call,
    Phase,
    RunState,
    SeedTraining,
    StartFromDense,
    StartFromInit,
    Train,
    epochs_of,
)
from prunebench.run.run_config import RunConfig
from prunebench.run.run_context import RunContext, initial_model
from prunebench.run.run_record import read_record


def shuffle_masks(masks: Masks, generator: torch.Generator) -> Masks:
    """Each layer's mask with exactly as many kept weights, at positions drawn uniformly without replacement."""
    shuffled = {}
    for name, mask in masks.items():
        kept = int(mask.sum())
        flat = torch.zeros(mask.numel(), dtype=torch.bool)
        flat[torch.randperm(mask.numel(), generator=generator)[:kept]] = True
        shuffled[name] = flat.view(mask.shape).to(mask.device)
    return shuffled


def source_masks(config: RunConfig, results_dir: Path, device: torch.device) -> Masks:
    """The saved final mask of ``config``'s source, or a :class:`ControlError` saying in one line why there is none."""
    source = source_config(config)
    what = f"source run {source.run_id} ({source.label})"
    record, reason = read_record(Path(results_dir) / "runs" / f"{source.run_id}.json", source.run_id)
    if record is None:
        said = f"has no usable record ({reason})" if reason else "has not run yet"
        raise ControlError(f"{what} {said}; a control runs after its source")
    if record["status"] != "ok":
        error = " ".join(str(record.get("error") or "").split())
        error = error if len(error) <= 160 else error[:157] + "..."
        raise ControlError(f"{what} {record['status']}" + (f": {error}" if error else ""))
    try:
        saved = read_mask(results_dir, source.run_id)
    except UsageError as error:
        raise ControlError(f"{what}: {error}; rerun it with --force to save its mask") from None
    return {name: torch.from_numpy(mask.copy()).to(device) for name, mask in saved.items()}


def control_plan(ctx: RunContext, loaders: DataLoaders) -> list[Phase]:
    """The phases of the control ``ctx.config`` (see the module docstring): the source's starting point, the source's
    saved mask (shuffled, or on re-drawn weights), the source's training after it.

    The results directory is the cache directory's parent, where the source's record and mask lie.
    """
    config, device, recipe = ctx.config, ctx.device, ctx.config.recipe
    masks = source_masks(config, ctx.cache_dir.parent, device)
    if config.control == "shuffle":
        masks = shuffle_masks(masks, torch.Generator().manual_seed(derived_seed("shuffle", config.seed)))
    point = control_point(config.spec)
    steps_per_epoch = len(loaders.train)
    optim, epochs, start, name = recipe.optim, recipe.epochs, 0, "train"
    plan: list[Phase] = [StartFromInit()]
    spent: dict[str, int | float] = {"sparse": recipe.epochs}
    if point == "dense pre-training":
        plan = [StartFromDense()]
        optim, epochs, name = recipe.finetune_optim, recipe.finetune_epochs, "finetune"
        spent = {"dense": recipe.pretrain_epochs, "finetune": recipe.finetune_epochs}
    elif point == "rewind point":
        start = round(config.spec.schedule_options(config.hparams).rewind * steps_per_epoch * recipe.epochs)
        if start > 0:
            plan += [SeedTraining(), Train("to rewind point", optim, epochs, None, stop=start)]
            sparse = steps_per_epoch * recipe.epochs - start
            spent = {"dense": epochs_of(start, steps_per_epoch), "sparse": epochs_of(sparse, steps_per_epoch)}
    if config.control == "reinit":
        fresh = dataclasses.replace(config, seed=derived_seed("reinit", config.seed))
        plan.append(
            Call(
                "re-initialize",
                lambda state: state.model.load_state_dict(initial_model(fresh, device).state_dict()),
            )
        )
    details = {"control": config.control, "source_run_id": source_run_id(config), "applied_at": point}

    def record(state: RunState) -> None:
        state.epochs, state.details = {"budget": recipe.epochs, **spent}, details

    return [
        *plan,
        ApplyMasks(masks),
        SeedTraining(),
        Train(name, optim, epochs, None, start=start),
        Call("record", record),
    ]
