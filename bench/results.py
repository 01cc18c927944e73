"""The results store: one JSON record per run under ``<out>/runs/<run_id>.json``, written atomically.

A record is written to a temporary file in the same directory and renamed over the final name, so a crash or Ctrl-C
never leaves a half-written record: a record exists complete or not at all. Finished runs are skipped by a rerun.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from prunebench.errors import UsageError
from prunebench.record import FINISHED, RunRecord, problem


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO]:
    """A stream whose content appears at ``path`` whole, or not at all, when the block ends without error.

    Written to a temporary file in the same directory, flushed to disk, then renamed over ``path``; the file gets
    the usual permissions (``0o666`` less the umask), not the temporary file's private ones.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, mode) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    with atomic_file(path) as stream:
        stream.write(text)


class ResultStore:
    """Records of the runs in one output directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.runs = self.root / "runs"

    def ensure_writable(self) -> None:
        """Create the directory, or raise a :class:`UsageError` saying why it cannot be written."""
        try:
            self.runs.mkdir(parents=True, exist_ok=True)
            probe = self.runs / ".write-probe"
            probe.write_text("")
            probe.unlink()
        except OSError as error:
            raise UsageError(f"cannot write results to {self.root}: {error.strerror or error}") from None

    def path(self, run_id: str) -> Path:
        return self.runs / f"{run_id}.json"

    def load(self, run_id: str) -> Any:
        """The parsed JSON of the run's record, or ``None`` when there is none or it does not parse."""
        try:
            return json.loads(self.path(run_id).read_text())
        except (OSError, ValueError):
            return None

    def is_finished(self, run_id: str) -> bool:
        """Whether the run has a usable record (the leaderboard reads it) of a finished run."""
        record = self.load(run_id)
        return problem(record) is None and record["status"] in FINISHED

    def save(self, record: RunRecord) -> Path:
        """Write ``record`` atomically; a record that breaks its declaration is a harness bug and raises."""
        reason = problem(record)
        if reason is not None:
            raise ValueError(f"refusing to write run {record.get('run_id')}: {reason}")
        path = self.path(record["run_id"])
        atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True, default=str))
        return path
