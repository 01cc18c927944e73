"""Writing ``.beton`` files with FFCV, atomically and with a rich progress bar."""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn


class _Counted:
    """``dataset`` whose reads are counted in shared memory (the writer's worker processes are forked)."""

    def __init__(self, dataset: Any, counter: Any) -> None:
        self.dataset = dataset
        self.counter = counter

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        item = self.dataset[index]
        with self.counter.get_lock():
            self.counter.value += 1
        return item


@contextlib.contextmanager
def _rich_progress(description: str, total: int, counter: Any) -> Iterator[None]:
    """Show ``counter`` against ``total`` with rich while the body runs; FFCV's own tqdm bar is switched off."""
    import ffcv.writer

    stop = threading.Event()
    original_tqdm = ffcv.writer.tqdm
    ffcv.writer.tqdm = functools.partial(original_tqdm, disable=True)
    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress("{task.description}", *columns, transient=False) as progress:
        task = progress.add_task(description, total=total)

        def poll() -> None:
            while not stop.wait(0.2):
                progress.update(task, completed=counter.value)

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join()
            ffcv.writer.tqdm = original_tqdm
            progress.update(task, completed=counter.value)


def write_beton(
    path: Path, dataset: Any, fields: Mapping[str, Any], *, num_workers: int, description: str = ""
) -> Path:
    """Write ``dataset`` (indexable, items are tuples in the order of ``fields``) to ``path``, atomically.

    The file is written under a temporary name beside ``path`` and renamed at the end: an interrupted write leaves
    no file that looks complete.
    """
    from ffcv.writer import DatasetWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
    counter = multiprocessing.get_context("fork").Value("Q", 0)
    try:
        writer = DatasetWriter(str(temporary), dict(fields), num_workers=num_workers)
        with _rich_progress(description or path.name, len(dataset), counter):
            writer.from_indexed_dataset(_Counted(dataset, counter), chunksize=100)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path
