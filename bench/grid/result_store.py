"""The results store: one JSON record per run under ``<out>/runs/<run_id>.json``, written atomically
(:mod:`prunebench.core.atomic_files`), so a record exists complete or not at all. Finished runs are skipped by a rerun.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from prunebench.core.atomic_files import atomic_write_text, remove_stale_temporaries, writer_tag
from prunebench.core.errors import UsageError
from prunebench.run.run_record import RunRecord, problem, read_record


class ResultStore:
    """Records of the runs in one output directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.runs = self.root / "runs"

    def ensure_writable(self) -> None:
        """Create the directory, or raise a :class:`UsageError` saying why it cannot be written."""
        try:
            self.runs.mkdir(parents=True, exist_ok=True)
            handle, probe = tempfile.mkstemp(dir=self.runs, prefix=f".write-probe.{writer_tag()}.")
            os.close(handle)
            os.unlink(probe)
        except OSError as error:
            raise UsageError(f"cannot write results to {self.root}: {error.strerror or error}") from None

    def clock(self) -> float:
        """The results directory's time now: the modification time its file system gives a new file there.

        Compared with the records' modification times (:meth:`record_names`), which the same file system sets, so
        that runners on hosts whose clocks disagree (Slurm nodes on a shared filesystem) agree on what was written
        before and after it."""
        self.runs.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=self.runs, prefix=f".clock.{writer_tag()}.", suffix=".tmp")
        try:
            return os.fstat(handle).st_mtime
        finally:
            os.close(handle)
            os.unlink(probe)

    def path(self, run_id: str) -> Path:
        return self.runs / f"{run_id}.json"

    @property
    def checkpoints(self) -> Path:
        """Where runs in progress keep their checkpoints (:mod:`prunebench.run.run_checkpoint`)."""
        return self.root / "checkpoints"

    def checkpoint_path(self, key: str) -> Path:
        return self.checkpoints / f"{key}.pt"

    def record_names(self) -> dict[str, float]:
        """The run ids that have a record file, with its modification time: one directory listing, whatever the
        number of runs."""
        names: dict[str, float] = {}
        try:
            entries = os.scandir(self.runs)
        except FileNotFoundError:
            return names
        with entries:
            for entry in entries:
                if entry.name.endswith(".json") and not entry.name.startswith("."):
                    try:
                        names[entry.name[:-5]] = entry.stat().st_mtime
                    except FileNotFoundError:
                        continue
        return names

    def read(self, run_id: str) -> tuple[RunRecord | None, str | None]:
        """The run's usable record, or ``None`` with the reason its file cannot be used: unreadable, not JSON,
        malformed, of another record version, or another run's. ``(None, None)``: there is no record.

        Usable is what the leaderboard reads (:func:`prunebench.run.run_record.problem`): a run whose record it would skip
        is never counted as finished; it is run again."""
        return read_record(self.path(run_id), run_id)

    def remove_stale_temporaries(self) -> list[Path]:
        """Remove the temporary files that interrupted writes left here (see :func:`remove_stale_temporaries`)."""
        return remove_stale_temporaries(
            [self.root, self.runs, self.root / "cache", self.root / "plots", self.checkpoints], ".tmp"
        )

    def save(self, record: RunRecord) -> Path:
        """Write ``record`` atomically; a record that breaks its declaration is a harness bug and raises.

        A run's packed mask and its per-example outcomes, handed over under
        :data:`~prunebench.pruning.saved_masks.MASK_KEY` and :data:`~prunebench.run.example_outcomes.OUTCOMES_KEY`,
        are written first (:mod:`prunebench.pruning.saved_masks`, :mod:`prunebench.run.example_outcomes`), so that a
        record never exists without them; they are taken out of ``record``, which the caller keeps as written. So are
        a run's curves, under :data:`~prunebench.run.curves.CURVES_KEY` (:mod:`prunebench.run.curves`)."""
        from prunebench.pruning.saved_masks import MASK_KEY, mask_path, write_mask
        from prunebench.run.curves import CURVES_KEY, curves_path, write_curves
        from prunebench.run.example_outcomes import OUTCOMES_KEY, outcomes_path, write_outcomes

        packed = record.pop(MASK_KEY, None)  # type: ignore[misc]
        outcomes = record.pop(OUTCOMES_KEY, None)  # type: ignore[misc]
        curves = record.pop(CURVES_KEY, None)  # type: ignore[misc]
        reason = problem(record)
        if reason is not None:
            raise ValueError(f"refusing to write run {record.get('run_id')}: {reason}")
        if packed is not None:
            write_mask(mask_path(self.root, record["run_id"]), packed)
        if outcomes is not None:
            write_outcomes(outcomes_path(self.root, record["run_id"]), outcomes)
        if curves:
            write_curves(curves_path(self.root, record["run_id"]), curves)
        path = self.path(record["run_id"])
        atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True, default=str))
        return path
