"""Running one configuration end to end, and a grid of them with resume.

A run is a pure function of its :class:`~prunebench.run.run_config.RunConfig`: the seed fixes the initial weights, the data
order and the augmentation, identically for every method. What happens between initialization and the final
evaluation depends on the method's schedule:

* ``dense``: train for the whole budget.
* ``at_init``: score the initial weights, fix the mask, train sparse for the whole budget.
* ``after_training``: start from the shared dense pre-training (``epochs - finetune_epochs``, cached per dataset,
  model, seed and recipe), prune once, fine-tune ``finetune_epochs`` with the mask fixed.
* ``gradual``: train from initialization for the whole budget while the criterion prunes along the cubic schedule
  (:mod:`prunebench.run.gradual_schedule`).
* ``iterative``: rounds of train, prune, rewind (:mod:`prunebench.run.iterative_schedule`); every round counts in the recorded
  budget, a multiple of the recipe's.
* ``during_training``: the method's session shapes the mask while the weights train; it ends at the exact target,
  then the model fine-tunes with the mask fixed for the epochs the method reserves. Methods that start from the dense
  model (movement pruning) spend the pre-training epochs of the budget on it, as after-training methods do.

The final model is evaluated once, on held-out data, at the end. Nothing is selected on the test set.
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunebench.core.atomic_files import atomic_save_tensors, atomic_write_text
from prunebench.core.environment import describe_device, library_versions
from prunebench.core.errors import UsageError, grid_stopped, is_disk_full
from prunebench.datasets import DataLoaders, LoaderRequest, get_dataset
from prunebench.grid.result_store import ResultStore
from prunebench.grid.scheduler import RunnerSettings
from prunebench.grid.source_fingerprint import source_fingerprints
from prunebench.methods.base import (
    FinalMasks,
    Masks,
    ScoringData,
    ScoringMethod,
    TrainingContext,
    TrainingMethod,
)
from prunebench.pruning.accounting import account
from prunebench.pruning.allocation import keep_budget
from prunebench.pruning.mask_application import MaskEnforcer, apply_masks
from prunebench.pruning.prunable import prunable_weights
from prunebench.pruning.saved_masks import MASK_KEY, pack
from prunebench.run.allocation_controls import phases
from prunebench.run.gradual_schedule import GradualPruning
from prunebench.run.iterative_schedule import prune_iteratively
from prunebench.run.run_checkpoint import RunCheckpoint, SkippedPhase
from prunebench.run.run_config import RunConfig, dense_pretrain_key
from prunebench.run.run_record import RECORD_VERSION, RunRecord
from prunebench.run.trainer import Diverged, Trainer, evaluate
from prunebench.zoo.model_zoo import build_model

EpochCallback = Callable[[str, int, int, float], None]
"""``(phase, epoch, epochs, loss)``: reported after each training epoch."""


class TargetMissed(RuntimeError):
    """A finished run whose achieved sparsity is not its target: a method broke the exact-sparsity contract."""


@dataclass(frozen=True)
class RunOptions:
    """How runs execute, not what they compute: none of this enters a run's id.

    ``loader`` (``auto``, ``ffcv``, ``torch``) and ``data_root`` go to the dataset's
    :class:`~prunebench.datasets.LoaderRequest`; ``compile`` wraps models with ``torch.compile`` (opt-in).
    """

    loader: str = "auto"
    data_root: Path | None = None
    compile: bool = False


def initial_model(config: RunConfig, device: torch.device, options: RunOptions | None = None) -> nn.Module:
    """The seed's initial weights, identical for every method (channels-last on CUDA, compiled if asked)."""
    dataset = get_dataset(config.dataset)
    torch.manual_seed(config.seed)
    model = build_model(config.model, dataset.input_shape, dataset.num_classes).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if options is not None and options.compile:
        model.compile()
    return model


def run_prunable(config: RunConfig, model: nn.Module) -> dict[str, nn.Parameter]:
    """The run's prunable set: every Conv/Linear weight, less the first/last layer if the config keeps it dense."""
    return prunable_weights(model, **vars(config.prunable))


def make_loaders(config: RunConfig, device: torch.device, options: RunOptions | None = None) -> DataLoaders:
    """The run's train and test loaders (order and augmentation fixed by its seed)."""
    options = options or RunOptions()
    request = LoaderRequest(
        batch_size=config.recipe.batch_size,
        seed=config.seed,
        device=device,
        data_root=options.data_root,
        loader=options.loader,
    )
    return get_dataset(config.dataset).make_loaders(request)


