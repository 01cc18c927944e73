"""What every phase of one run shares: its configuration, device, data options, the shared dense pre-training's
cache, its checkpoint and progress (:class:`RunContext`), and the run's initial model, prunable set and loaders."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunebench.core.atomic_files import atomic_save_tensors, atomic_write_text
from prunebench.core.errors import UsageError
from prunebench.datasets import DataLoaders, LoaderRequest, get_dataset
from prunebench.pruning.prunable import prunable_weights
from prunebench.run.batched_engine import ENGINE, batchable, current_member
from prunebench.run.curves import CurveLog
from prunebench.run.run_checkpoint import RunCheckpoint, SkippedPhase
from prunebench.run.run_config import RunConfig, dense_pretrain_key
from prunebench.run.trainer import Diverged, Trainer
from prunebench.zoo.model_zoo import build_model, model_is_pretrained

BATCHED_KEY = "batched_phases"
"""The checkpoint value that remembers the phases the batched engine trained."""

EpochCallback = Callable[[str, int, int, float], None]
"""``(phase, epoch, epochs, loss)``: reported after each training epoch."""


@dataclass(frozen=True)
class RunOptions:
    """How runs execute, not what they compute: none of this enters a run's id.

    ``loader`` (``auto``, ``ffcv``, ``torch``) and ``data_root`` go to the dataset's
    :class:`~prunebench.datasets.LoaderRequest`; ``compile`` wraps models with ``torch.compile`` (opt-in).
    ``eval_every``: evaluate the test top-1 for the run's curves every that many epochs (``None``: only the final
    evaluation, see :mod:`prunebench.run.curves`); ``log``: the trackers the curves stream to
    (:mod:`prunebench.run.tracking`), writing under ``log_dir`` (``None``: the results directory).
    """

    loader: str = "auto"
    data_root: Path | None = None
    compile: bool = False
    eval_every: int | None = None
    log: tuple[str, ...] = ()
    log_dir: Path | None = None


def check_pretrained_start(config: RunConfig) -> None:
    """A one-line usage error for a pruning-at-initialization method on a pretrained model: its criterion scores
    an initialization, which given trained weights are not (``docs/models-and-data.md``, "Pretrained models")."""
    if config.spec.schedule == "at_init" and model_is_pretrained(config.model):
        raise UsageError(
            f"{config.spec.name} prunes at initialization, but {config.model} starts from trained weights: a "
            "pruning-at-initialization criterion needs an initialization; prune it with an after-training, "
            "one-shot, gradual or during-training method, or name the model without weights"
        )


def initial_model(config: RunConfig, device: torch.device, options: RunOptions | None = None) -> nn.Module:
    """The seed's initial weights, identical for every method (channels-last on CUDA, compiled if asked); for a
    pretrained model its given weights (refused to an at-initialization method: :func:`check_pretrained_start`)."""
    check_pretrained_start(config)
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


def dense_cache(config: RunConfig, cache_dir: Path) -> tuple[Path, Path]:
    """The cache of the run's dense pre-training, and the marker that says it diverged."""
    stem = f"dense-{dense_pretrain_key(config)}"
    return cache_dir / f"{stem}.pt", cache_dir / f"{stem}.diverged"


