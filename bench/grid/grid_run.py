"""``bench run``'s grid in this process or its local workers: plan the invocation, then run the work loop.

The layer above the work loop (:mod:`prunebench.grid.scheduler`) and the local executor
(:mod:`prunebench.grid.local_executor`): it starts the invocation (its clock, the finished runs, the leftover
checkpoints), orders the allocation controls after their sources, and hands the runs to one runner here or to
``jobs`` worker processes.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from prunebench.core.errors import grid_stopped, is_disk_full
from prunebench.grid.local_executor import run_in_workers
from prunebench.grid.result_store import ResultStore
from prunebench.grid.scheduler import (
    GridReporter,
    Runner,
    RunnerSettings,
    set_deterministic,
    start_invocation,
    with_batch_order,
)
from prunebench.run.allocation_controls import controls_last
from prunebench.run.run_checkpoint import stop_on_signals
from prunebench.run.run_config import RunConfig
from prunebench.run.run_context import RunOptions, dense_cache
from prunebench.run.schedule_plans import needs_dense_pretraining


def run_grid(
    configs: Sequence[RunConfig],
    store: ResultStore,
    device: torch.device,
    *,
    force: bool = False,
    reporter: GridReporter | None = None,
    options: RunOptions | None = None,
    jobs: int = 1,
    devices: Sequence[torch.device] | None = None,
    settings: RunnerSettings | None = None,
) -> list[dict]:
    """Run every configuration not finished yet (all with ``force``); return the records of this invocation.

    A failing run is recorded with its error and the grid goes on. Runs are claimed
    (:mod:`prunebench.grid.scheduler`), so other ``bench run`` processes and Slurm tasks may work on the same
    directory. SIGINT or SIGTERM stops the run in progress at its next step boundary, with a checkpoint, and raises
    :class:`~prunebench.run.run_checkpoint.RunInterrupted`; finished records stay, and a rerun resumes.
    With ``jobs > 1`` the runs go to that many worker processes on ``device``, and with ``devices`` to one worker
    per entry (:mod:`prunebench.grid.local_executor`).
    """
    reporter = reporter or GridReporter()
    store.ensure_writable()
    store.remove_stale_temporaries()
    invocation = start_invocation(configs, store, force)
    since, todo = invocation.since, invocation.todo
    settings = with_batch_order(settings, configs)
    reporter.grid_started(len(configs), len(invocation.finished))
    for config in invocation.finished:
        reporter.run_finished(config, None)
    cache_dir = store.root / "cache"
    if force:  # a pre-training remembered as diverged is trained again
        for config in filter(needs_dense_pretraining, todo):
            dense_cache(config, cache_dir)[1].unlink(missing_ok=True)
    todo = list(
        itertools.chain.from_iterable(controls_last(todo))
    )  # allocation controls after the runs they read
    workers = list(devices) if devices is not None else [device] * jobs
    if len(workers) > 1 and todo:
        return run_in_workers(
            todo, store, workers, reporter=reporter, options=options, settings=settings, since=since
        )
    set_deterministic((settings or RunnerSettings()).deterministic)
    with stop_on_signals():
        runner = Runner(
            todo, store, workers[0], reporter=reporter, options=options, settings=settings, since=since
        )
        try:
            return runner.run()
        except OSError as error:
            if is_disk_full(error):
                raise grid_stopped(error) from None
            raise
