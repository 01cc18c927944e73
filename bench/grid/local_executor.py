"""The local executor: a grid's runs in several worker processes (``bench run --jobs N``, ``--devices``).

Each worker is a process of its own (``python -m prunebench.grid.local_worker``) running the same claim loop as every other
runner (:mod:`prunebench.grid.scheduler`) on one device, and writing its records itself; the parent only starts the
workers, shows their progress, and stops them. So:

* a worker that is killed (the out-of-memory killer) loses only its run in progress, which another worker takes
  over from its checkpoint (its claim names a dead process); the others' records are already on disk. The parent
  starts a replacement on the same device (as many replacements in all as there are workers);
* a parent that dies (``kill -9``) takes its workers with it: each asks the kernel for SIGTERM when its parent dies
  (``PR_SET_PDEATHSIG`` on Linux) and also watches its parent's pid, then checkpoints and exits;
* SIGINT or SIGTERM to the parent is forwarded to the workers as SIGTERM: each checkpoints its run at the next
  step boundary and exits; the parent then exits with a message (status 130 or 143).

No process pool, queue or semaphore is shared: a worker's stdin carries its orders (pickled), its stdout one JSON
line per event. CPU workers use ``cpus // workers`` intra-op threads each (recorded in every record).
"""

from __future__ import annotations

import json
import pickle
import queue
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from prunebench.core.environment import available_cpus
from prunebench.core.errors import Failed, grid_stopped
from prunebench.grid.result_store import ResultStore
from prunebench.grid.scheduler import GridReporter, RunnerSettings, pretrainings
from prunebench.run.run_checkpoint import STOP, RunInterrupted, stop_on_signals
from prunebench.run.run_config import RunConfig

INTERRUPTED_STATUS = 3
"""A worker's exit status when it stopped on request after checkpointing its run."""

DISK_FULL_STATUS = 4
"""A worker's exit status when a write found the disk full (its ``disk_full`` event says which file): the grid
stops, since every run after it would fail the same way."""


@dataclass
class WorkerOrders:
    """What a worker process is told on its stdin."""

    todo: list[RunConfig]
    out: str
    device: str
    threads: int
    options: object
    settings: RunnerSettings
    since: float
    """When the invocation started (:class:`~prunebench.grid.scheduler.Runner`): the same for every worker, a
    replacement started late included, so that none executes again a run finished since."""