def engine_note(cache: Path) -> Path:
    """Beside a dense pre-training's cache when the batched engine trained it (absent when it trained alone)."""
    return cache.with_suffix(".batched")


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

    ``checkpoint`` ``None``: the run's phases are not checkpointed (the controls and the structured track).
    ``curves``: the run's per-epoch curves, which every epoch :meth:`fit` trains adds a row to. A run executed as a
    member of a batch (:mod:`prunebench.run.batched_engine`) trains each phase :meth:`fit` can stack with other
    runs' in the batch."""

    config: RunConfig
    device: torch.device
    cache_dir: Path
    options: RunOptions = field(default_factory=RunOptions)
    checkpoint: RunCheckpoint | None = None
    on_epoch: EpochCallback | None = None
    curves: CurveLog | None = None
    batched: list[str] = field(default_factory=list)
    """The phases the batched engine trained (:meth:`batched_phases`); shared by the contexts ``replace`` derives."""

    def initial_model(self) -> nn.Module:
        """The seed's initial weights (:func:`initial_model`); the curves count the sparsity of its prunable set."""
        model = initial_model(self.config, self.device, self.options)
        if self.curves is not None and self.curves.prunable is None:
            self.curves.watch(run_prunable(self.config, model))
        return model

    @property
    def pretrained(self) -> bool:
        """Whether the run's model starts from given weights, which are then its dense model (no pre-training)."""
        return model_is_pretrained(self.config.model)

    def loaders(self) -> DataLoaders:
        """The run's train and test loaders (:func:`make_loaders`)."""
        return make_loaders(self.config, self.device, self.options)

    def dense_pretrained(self, loaders: DataLoaders) -> nn.Module:
        """The shared dense pre-training of the run's data, model, seed and recipe, from the cache or trained and
        cached atomically (checkpointed with the run).

        The cache is checked on load: one that cannot be read or does not fit the model is removed (with a warning
        that names it) and trained again. A pre-training that diverges leaves a marker beside the cache, so that the
        other runs of its seed are :class:`Diverged` at once instead of training it again each; ``--force`` clears
        it. A pretrained model's given weights are its dense model: nothing is trained or cached."""
        if self.pretrained:
            return self.initial_model()
        model = self.initial_model()
        path, marker = dense_cache(self.config, self.cache_dir)
        if marker.exists():
            raise Diverged(
                f"the dense pre-training of this seed diverged ({marker.read_text().strip()}); "
                f"{marker} remembers it, --force trains it again"
            )
        state = _cached_state(path, model, self.device) if path.exists() else None
        note = engine_note(path)
        if state is not None:
            model.load_state_dict(state)
            if note.exists():
                self.note_batched("pretrain")
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
        if "pretrain" in self.batched:
            atomic_write_text(note, f"{ENGINE}\n")
        else:
            note.unlink(missing_ok=True)
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
        start: int = 0,
        stop: int | None = None,
    ) -> Trainer | SkippedPhase:
        """Train one phase of the run, or skip it if the run's checkpoint says it was completed before."""
        skipped = self.checkpoint.skipped(phase) if self.checkpoint is not None else None
        if skipped is not None:
            return skipped
        on_epoch, curves = self.on_epoch, self.curves

        def epoch_end(epoch: int, loss: float) -> None:
            if curves is not None:
                curves.epoch_done(trainer, phase, epoch, loss)
            if on_epoch is not None:
                on_epoch(phase, epoch, epochs, loss)

        trainer = Trainer(
            model,
            loader,
            optim,
            epochs,
            hooks=hooks,
            on_epoch_end=epoch_end if on_epoch or curves else None,
            start=start,
            stop=stop,
            checkpoint=self.checkpoint,
            phase=phase,
        )
        member = current_member()
        if member is not None and batchable(trainer):
            trainer.begin()
            member.fit(trainer)
            trainer.finish()
            self.note_batched(phase)
        else:
            trainer.fit()
        return trainer

    def note_batched(self, phase: str) -> None:
        """Remember that the batched engine trained ``phase`` (the record's ``engine``), in the checkpoint too, so
        that a resumed run still says it."""
        if phase not in self.batched:
            self.batched.append(phase)
        if self.checkpoint is not None:
            self.checkpoint.values[BATCHED_KEY] = self.batched_phases()

    def batched_phases(self) -> list[str]:
        """The phases of the run the batched engine trained, in order (those of a resumed run's earlier invocation
        included)."""
        earlier = self.checkpoint.values.get(BATCHED_KEY, []) if self.checkpoint is not None else []
        return [*earlier, *(phase for phase in self.batched if phase not in earlier)]

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, kept in the run's checkpoint so that a resumed run reads it back instead."""
        return compute() if self.checkpoint is None else self.checkpoint.value(key, compute)
