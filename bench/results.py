"""The results store: one JSON record per run under ``<out>/runs/<run_id>.json``, written atomically.

A record is written to a temporary file in the same directory and renamed over the final name, so a crash or Ctrl-C
never leaves a half-written record: a record exists complete or not at all. Finished runs are skipped by a rerun.

Temporary files are named after their writer (``.<name>.<pid>@<host>.<random>.tmp``), so that a later run can tell
one left by a killed writer from one being written: :func:`remove_stale_temporaries` removes those whose writer is
gone, or that nobody has written for :data:`STALE_AFTER_S`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from prunebench.errors import DISK_FULL_ERRNOS, UsageError, WriteError
from prunebench.record import RunRecord, problem

STALE_AFTER_S = 3600.0
"""A temporary file that nobody has written for this long is left over from an interrupted write (a live writer
modifies its file continuously, so its modification time stays recent)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def writer_tag() -> str:
    """``<pid>@<host>``: the process that writes a temporary file, part of the file's name."""
    return f"{os.getpid()}@{_host()}"


_TAG = re.compile(r"\.(\d+)@([A-Za-z0-9-]+)\.")


def _writer_gone(name: str) -> bool:
    """Whether the temporary file ``name`` was written by a process of this host that no longer exists."""
    match = _TAG.search(name)
    if match is None or match.group(2) != _host():
        return False
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # another user's live process, or not a pid at all
        return False
    return False


def _size(total: float) -> str:
    """``total`` bytes, readably: ``512 bytes``, ``977.3 MB``."""
    if total < 1000:
        return f"{total:.0f} bytes"
    for unit in ("kB", "MB"):
        total /= 1000
        if total < 1000:
            return f"{total:.1f} {unit}"
    return f"{total / 1000:.1f} GB"


def remove_stale_temporaries(directories: Iterable[Path], suffix: str) -> list[Path]:
    """Remove the temporary files ``.*<suffix>`` in ``directories`` that are stale, and say so in one warning.

    Stale: its writer (named in the file name) was a process of this host that is gone, or nobody has written the
    file for :data:`STALE_AFTER_S`. A file another live process is writing is never stale. Returns the removed paths.
    """
    removed, total, now = [], 0, time.time()
    for directory in directories:
        for path in sorted(Path(directory).glob(f".*{suffix}")):
            try:
                status = path.stat()
                if not (now - status.st_mtime > STALE_AFTER_S or _writer_gone(path.name)):
                    continue
                path.unlink()
            except OSError:  # gone meanwhile, or not ours to remove: leave it
                continue
            removed.append(path)
            total += status.st_size
    if removed:
        where = ", ".join(sorted({str(p.parent) for p in removed}))
        warnings.warn(
            f"removed {len(removed)} stale temporary file(s) ({_size(total)}) left by interrupted writes in {where}",
            stacklevel=2,
        )
    return removed


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (the new name is in the directory's own data on disk)."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


@contextmanager
def atomic_file(path: Path, mode: str = "w", *, durable: bool = True) -> Iterator[IO]:
    """A stream whose content appears at ``path`` whole, or not at all, when the block ends without error.

    Written to a temporary file in the same directory (named after its writer, see :func:`writer_tag`), flushed to
    disk, renamed over ``path``, and the directory synced so that the rename survives a power cut. The file gets the
    usual permissions (``0o666`` less the umask), not the temporary file's private ones. A failure to write (a full
    disk) removes the temporary file and raises a :class:`~prunebench.errors.WriteError` naming ``path``.
    ``durable=False`` skips the syncs: a killed process still leaves the old file or the new one, whole; only a
    power cut may not (for files that are checked on load and can be recomputed, such as checkpoints).
    """
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.{writer_tag()}.", suffix=".tmp"
        )
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, mode) as stream:
            yield stream
            stream.flush()
            if durable:
                os.fsync(stream.fileno())
        os.replace(temporary, path)
        temporary = None
        if durable:
            fsync_directory(path.parent)
    except OSError as error:
        failure = WriteError(error.errno, error.strerror or str(error), str(path))
        if error.errno in DISK_FULL_ERRNOS:
            failure.detail = _space_left(path.parent)
        raise failure from None
    finally:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)


def _space_left(directory: Path) -> str:
    """`` (12.3 kB free)``: what is left on ``directory``'s file system, for a full disk's message."""
    try:
        return f" ({_size(shutil.disk_usage(directory).free)} free)"
    except OSError:
        return ""


def atomic_save_tensors(data: Any, path: Path, *, durable: bool = True) -> None:
    """``torch.save(data)`` to ``path`` through :func:`atomic_file`, serialized in memory first: torch's own writer
    turns a full disk into an error that names neither the file nor the cause, while a plain write raises the
    :class:`~prunebench.errors.WriteError` that names both, with the size that did not fit."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(data, buffer)
    try:
        with atomic_file(path, "wb", durable=durable) as stream:
            stream.write(buffer.getbuffer())
    except WriteError as error:
        if error.errno in DISK_FULL_ERRNOS:
            error.detail = f" (needs {_size(buffer.getbuffer().nbytes)};{error.detail[1:]}"
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
        """Where runs in progress keep their checkpoints (:mod:`prunebench.checkpoint`)."""
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

        Usable is what the leaderboard reads (:func:`prunebench.record.problem`): a run whose record it would skip
        is never counted as finished; it is run again."""
        path = self.path(run_id)
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            return None, None
        except (OSError, UnicodeDecodeError, ValueError) as error:
            return None, f"not a readable record ({type(error).__name__}: {error})"
        reason = problem(record)
        if reason is None and record["run_id"] != run_id:
            reason = f"holds run {record['run_id']}, not {run_id}"
        return (None, reason) if reason else (record, None)

    def remove_stale_temporaries(self) -> list[Path]:
        """Remove the temporary files that interrupted writes left here (see :func:`remove_stale_temporaries`)."""
        return remove_stale_temporaries(
            [self.root, self.runs, self.root / "cache", self.root / "plots", self.checkpoints], ".tmp"
        )

    def save(self, record: RunRecord) -> Path:
        """Write ``record`` atomically; a record that breaks its declaration is a harness bug and raises.

        A run's packed mask, handed over under :data:`~prunebench.saved_masks.MASK_KEY`, is written first
        (:mod:`prunebench.saved_masks`), so that a record never exists without its mask; it is taken out of
        ``record``, which the caller keeps as written."""
        from prunebench.saved_masks import MASK_KEY, mask_path, write_mask

        packed = record.pop(MASK_KEY, None)  # type: ignore[misc]
        reason = problem(record)
        if reason is not None:
            raise ValueError(f"refusing to write run {record.get('run_id')}: {reason}")
        if packed is not None:
            write_mask(mask_path(self.root, record["run_id"]), packed)
        path = self.path(record["run_id"])
        atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True, default=str))
        return path
