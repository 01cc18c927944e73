"""Per-epoch training curves of a run: collected as it trains, kept in its checkpoint, written beside its record.

Every training epoch of a run's own phases (the shared dense pre-training is a job of its own and has none) adds
one row: the phase, the epoch of the phase's schedule (1-based), the optimizer steps taken, the epoch's mean training
loss, the test top-1 where an evaluation interval is declared (``--eval-every N``: every N-th epoch of the run; for
watching a run, never for selecting one: the record's ``top1`` is the one final evaluation), the sparsity of the
prunable weights (their exact zeros, as the model stores them), the weights' learning rate at the epoch's end, and
the method's own quantities (:meth:`~prunebench.run.trainer.TrainHook.curve_values`: a threshold, a temperature, a
budget, the gradual schedule's current target). A hook's ``sparsity`` replaces the stored-weight count: a learned-mask
method's layers multiply a reparametrized weight whose zeros only the method can count outside a training step.

The rows live in the run's checkpoint (:mod:`prunebench.run.run_checkpoint`) while it trains, so a resumed run goes on
from the checkpoint's epoch without repeating one, and reach ``runs/<run_id>.curves.csv`` with the record: handed to
the store under :data:`CURVES_KEY` and written atomically before it (:meth:`~prunebench.grid.result_store.ResultStore.save`).
The record itself does not change. CSV keeps the file small and readable by anything (``pandas.read_csv``); a column a
row has no value for is empty. The name does not end in ``.json``, so nothing takes it for a record.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from prunebench.core.atomic_files import atomic_file
from prunebench.core.errors import UsageError
from prunebench.pruning.saved_masks import RUN_ID

if TYPE_CHECKING:
    from prunebench.run.run_checkpoint import RunCheckpoint
    from prunebench.run.tracking import Tracker
    from prunebench.run.trainer import EpochLoader, Trainer

SUFFIX = ".curves.csv"
CURVES_KEY = "_curves"
"""The record key under which the runner hands a run's rows to the store; it never reaches the JSON."""
CHECKPOINT_KEY = "curves"
"""The key of the rows among the checkpoint's values."""
COLUMNS = ("phase", "epoch", "step", "train_loss", "test_top1", "sparsity", "lr")
"""The harness's columns, first in every file; the methods' own follow in the order they first appear."""
UNRECORDED_PHASES = ("pretrain",)
"""Phases whose epochs are not the run's: the shared dense pre-training (cached once per seed, for every method)."""


def curves_path(results_dir: Path, run_id: str) -> Path:
    """Where the curves of ``run_id`` lie in ``results_dir``; a run id that is not a plain name is a
    :class:`UsageError`, so that no path leaves ``runs/``."""
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise UsageError(
            f"{run_id!r} is not a run id (letters, digits, _ and - only, e.g. 00b0959e79394f3b); "
            f"no curves are read or written by it in {results_dir}"
        )
    return Path(results_dir) / "runs" / f"{run_id}{SUFFIX}"


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    extra = dict.fromkeys(key for row in rows for key in row if key not in COLUMNS)
    return [*COLUMNS, *extra]


def write_curves(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write ``rows`` to ``path`` as CSV, atomically (a float in its shortest exact form, ``None`` as empty)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, _columns(rows), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: ("" if value is None else value) for key, value in row.items()})
    with atomic_file(Path(path)) as stream:
        stream.write(buffer.getvalue())


def _value(text: str) -> Any:
    if text == "":
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def read_curves(results_dir: Path, run_id: str) -> list[dict[str, Any]] | None:
    """The rows of ``run_id``'s curves (numbers as numbers, empty cells as ``None``), or ``None`` when it has none.

    A file without the harness's columns is a one-line :class:`UsageError` naming it."""
    path = curves_path(results_dir, run_id)
    if not path.exists():
        return None
    with path.open(newline="") as stream:
        reader = csv.DictReader(stream)
        if reader.fieldnames is None or list(reader.fieldnames[: len(COLUMNS)]) != list(COLUMNS):
            raise UsageError(f"{path} is not a curves file (its header is not {','.join(COLUMNS)},...)")
        return [{key: _value(text) for key, text in row.items()} for row in reader]