def needs_dense_pretraining(config: RunConfig) -> bool:
    """Whether the run starts from the shared dense pre-training (after-training methods, movement pruning): its
    schedule says (:data:`SCHEDULES`)."""
    spec = config.spec
    return SCHEDULES[spec.schedule].starts_from_dense(spec)


def dense_cache(config: RunConfig, cache_dir: Path) -> tuple[Path, Path]:
    """The cache of the run's dense pre-training, and the marker that says it diverged."""
    stem = f"dense-{dense_pretrain_key(config)}"
    return cache_dir / f"{stem}.pt", cache_dir / f"{stem}.diverged"


def _state_problem(state: Any, model: nn.Module) -> str | None:
    """Why ``state`` (loaded from a cache) is not a dense pre-training of ``model``, or ``None`` when it is."""
    if not isinstance(state, dict):
        return f"holds a {type(state).__name__}, not a state dict"
    expected = model.state_dict()
    if state.keys() != expected.keys():
        different = sorted(state.keys() ^ expected.keys())
        return f"its tensors do not match the model's ({len(different)} differ, e.g. {different[0]})"
    for name, tensor in expected.items():
        value = state[name]
        if not isinstance(value, torch.Tensor) or value.shape != tensor.shape:
            return f"{name} has shape {tuple(getattr(value, 'shape', ()))}, the model's {tuple(tensor.shape)}"
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return f"{name} holds NaN or infinite values"
    return None


def _cached_state(path: Path, model: nn.Module, device: torch.device) -> dict[str, torch.Tensor] | None:
    """The state dict cached in ``path``, checked against ``model``; an unusable cache is removed with a warning
    naming it (and ``None`` is returned, so that the pre-training is trained again)."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        reason = _state_problem(state, model)
    except Exception as error:  # noqa: BLE001  (truncated, not a torch file, unpicklable: all mean unusable)
        reason = " ".join(f"{type(error).__name__}: {error}".split())  # one line
    if reason is None:
        return state
    path.unlink(missing_ok=True)
    warnings.warn(
        f"removed the unusable dense pre-training cache {path} ({reason}); training it again", stacklevel=3
    )
    return None


@dataclass(frozen=True)
class RunContext:
    """What every phase of one run shares: its configuration, where it runs, its data options, the shared cache, its
    checkpoint and the progress callback. Handed to each schedule's training and to the allocation controls and the
    structured track, in place of the six arguments that travelled together through every per-run function.

    ``checkpoint`` ``None``: the run's phases are not checkpointed (the controls and the structured track)."""

    config: RunConfig
    device: torch.device
    cache_dir: Path
    options: RunOptions = field(default_factory=RunOptions)
    checkpoint: RunCheckpoint | None = None
    on_epoch: EpochCallback | None = None

    def initial_model(self) -> nn.Module:
        """The seed's initial weights (:func:`initial_model`)."""
        return initial_model(self.config, self.device, self.options)

    def loaders(self) -> DataLoaders:
        """The run's train and test loaders (:func:`make_loaders`)."""
        return make_loaders(self.config, self.device, self.options)

    def dense_pretrained(self, loaders: DataLoaders) -> nn.Module:
        """The shared dense pre-training of the run's data, model, seed and recipe, from the cache or trained and
        cached atomically (checkpointed with the run).

        The cache is checked on load: one that cannot be read or does not fit the model is removed (with a warning
        that names it) and trained again. A pre-training that diverges leaves a marker beside the cache, so that the
        other runs of its seed are :class:`Diverged` at once instead of training it again each; ``--force`` clears
        it."""
        model = self.initial_model()
        path, marker = dense_cache(self.config, self.cache_dir)
        if marker.exists():
            raise Diverged(
                f"the dense pre-training of this seed diverged ({marker.read_text().strip()}); "
                f"{marker} remembers it, --force trains it again"
            )
        state = _cached_state(path, model, self.device) if path.exists() else None
        if state is not None:
            model.load_state_dict(state)
            return model
        recipe = self.config.recipe
        try:
            trainer = self.fit(model, loaders.train, recipe.optim, recipe.pretrain_epochs, "pretrain")
        except Diverged as error:
            atomic_write_text(marker, f"{error}\n")
            raise
        if isinstance(trainer, SkippedPhase):
            raise RuntimeError(
                f"the dense pre-training cache {path} vanished after the run had used it; rerun"
            )
        atomic_save_tensors(model.state_dict(), path)
        return model

    def fit(
        self,
        model: nn.Module,
        loader,
        optim,
        epochs: int,
        phase: str,
        hooks=(),
        exclude=(),
        start: int = 0,
        stop: int | None = None,
    ) -> Trainer | SkippedPhase:
        """Train one phase of the run, or skip it if the run's checkpoint says it was completed before."""
        skipped = self.checkpoint.skipped(phase) if self.checkpoint is not None else None
        if skipped is not None:
            return skipped
        on_epoch = self.on_epoch
        trainer = Trainer(
            model,
            loader,
            optim,
            epochs,
            hooks=hooks,
            exclude=exclude,
            on_epoch_end=(lambda epoch, loss: on_epoch(phase, epoch, epochs, loss)) if on_epoch else None,
            start=start,
            stop=stop,
            checkpoint=self.checkpoint,
            phase=phase,
        )
        trainer.fit()
        return trainer

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, kept in the run's checkpoint so that a resumed run reads it back instead."""
        return compute() if self.checkpoint is None else self.checkpoint.value(key, compute)