def worker_threads(devices: Sequence[torch.device]) -> int:
    """Intra-op threads of each worker: the CPUs shared among the CPU workers (all of them for GPU workers,
    whose CPU work is small)."""
    on_cpu = sum(d.type == "cpu" for d in devices)
    return max(1, available_cpus() // on_cpu) if on_cpu else torch.get_num_threads()


def _read_events(index: int, stream, events: queue.Queue) -> None:
    for line in stream:
        try:
            events.put((index, json.loads(line)))
        except ValueError:
            continue
    events.put((index, None))


class _Workers:
    """The worker processes of one grid, their event stream and what they reported."""

    def __init__(
        self, todo, store: ResultStore, options, settings: RunnerSettings, since: float, threads: int
    ):
        self.todo, self.store, self.threads = list(todo), store, threads
        self.options, self.settings, self.since = options, settings, since
        self.by_id = {c.run_id: c for c in self.todo}
        self.pretrainings = {job.key: job for job in pretrainings(self.todo)}
        self.events: queue.Queue = queue.Queue()
        self.processes: list[subprocess.Popen] = []
        self.placed: list[torch.device] = []
        self.records: list[dict] = []
        self.reported: set[str] = set()
        self.disk_full: str | None = None

    def start(self, device: torch.device) -> None:
        """Start one worker on ``device`` with the grid's orders on its stdin."""
        process = subprocess.Popen(
            [sys.executable, "-m", "prunebench.grid.local_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        orders = WorkerOrders(
            self.todo,
            str(self.store.root),
            str(device),
            self.threads,
            self.options,
            self.settings,
            self.since,
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(pickle.dumps(orders))
        process.stdin.close()
        index = len(self.processes)
        threading.Thread(target=_read_events, args=(index, process.stdout, self.events), daemon=True).start()
        self.processes.append(process)
        self.placed.append(device)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def ended(self, index: int, replacements: int) -> int:
        """Worker ``index``'s stream ended: warn of an abnormal end and start a replacement while runs are left (a
        grid outlives a few killed workers); return the replacements left."""
        status = self.processes[index].wait()
        if status in (0, INTERRUPTED_STATUS, DISK_FULL_STATUS):
            return replacements
        how = f"signal {-status}" if status < 0 else f"status {status}"
        warnings.warn(f"worker {index} ({self.placed[index]}) ended with {how}", stacklevel=3)
        if not (STOP or self.disk_full) and replacements and set(self.by_id) - set(self.store.record_names()):
            self.start(self.placed[index])
            return replacements - 1
        return replacements

    def forward(self, event: dict, reporter: GridReporter) -> None:
        """Hand one worker event to ``reporter`` (each run's end once: every worker reports each run)."""
        kind = event["event"]
        if kind == "disk_full":
            self.disk_full = self.disk_full or event["message"]
        elif kind == "pretraining":
            if event["key"] in self.pretrainings:
                reporter.pretraining_started(self.pretrainings[event["key"]])
        elif kind == "started":
            reporter.run_started(self.by_id[event["run_id"]])
        elif kind == "epoch":
            reporter.epoch_done(event["phase"], event["epoch"], event["epochs"], event["loss"])
        elif kind == "finished":
            if event["record"] is not None:
                self.records.append(event["record"])
            if event["run_id"] not in self.reported:
                self.reported.add(event["run_id"])
                reporter.run_finished(self.by_id[event["run_id"]], event["record"])

    def supervise(self, reporter: GridReporter, replacements: int) -> list[int]:
        """Forward events until every worker's stream has ended (SIGTERM to all on a stop or a full disk); return
        the workers' exit statuses."""
        open_streams, forwarded = len(self.processes), False
        while open_streams:
            if (STOP or self.disk_full) and not forwarded:
                self.stop_all()
                forwarded = True
            try:
                index, event = self.events.get(timeout=0.2)
            except queue.Empty:
                continue
            if event is not None:
                self.forward(event, reporter)
                continue
            before = len(self.processes)
            replacements = self.ended(index, replacements)
            open_streams += len(self.processes) - before - 1
        return [process.wait() for process in self.processes]


def run_in_workers(
    todo: Sequence[RunConfig],
    store: ResultStore,
    devices: Sequence[torch.device],
    *,
    reporter: GridReporter,
    options=None,
    settings: RunnerSettings | None = None,
    since: float | None = None,
) -> list[dict]:
    """Run ``todo`` with one worker per entry of ``devices``; return the records the workers wrote.

    ``since``: when the invocation started (taken before ``todo`` was made; ``None``: now)."""
    since = store.clock() if since is None else since
    workers = _Workers(todo, store, options, settings or RunnerSettings(), since, worker_threads(devices))
    with stop_on_signals():
        for device in devices:
            workers.start(device)
        statuses = workers.supervise(reporter, replacements=len(devices))
    if workers.disk_full:
        raise grid_stopped(workers.disk_full)
    if STOP:
        raise RunInterrupted(f"stopped ({STOP.reason}); the workers checkpointed their runs")
    dead = [status for status in statuses if status not in (0, INTERRUPTED_STATUS)]
    done = set(store.record_names())
    left = [c for c in todo if c.run_id not in done]
    if left:
        raise Failed(
            f"{len(left)} run(s) left undone: every worker ended ({len(dead)} of {len(statuses)} abnormally); "
            "rerun to resume them"
        )
    return workers.records
