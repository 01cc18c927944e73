"""Files written whole or not at all: to a temporary file in the same directory, then renamed over the final name.

A crash or Ctrl-C never leaves a half-written file. Temporary files are named after their writer
(``.<name>.<pid>@<host>.<random>.tmp``), so that a later run can tell one left by a killed writer from one being
written: :func:`remove_stale_temporaries` removes those whose writer is gone, or that nobody has written for
:data:`STALE_AFTER_S`. A write that fails (a full disk) is a :class:`~prunebench.core.errors.WriteError` naming the file.
Used by the results store, the saved masks, the checkpoints, the data cache and the leaderboard.
"""

from __future__ import annotations

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

from prunebench.core.errors import DISK_FULL_ERRNOS, WriteError

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
    disk) removes the temporary file and raises a :class:`~prunebench.core.errors.WriteError` naming ``path``.
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
    :class:`~prunebench.core.errors.WriteError` that names both, with the size that did not fit."""
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