@dataclass
class Outcome:
    """What a schedule's training leaves for the record: the final model and what the run spent and did."""

    model: nn.Module
    train_loss: float
    """Mean training loss of the last epoch (of the last phase)."""
    epochs: dict[str, int]
    method_sparsity: float | None = None
    enforcement: str | None = None
    details: dict[str, Any] | None = None


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
                scratch, run_prunable(config, scratch), config.sparsity, config.scope, self.data
            )

        return self.ctx.memo("masks", score)

    def live_masks(self, model: nn.Module, sparsity: float, alive: Masks | None) -> Masks:
        """The masks of ``model`` as it trains: on a copy, with a random stream of their own."""
        config, device = self.ctx.config, self.ctx.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            scratch = copy.deepcopy(model)
            torch.manual_seed(config.seed + 1)
            weights = run_prunable(config, scratch)
            return self.method.masks(scratch, weights, sparsity, config.scope, self.data, alive=alive)


def _train_dense(ctx: RunContext, method, loaders: DataLoaders, data: ScoringData) -> Outcome:
    """``dense``: train for the whole budget."""
    recipe = ctx.config.recipe
    model = ctx.initial_model()
    trainer = ctx.fit(model, loaders.train, recipe.optim, recipe.epochs, "train")
    return Outcome(model, trainer.last_loss, {"budget": recipe.epochs, "dense": recipe.epochs})


def _train_at_init(ctx: RunContext, method, loaders: DataLoaders, data: ScoringData) -> Outcome:
    """``at_init``: score the initial weights, fix the mask, train sparse for the whole budget."""
    recipe = ctx.config.recipe
    model = ctx.initial_model()
    masks = Criterion(ctx, method, data).masks(model)
    apply_masks(model, masks)
    trainer = ctx.fit(
        model, loaders.train, recipe.optim, recipe.epochs, "train", [MaskEnforcer(model, masks)]
    )
    return Outcome(model, trainer.last_loss, {"budget": recipe.epochs, "sparse": recipe.epochs})


def _train_after_training(ctx: RunContext, method, loaders: DataLoaders, data: ScoringData) -> Outcome:
    """``after_training``: start from the shared dense pre-training, prune once, fine-tune with the mask fixed."""
    recipe = ctx.config.recipe
    model = ctx.dense_pretrained(loaders)
    masks = Criterion(ctx, method, data).masks(model)
    apply_masks(model, masks)
    hooks = [MaskEnforcer(model, masks)]
    trainer = ctx.fit(model, loaders.train, recipe.finetune_optim, recipe.finetune_epochs, "finetune", hooks)
    spent = {"budget": recipe.epochs, "dense": recipe.pretrain_epochs, "finetune": recipe.finetune_epochs}
    return Outcome(model, trainer.last_loss, spent)