def stored_weight(model: nn.Module, name: str) -> torch.Tensor:
    """The weight ``name`` as ``model`` stores it: the parameter, or under a parametrization its ``original``."""
    path, _, attribute = name.rpartition(".")
    module = model.get_submodule(path) if path else model
    if parametrize.is_parametrized(module, attribute):
        return module.parametrizations[attribute].original
    return getattr(module, attribute)


@torch.no_grad()
def zero_fraction(model: nn.Module, names: Iterable[str]) -> float:
    """The fraction of exact zeros among the stored weights ``names`` of ``model`` (one device sync)."""
    weights = [stored_weight(model, name) for name in names]
    if not weights:
        return float("nan")
    zeros = torch.stack([(w == 0).sum() for w in weights]).sum()
    return float(zeros) / sum(w.numel() for w in weights)


class CurveLog:
    """The rows of one run's curves, appended at every epoch's end (:meth:`epoch_done`) and streamed to trackers.

    ``checkpoint``: the rows are kept among its values (a resumed run starts from the saved rows). ``eval_every``:
    evaluate the test top-1 every that many epochs of the run (``None``: never during training). ``test``: the test
    loader, set once the run has made its loaders. ``prunable``: the names of the prunable weights, set by
    :meth:`watch` from a model before any method reparametrizes it."""

    def __init__(
        self,
        checkpoint: RunCheckpoint | None = None,
        *,
        eval_every: int | None = None,
        trackers: Sequence[Tracker] = (),
    ) -> None:
        self.rows: list[dict[str, Any]] = (
            checkpoint.values.setdefault(CHECKPOINT_KEY, []) if checkpoint is not None else []
        )
        self.eval_every = eval_every
        self.trackers = list(trackers)
        self.test: EpochLoader | None = None
        self.prunable: list[str] | None = None

    def watch(self, names: Iterable[str]) -> None:
        """Count the sparsity over the weights ``names`` (the run's prunable set)."""
        self.prunable = list(names)

    def epoch_done(self, trainer: Trainer, phase: str, epoch: int, loss: float) -> None:
        """Add the row of ``epoch`` (0-based) of ``phase`` that ``trainer`` just finished, and stream it."""
        if phase in UNRECORDED_PHASES:
            return
        row: dict[str, Any] = {
            "phase": phase,
            "epoch": epoch + 1,
            "step": trainer.step,
            "train_loss": loss,
            "test_top1": self._test_top1(trainer),
            "sparsity": zero_fraction(trainer.model, self.prunable) if self.prunable else None,
            "lr": trainer.lr,
        }
        for hook in trainer.hooks:
            row.update({key: float(value) for key, value in hook.curve_values(trainer).items()})
        self.rows.append(row)
        for tracker in self.trackers:
            tracker.log(row, len(self.rows))

    def _test_top1(self, trainer: Trainer) -> float | None:
        """The test top-1 now when this epoch of the run is one to evaluate at, else ``None``."""
        every = self.eval_every
        if not every or self.test is None or (len(self.rows) + 1) % every:
            return None
        if not all(hook.evaluable for hook in trainer.hooks):
            return None
        return evaluate_between_steps(trainer.model, self.test)["top1"]


def evaluate_between_steps(model: nn.Module, loader: EpochLoader) -> dict[str, float]:
    """:func:`~prunebench.run.trainer.evaluate` in the middle of training, leaving no trace: every module's training
    flag is restored after, and torch's random generators (CPU and the model's CUDA device) are forked, so that the
    run goes on exactly as without it."""
    from prunebench.run.trainer import evaluate

    modes = [(module, module.training) for module in model.modules()]
    device = next(model.parameters()).device
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            return evaluate(model, loader)
    finally:
        for module, mode in modes:
            module.training = mode
