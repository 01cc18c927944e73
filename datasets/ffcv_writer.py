"""Writing ``.beton`` files with FFCV's writer processes, with a rich progress bar, failing promptly and cleanly.

FFCV's ``DatasetWriter`` forks worker processes that read and encode the items, then waits for them by polling a
counter: a worker that raises (a corrupt image) dies with a traceback while the parent waits forever, and Ctrl-C
leaves the workers' tracebacks and FFCV's shared memory behind. :func:`write_beton` runs the same steps (FFCV's
``prepare``, its worker job, its ``finalize``) but watches the workers: the first failure in one is raised in the
parent, naming the item that caused it, and Ctrl-C is the parent's alone (the workers ignore it). On any failure
the workers are stopped, the shared memory is released and the file is removed; a parent killed outright takes its
workers with it.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import queue
import signal
import sys
from collections.abc import Mapping, Sequence
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

from prunebench.core.errors import Failed, UsageError
from prunebench.core.lifetime import set_parent_death_signal

CHUNK = 100
"""Items a worker takes from the queue at a time (FFCV's default)."""


class _Checked:
    """``dataset`` whose items that cannot be read raise a :class:`UsageError` naming them (their file, where the
    dataset has ``describe(index)``), and which remembers the last item read, to name one that cannot be encoded."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.last: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def describe(self, index: int) -> str:
        describe = getattr(self.dataset, "describe", None)
        return describe(index) if describe is not None else f"item {index}"

    def __getitem__(self, index: int) -> Any:
        self.last = int(index)
        try:
            return self.dataset[index]
        except Exception as error:  # noqa: BLE001  (any failure to read an item means the item is unusable)
            raise UsageError(
                f"{self.describe(index)}: cannot be read ({type(error).__name__}: {error})"
            ) from None


def _work(failures: Any, job: Any, args: Sequence[Any], parent: int) -> None:
    """One writer process: FFCV's ``job(*args)``; a failure goes to the parent as one exception, without a
    traceback. Ctrl-C (sent to the whole process group) is left to the parent, which stops the workers. A parent
    that dies (``kill -9``) takes the worker with it (the kernel's parent-death signal), so that no writer is left
    waiting for work and the shared memory is released by multiprocessing's resource tracker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent stops its writers so, not with its own handler
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)
    try:
        job(*args)
    except BaseException as error:  # noqa: BLE001  (whatever it is, the parent reports it)
        dataset: _Checked = args[-1]
        if isinstance(error, OSError):  # writing the file: a full disk
            error = OSError(error.errno, error.strerror or str(error))
        elif not isinstance(error, UsageError):  # encoding the last item read
            item = dataset.describe(dataset.last) if dataset.last is not None else "an item"
            error = UsageError(f"{item}: cannot be written ({type(error).__name__}: {error})")
        failures.put(error)
        sys.exit(1)


def _wait(
    processes: list[Any], allocations: Any, failures: Any, done: Any, total: int, description: str
) -> list[Any]:
    """The allocation table of every worker, once all are done; the first failure of one is raised here."""
    tables: list[Any] = []
    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress("{task.description}", *columns, transient=False) as progress:
        task = progress.add_task(description, total=total)
        while len(tables) < len(processes):
            if not failures.empty():
                raise failures.get()
            try:
                tables.append(allocations.get(timeout=0.1))
            except queue.Empty:
                dead = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
                if dead and failures.empty():
                    raise Failed(
                        f"a writer process died (exit code {dead[0]}) while writing {description}"
                    ) from None
            progress.update(task, completed=done.value)
        progress.update(task, completed=done.value)
    return tables


def write_beton(
    path: Path, dataset: Any, fields: Mapping[str, Any], *, num_workers: int, description: str = ""
) -> Path:
    """Write ``dataset`` (indexable, items are tuples in the order of ``fields``) to ``path``.

    An item that cannot be read or encoded raises a :class:`UsageError` naming it; a worker that dies raises
    :class:`~prunebench.core.errors.Failed`; a full disk raises ``OSError``. On any failure, Ctrl-C included, ``path``
    is removed and no writer process or shared memory is left behind.
    """
    from ffcv.memory_allocator import MemoryAllocator
    from ffcv.utils import chunks
    from ffcv.writer import DatasetWriter, worker_job_indexed_dataset

    path.parent.mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("fork")  # the workers inherit the dataset, as FFCV's own do
    checked = _Checked(dataset)
    writer = DatasetWriter(str(path), dict(fields), num_workers=num_workers)
    writer.num_samples = len(checked)
    processes: list[Any] = []
    work, allocations, failures = context.Queue(), context.Queue(), context.SimpleQueue()
    try:
        writer.prepare()  # the header, and the shared memory of the samples' metadata
        for chunk in chunks(list(enumerate(range(len(checked)))), CHUNK):
            work.put(chunk)
        for _ in range(writer.num_workers):
            work.put(None)
        done = context.Value(ctypes.c_uint64, 0)
        allocator = MemoryAllocator(writer.fname, writer.data_region_start, writer.page_size)
        args = (
            work,
            writer.metadata_sm,
            writer.metadata_type,
            writer.fields,
            allocator,
            done,
            allocations,
            checked,
        )
        processes = [
            context.Process(
                target=_work, args=(failures, worker_job_indexed_dataset, args, os.getpid()), daemon=True
            )
            for _ in range(writer.num_workers)
        ]
        for process in processes:
            process.start()
        tables = _wait(processes, allocations, failures, done, len(checked), description or path.name)
        writer.finalize([allocation for table in tables for allocation in table])
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()
        work.cancel_join_thread()  # chunks left for stopped workers must not hold up the exit
        shared = getattr(writer, "metadata_sm", None)
        if isinstance(shared, shared_memory.SharedMemory):  # absent if prepare() failed before creating it
            shared.close()
            shared.unlink()
    return path