def _train_gradual(ctx: RunContext, method, loaders: DataLoaders, data: ScoringData) -> Outcome:
    """``gradual``: train from initialization while the criterion prunes along the cubic schedule."""
    config, recipe = ctx.config, ctx.config.recipe
    model = ctx.initial_model()
    torch.manual_seed(config.seed + 1)  # the training's random stream, seeded as in every pruned run
    criterion = Criterion(ctx, method, data)
    pruning = GradualPruning(
        model,
        config.sparsity,
        config.spec.schedule_options(config.hparams),
        functools.partial(criterion.live_masks, model),
    )
    trainer = ctx.fit(model, loaders.train, recipe.optim, recipe.epochs, "train", [pruning])
    apply_masks(model, pruning.finish(trainer.step))
    spent = {"budget": recipe.epochs, "gradual": recipe.epochs}
    return Outcome(model, trainer.last_loss, spent, details=pruning.details())


def _train_iterative(ctx: RunContext, method, loaders: DataLoaders, data: ScoringData) -> Outcome:
    """``iterative``: rounds of train, prune, rewind; every round counts in the recorded budget."""
    config, recipe = ctx.config, ctx.config.recipe
    model = ctx.initial_model()
    torch.manual_seed(config.seed + 1)

    def train(start: int, stop: int, hooks: list, phase: str) -> Trainer | SkippedPhase:
        return ctx.fit(
            model, loaders.train, recipe.optim, recipe.epochs, phase, hooks, start=start, stop=stop
        )

    steps_per_epoch = len(loaders.train)
    result = prune_iteratively(
        model,
        config.sparsity,
        config.spec.schedule_options(config.hparams),
        steps_per_epoch * recipe.epochs,
        train,
        functools.partial(Criterion(ctx, method, data).live_masks, model),
        ctx.checkpoint,
    )
    apply_masks(model, result.masks)
    spent = {
        "budget": epochs_of(result.steps, steps_per_epoch),
        "dense": recipe.epochs,
        "retrain": epochs_of(result.retrain_steps, steps_per_epoch),
    }
    return Outcome(model, result.train_loss, spent, details=result.details)


def _train_during_training(ctx: RunContext, method, loaders: DataLoaders, data: ScoringData) -> Outcome:
    """``during_training``: the method's session shapes the mask while the weights train, ends at the exact target,
    then the model fine-tunes with the mask fixed for the epochs the method reserves."""
    assert isinstance(method, TrainingMethod)
    config, recipe, checkpoint = ctx.config, ctx.config.recipe, ctx.checkpoint
    if method.starts_from == "dense":
        model = ctx.dense_pretrained(loaders)
        available, optim, epochs = (
            recipe.finetune_epochs,
            recipe.finetune_optim,
            {"dense": recipe.pretrain_epochs},
        )
    else:
        model = ctx.initial_model()
        available, optim, epochs = recipe.epochs, recipe.optim, {}
    finetune = method.finetune_epochs(available)
    learning = available - finetune
    context = TrainingContext(
        epochs=learning,
        steps_per_epoch=len(loaders.train),
        device=ctx.device,
        seed=config.seed,
        num_classes=get_dataset(config.dataset).num_classes,
        train_data=data,
    )
    torch.manual_seed(config.seed + 1)
    session = method.attach(model, run_prunable(config, model), config.sparsity, config.scope, context)
    trainer = ctx.fit(model, loaders.train, optim, learning, "learn", [session], session.method_parameters())
    if checkpoint is not None and checkpoint.has("final"):  # resumed after the learning phase
        session.release()
        final = FinalMasks(**checkpoint.values["final"])
    else:
        final = session.finish(trainer)
        if checkpoint is not None:
            checkpoint.values["final"] = vars(final)
    apply_masks(model, final.masks)
    if finetune:
        hooks = [MaskEnforcer(model, final.masks)]
        trainer = ctx.fit(model, loaders.train, method.finetune_optim(recipe), finetune, "finetune", hooks)
    epochs.update({"budget": recipe.epochs, "learn": learning, "finetune": finetune})
    return Outcome(model, trainer.last_loss, epochs, final.method_sparsity, final.enforcement, final.details)


@dataclass(frozen=True)
class Schedule:
    """How a schedule trains a run (``train``), and whether it starts from the shared dense pre-training."""

    train: Callable[[RunContext, Any, DataLoaders, ScoringData], Outcome]
    starts_from_dense: Callable[[Any], bool] = lambda spec: False


SCHEDULES: dict[str, Schedule] = {
    "dense": Schedule(_train_dense),
    "at_init": Schedule(_train_at_init),
    "after_training": Schedule(_train_after_training, lambda spec: True),
    "gradual": Schedule(_train_gradual),
    "iterative": Schedule(_train_iterative),
    "during_training": Schedule(
        _train_during_training, lambda spec: getattr(spec.cls, "starts_from", "init") == "dense"
    ),
}
"""Every schedule a method may declare; the only place that tells them apart."""


