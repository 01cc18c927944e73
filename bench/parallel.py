"""Running a grid's runs in several worker processes (``bench run --jobs N``).

Runs are independent pure functions of their configs, so they parallelize trivially; the one thing they share is the
dense pre-training of after-training methods, which the workers compute first (once per seed) so that no two workers
train the same one. Workers are spawned (not forked) and each uses ``cores // jobs`` intra-op threads on the CPU.
Records are written by the parent, atomically, as runs finish. Results are identical to a serial run with the same
thread count; across thread counts floating-point reductions may differ in the last bits.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, as_completed, wait
from pathlib import Path

import torch

from prunebench.config import RunConfig, dense_pretrain_key
from prunebench.results import ResultStore
from prunebench.runner import (
    GridReporter,
    RunOptions,
    dense_pretrained,
    make_loaders,
    needs_dense_pretraining,
    run_or_record_failure,
)


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _pretrain(config: RunConfig, device: torch.device, cache_dir: Path, options: RunOptions | None) -> None:
    dense_pretrained(config, device, make_loaders(config, device, options), cache_dir, None, options)


def run_in_workers(
    todo: Sequence[RunConfig],
    store: ResultStore,
    device: torch.device,
    jobs: int,
    *,
    reporter: GridReporter,
    options: RunOptions | None = None,
) -> list[dict]:
    """Run ``todo`` in ``jobs`` processes; save and return the records as they finish."""
    threads = max(1, (os.cpu_count() or 1) // jobs) if device.type == "cpu" else torch.get_num_threads()
    cache_dir = store.root / "cache"
    shared = {dense_pretrain_key(c): c for c in todo if needs_dense_pretraining(c)}
    records = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker, initargs=(threads,)) as pool:
        try:
            pretraining = [pool.submit(_pretrain, c, device, cache_dir, options) for c in shared.values()]
            wait(
                pretraining, return_when=FIRST_EXCEPTION
            )  # a failed pre-training fails its runs, recorded below
            futures = {
                pool.submit(run_or_record_failure, c, device, cache_dir, None, options): c for c in todo
            }
            for future in as_completed(futures):
                record = future.result()
                store.save(record)
                records.append(record)
                reporter.run_finished(futures[future], record)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return records
