"""Checkpoints inside a run, and stopping a run at a step boundary (pre-emption, Ctrl-C, SIGTERM).

A run's whole state lives in one file, ``<out>/checkpoints/<run_id>.pt``, written atomically (temporary file, then
rename) every ``every_epochs`` epochs or ``every_minutes`` minutes, and when the run is asked to stop:

* the position: the training phases already completed and the one in progress (``pretrain``, ``train``,
  ``finetune``, ``learn``, ``round 3``...), with its trainer's step, epoch and the running loss of the epoch;
* the model's state dict (learned-mask methods' parametrizations included: their scores and masks are buffers and
  parameters of the model), the optimizer's and the learning-rate scheduler's, and the optimizers of the parameter
  groups the training hooks declare (a learned-mask method's scores or thresholds);
* every training hook's :meth:`~prunebench.run.trainer.TrainHook.state_dict` (a method's session: its thresholds,
  schedule position, running values; the gradual schedule's masks);
* the values the run computed between phases (masks scored at initialization, the rewind point of iterative
  pruning, a learned-mask method's final masks): :meth:`RunCheckpoint.value`;
* every random generator: torch's (CPU and CUDA), NumPy's, Python's. The loaders have no state of their own: an
  epoch's order and augmentation are a pure function of (seed, epoch), and the epoch is restored.

A resumed run executes the same code: completed phases are skipped, values are read back instead of computed, and
the phase in progress continues from its saved step (re-reading, and discarding, the batches of its epoch before
that step, so that they draw the same random numbers). On the CPU the result is bit-identical to an uninterrupted
run with the same thread count. The checkpoint is removed once the run's record is written.

A save copies the state (to the CPU) at the step boundary and writes it from a background thread while training
goes on; a stop waits for the write. Checkpoints are renamed into place but not fsynced: a process killed at any moment leaves the previous checkpoint or
the new one, whole; only a power cut can leave a damaged one, which is detected on load (the run starts over).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from prunebench.core.atomic_files import atomic_save_tensors
from prunebench.core.errors import UsageError

if TYPE_CHECKING:
    from prunebench.run.trainer import Trainer

CHECKPOINT_VERSION = 2
"""Bumped when what a checkpoint holds changes (2: the declared parameter groups' optimizers, held by the trainer);
a checkpoint of another version is removed and its run starts over."""


class RunInterrupted(BaseException):  # noqa: N818  (not an error of the run: it stopped on request)
    """The run stopped at a step boundary on request, after saving its checkpoint."""


class ClaimLost(BaseException):  # noqa: N818
    """Another runner took this run's claim over: the run is abandoned, nothing is written."""


class StopFlag:
    """A request to stop at the next step boundary (set by a signal handler, read by the training loop)."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def request(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    def clear(self) -> None:
        self.reason = None

    def __bool__(self) -> bool:
        return self.reason is not None


STOP = StopFlag()
"""The process-wide stop request."""


@contextlib.contextmanager
def stop_on_signals(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[StopFlag]:
    """While the block runs, the first of ``signals`` asks the run to stop at its next step boundary; a second
    SIGINT raises :class:`KeyboardInterrupt` at once. Outside the main thread this does nothing. A stop request
    left from an earlier block is cleared on entry."""
    STOP.clear()
    if threading.current_thread() is not threading.main_thread():
        yield STOP
        return

    def handler(signum: int, frame: Any) -> None:
        if STOP and signum == signal.SIGINT:
            raise KeyboardInterrupt
        STOP.request(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield STOP
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@dataclass(frozen=True)
class CheckpointPolicy:
    """When a run saves its state: every ``every_epochs`` epochs, or every ``every_minutes`` minutes (at the end
    of the epoch in which that much time passed), and always when asked to stop. ``every_epochs = 0`` and
    ``every_minutes = None`` save only when stopping."""

    every_epochs: int = 1
    every_minutes: float | None = None

    @classmethod
    def parse(cls, text: str) -> CheckpointPolicy:
        """``--checkpoint-every``: ``N`` epochs, ``Nm``/``Nmin`` minutes, or ``0``/``off`` (only when stopping)."""
        text = str(text).strip().lower()
        if text in ("0", "off", "never"):
            return cls(0, None)
        try:
            if text.endswith(("min", "m")):
                minutes = float(text.removesuffix("min").removesuffix("m"))
                if minutes > 0:
                    return cls(0, minutes)
            elif int(text) > 0:
                return cls(int(text), None)
        except ValueError:
            pass
        raise UsageError(f"--checkpoint-every takes N (epochs), Nm (minutes) or off, got {text!r}")


def rng_state() -> dict[str, Any]:
    """Every random generator's state: torch's (CPU and each CUDA device), NumPy's, Python's."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.copy()), pos, has_gauss, cached],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_cpu(state: Any) -> Any:
    """A copy of ``state`` (nested dicts, lists and tuples) whose tensors are copies on the CPU."""
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {key: _to_cpu(value) for key, value in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(_to_cpu(value) for value in state)
    return state


class SkippedPhase:
    """What a completed phase left, for the code that follows it in a resumed run (its last loss and step)."""

    def __init__(self, last_loss: float, step: int) -> None:
        self.last_loss = last_loss
        self.step = step


class RunCheckpoint:
    """The checkpoint of one run: resumes it if the file exists, saves it as the policy says.

    ``stop`` is polled at every step boundary: when true the run saves and raises :class:`RunInterrupted`.
    ``lost`` is polled too: when true (another runner took the run over) the run raises :class:`ClaimLost`.
    ``path = None`` keeps nothing (a run outside a results directory).
    """

    def __init__(
        self,
        path: Path | None,
        policy: CheckpointPolicy | None = None,
        *,
        stop: Callable[[], bool] = lambda: bool(STOP),
        lost: Callable[[], bool] = lambda: False,
        device: torch.device | None = None,
    ) -> None:
        self.path = path
        self.policy = policy or CheckpointPolicy()
        self.stop = stop
        self.lost = lost
        self.values: dict[str, Any] = {}
        self.completed: dict[str, tuple[float, int]] = {}
        self.current: dict[str, Any] | None = None
        self.resumed = False
        self.saves = 0
        self._last_save = time.monotonic()
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None
        self.staged = False
        """Whether saves are written beside the checkpoint (:attr:`staging`) until :meth:`commit`: the batched
        engine stages the epoch-end saves of a batch's runs and commits them together, so that a batch killed while
        its runs write leaves every run at the same epoch."""
        if path is not None:
            # An uncommitted staged save: its batch was killed before the commit, which the run resumes from.
            self.staging.unlink(missing_ok=True)
            if path.exists():
                self._load(path, device)

    def _load(self, path: Path, device: torch.device | None) -> None:
        try:
            state = torch.load(path, map_location=device or "cpu", weights_only=True)
            if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
                raise ValueError("not a checkpoint of this version")
        except Exception as error:  # noqa: BLE001  (damaged or foreign: the run starts over)
            warnings.warn(
                f"ignored the unusable checkpoint {path} ({type(error).__name__}: {error}); the run starts over",
                stacklevel=3,
            )
            path.unlink(missing_ok=True)
            return
        self.values = state["values"]
        self.completed = {k: (float(v[0]), int(v[1])) for k, v in state["completed"].items()}
        self.current = state["current"]
        self.resumed = True

    # Values computed between phases -------------------------------------------------------------------------
    def value(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, or the value it returned before the run was interrupted (kept in the checkpoint)."""
        if key not in self.values:
            self.values[key] = compute()
        return self.values[key]

    def has(self, key: str) -> bool:
        return key in self.values

    def forget(self, key: str) -> None:
        """Drop a value no longer needed (kept checkpoints small)."""
        self.values.pop(key, None)

    # Phases ------------------------------------------------------------------------------------------------
    def skipped(self, phase: str) -> SkippedPhase | None:
        """The phase's outcome if it completed before the interruption (the run skips it), else ``None``."""
        if phase in self.completed:
            loss, step = self.completed[phase]
            return SkippedPhase(loss, step)
        return None

    def resume_state(self, phase: str) -> dict[str, Any] | None:
        """The saved state of ``phase`` if the run was interrupted in it."""
        if self.current is not None and self.current["phase"] == phase:
            return self.current
        return None

    def phase_done(self, phase: str, trainer: Trainer) -> None:
        self.completed[phase] = (trainer.last_loss, trainer.step)
        self.current = None

    def after_step(self, trainer: Trainer, phase: str, epoch_end: bool) -> None:
        """At a step boundary (``epoch_end``: the end of an epoch): save if due or asked to stop, then stop."""
        if self.lost():
            raise ClaimLost(f"another runner took over the run during {phase}")
        stopping = self.stop()
        due = stopping
        if epoch_end and not due:
            every = self.policy.every_epochs
            due = bool(every) and (trainer.epoch + 1) % every == 0
            minutes = self.policy.every_minutes
            due = due or (minutes is not None and time.monotonic() - self._last_save >= 60 * minutes)
        if due:
            self.save(trainer, phase)
        if stopping:
            self.commit()
            raise RunInterrupted(f"stopped in {phase} at step {trainer.step} (checkpoint saved)")

    def save(self, trainer: Trainer, phase: str) -> None:
        """Snapshot the state now (a copy on the CPU) and write it from a background thread, so that training
        goes on meanwhile; one write at a time (a save waits for the previous one)."""
        if self.path is None:
            return
        state = {
            "version": CHECKPOINT_VERSION,
            "values": self.values,
            "completed": dict(self.completed),
            "current": {"phase": phase, **trainer.state_dict()},
        }
        snapshot = _to_cpu(state)
        self.wait()
        self._writer = threading.Thread(target=self._write, args=(snapshot,), name="checkpoint", daemon=True)
        self._writer.start()
        self.saves += 1
        self._last_save = time.monotonic()

    @property
    def staging(self) -> Path:
        """Where a staged save is written until :meth:`commit`."""
        assert self.path is not None
        return self.path.with_name(self.path.name + ".next")

    def _write(self, snapshot: dict[str, Any]) -> None:
        assert self.path is not None
        try:
            atomic_save_tensors(snapshot, self.staging if self.staged else self.path, durable=False)
        except BaseException as error:  # noqa: BLE001  (reported by wait(), in the training thread)
            self._error = error

    def commit(self) -> None:
        """Put the staged save, if any, in the checkpoint's place (after its write)."""
        self.wait()
        if self.path is not None and self.staging.exists():
            os.replace(self.staging, self.path)

    def wait(self) -> None:
        """Wait for the checkpoint being written, if any; raise the error its write met."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.join()
        error, self._error = self._error, None
        if error is not None:
            raise error

    def delete(self) -> None:
        """Remove the checkpoint (the run's record is written): after any write in flight."""
        try:
            self.wait()
        except Exception:  # noqa: BLE001, S110  (a failed write of a checkpoint about to be removed)
            pass
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.staging.unlink(missing_ok=True)