def _train_run(ctx: RunContext) -> tuple[Outcome, DataLoaders]:
    config = ctx.config
    loaders = ctx.loaders()
    if config.control:  # an allocation control: the source's mask, shuffled or on re-drawn weights
        from prunebench.run.allocation_controls import train_control

        return train_control(replace(ctx, checkpoint=None), loaders), loaders
    method = config.spec.build(config.hparams)
    data = ScoringData(loaders.train, get_dataset(config.dataset).num_classes)
    return SCHEDULES[config.spec.schedule].train(ctx, method, loaders, data), loaders


def epochs_of(steps: int, steps_per_epoch: int) -> int | float:
    """``steps`` in epochs: a whole number when it is one, else rounded to 4 decimals."""
    whole, rest = divmod(steps, max(steps_per_epoch, 1))
    return whole if rest == 0 else round(steps / steps_per_epoch, 4)


def execute(
    config: RunConfig,
    device: torch.device,
    cache_dir: Path,
    on_epoch: EpochCallback | None = None,
    options: RunOptions | None = None,
    checkpoint: RunCheckpoint | None = None,
) -> RunRecord:
    """Run ``config`` and return its record (status ``ok``; exceptions propagate).

    ``checkpoint``: save the run's state as it trains, resume it from there (see :mod:`prunebench.run.run_checkpoint`).

    Denormal floats are flushed to zero for the whole process: products with near-zero mask values (ProbMask's
    relaxed masks, STR's soft threshold) otherwise fall into denormals and slow CPU matrix products up to tenfold. The
    setting is the same for every method, and values below 1e-38 do not change a result.
    """
    torch.set_flush_denormal(True)
    ctx = RunContext(config, device, cache_dir, options or RunOptions(), checkpoint, on_epoch)
    if config.track.name == "structured":
        from prunebench.structured.structured_run import execute_structured

        return execute_structured(replace(ctx, checkpoint=None))
    started = time.perf_counter()
    outcome, loaders = _train_run(ctx)
    metrics = evaluate(outcome.model, loaders.test)
    for name, value in metrics.items():
        if not math.isfinite(value):
            raise Diverged(f"the final evaluation's {name} is {value}")
    weights = run_prunable(config, outcome.model)
    example = next(iter(loaders.test))[0][:1]  # one real input: its dtype and shape, token ids included
    accounting = account(outcome.model, example, weights)
    if config.method != "dense":
        keep = keep_budget(accounting["prunable_weights"], config.sparsity)
        if abs(accounting["prunable_nonzero"] - keep) > len(weights):
            raise TargetMissed(
                f"{accounting['prunable_nonzero']} non-zero weights left, the target keeps {keep} "
                f"(achieved sparsity {accounting['achieved_sparsity']:.5f}, target {config.sparsity})"
            )
    saved = {} if config.method == "dense" else {MASK_KEY: pack({n: w != 0 for n, w in weights.items()})}
    return {
        **record_head(config, device, "ok", time.perf_counter() - started),
        **saved,
        **metrics,
        **accounting,
        "method_sparsity": outcome.method_sparsity,
        "enforcement": outcome.enforcement,
        "method_details": outcome.details,
        "epochs": outcome.epochs,
        "train_loss": outcome.train_loss,
        "loader": loaders.kind,
        "precision": "bf16-autocast" if device.type == "cuda" else "fp32",
    }


def record_head(config: RunConfig, device: torch.device, status: str, wall_time: float) -> dict[str, Any]:
    identity = config.identity
    try:
        name, variant = config.spec.name, config.variant
    except UsageError:  # a failure record must be writable even where the method is not registered
        name, variant = config.method, ""
    return {
        "version": RECORD_VERSION,
        "run_id": config.run_id,
        "status": status,
        "config": {**identity, "preset": config.preset},
        "dataset": config.dataset,
        "model": config.model,
        "preset": config.preset,
        "method": name,
        "variant": variant,
        "criterion": identity["method"]["criterion"],
        "schedule": identity["method"]["schedule"],
        "scope": config.scope,
        "sparsity": config.sparsity,
        "seed": config.seed,
        "hparams": identity["method"]["hparams"],
        "device": describe_device(device),
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "versions": library_versions(),
        "source": source_fingerprints(config),
        "wall_time_s": wall_time,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **({"control": config.control} if config.control else {}),
    }


def failure_record(
    config: RunConfig, device: torch.device, error: BaseException, wall_time: float
) -> RunRecord:
    """The record of a run that raised: status ``diverged`` for a NaN loss, ``failed`` otherwise, with the error."""
    status = "diverged" if isinstance(error, Diverged) else "failed"
    return {
        **record_head(config, device, status, wall_time),
        "error": f"{type(error).__name__}: {error}",
        "traceback": "".join(traceback.format_exception(error)),
    }


class GridReporter:
    """Callbacks of a grid run (the CLI shows them with rich); every one is a no-op by default."""

    def grid_started(self, total: int, skipped: int) -> None: ...

    def run_started(self, config: RunConfig) -> None: ...

    def epoch_done(self, phase: str, epoch: int, epochs: int, loss: float) -> None: ...

    def run_finished(self, config: RunConfig, record: dict | None) -> None:
        """``record`` is ``None`` when the run was skipped as already finished."""


def run_or_record_failure(
    config: RunConfig,
    device: torch.device,
    cache_dir: Path,
    on_epoch: EpochCallback | None = None,
    options: RunOptions | None = None,
    checkpoint: RunCheckpoint | None = None,
) -> dict:
    """The record of ``config``: its results, or its failure (a failing method must not stop the grid).

    A run stopped on request (:class:`~prunebench.run.run_checkpoint.RunInterrupted`), abandoned to another runner
    (:class:`~prunebench.run.run_checkpoint.ClaimLost`) or stopped by a full disk (:func:`~prunebench.core.errors.is_disk_full`)
    raises: it has no record."""
    started = time.perf_counter()
    try:
        return execute(config, device, cache_dir, on_epoch, options, checkpoint)
    except Exception as error:  # noqa: BLE001
        if is_disk_full(error):
            raise  # not the run's failure: the grid stops, and the run is retried once there is space
        return failure_record(config, device, error, time.perf_counter() - started)


def run_grid(
    configs: Sequence[RunConfig],
    store: ResultStore,
    device: torch.device,
    *,
    force: bool = False,
    reporter: GridReporter | None = None,
    options: RunOptions | None = None,
    jobs: int = 1,
    devices: Sequence[torch.device] | None = None,
    settings: RunnerSettings | None = None,
) -> list[dict]:
    """Run every configuration not finished yet (all with ``force``); return the records of this invocation.

    A failing run is recorded with its error and the grid goes on. Runs are claimed
    (:mod:`prunebench.grid.scheduler`), so other ``bench run`` processes and Slurm tasks may work on the same
    directory. SIGINT or SIGTERM stops the run in progress at its next step boundary, with a checkpoint, and raises
    :class:`~prunebench.run.run_checkpoint.RunInterrupted`; finished records stay, and a rerun resumes.
    With ``jobs > 1`` the runs go to that many worker processes on ``device``, and with ``devices`` to one worker
    per entry (:mod:`prunebench.grid.local_executor`).
    """
    from prunebench.grid.scheduler import Runner, set_deterministic, start_invocation
    from prunebench.run.run_checkpoint import stop_on_signals

    reporter = reporter or GridReporter()
    store.ensure_writable()
    store.remove_stale_temporaries()
    invocation = start_invocation(configs, store, force)
    since, todo = invocation.since, invocation.todo
    reporter.grid_started(len(configs), len(invocation.finished))
    for config in invocation.finished:
        reporter.run_finished(config, None)
    cache_dir = store.root / "cache"
    if force:  # a pre-training remembered as diverged is trained again
        for config in filter(needs_dense_pretraining, todo):
            dense_cache(config, cache_dir)[1].unlink(missing_ok=True)
    todo = list(itertools.chain.from_iterable(phases(todo)))  # allocation controls after the runs they read
    workers = list(devices) if devices is not None else [device] * jobs
    if len(workers) > 1 and todo:
        from prunebench.grid.local_executor import run_in_workers

        return run_in_workers(
            todo, store, workers, reporter=reporter, options=options, settings=settings, since=since
        )
    set_deterministic((settings or RunnerSettings()).deterministic)
    with stop_on_signals():
        runner = Runner(
            todo, store, workers[0], reporter=reporter, options=options, settings=settings, since=since
        )
        try:
            return runner.run()
        except OSError as error:
            if is_disk_full(error):
                raise grid_stopped(error) from None
            raise
