"""A runner's work loop: claim the grid's runs one at a time, execute them, write their records.

Every runner (``bench run`` with ``--jobs 1``, each of its local worker processes, each Slurm task) runs the same
loop over the same grid and the same results directory; claims (:mod:`prunebench.grid.claims`) make sure each run is
executed once, whatever the number of runners and wherever they run:

1. One listing of ``<out>/runs`` per pass says which runs have a record (no per-run file check, so a pass is linear
   in the grid's size).
2. The shared dense pre-trainings the runs start from are jobs of the grid of their own (:class:`Pretraining`,
   planned by :func:`pretrainings`), taken first: each is claimed under its cache key and computed once, by one
   runner, into the cache; the others go on with other jobs and come back to it. A run is taken when its
   prerequisites are done (:func:`prerequisites`: other runs whose results it needs) and its pre-training, if it
   starts from one, is cached (or has failed, which its record then says).
3. The run is claimed, checked again (another runner may have finished it meanwhile), executed with its checkpoint
   (resumed if a previous runner left one) while the claim's heartbeat runs, and its record written; then the
   checkpoint and the claim are removed.
4. When nothing can be taken, the runner waits (``poll_s``) for runs that others hold, so that it takes over the
   runs of a runner that died; it returns when every run of the grid has a record written during this
   invocation or before it.

An invocation starts when its grid is planned (``bench run``, ``bench run --executor slurm``), at ``since``: the
results directory's own time then (:meth:`~prunebench.grid.result_store.ResultStore.clock`). A run whose record was written at
or after ``since`` counts as handled, by whichever runner wrote it, failed or not; a failed run is retried by the
next invocation (resume). Every runner of the invocation is handed the same ``since``, however late it starts: a
replacement worker, a requeued Slurm task, a worker that starts after others have finished runs. So none of them
executes a run again that another finished after the grid was planned.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from prunebench.core.environment import describe_device
from prunebench.core.errors import is_disk_full
from prunebench.core.hashing import stable_hash
from prunebench.grid.claims import DEFAULT_HEARTBEAT_S, DEFAULT_STALE_AFTER_S, Claim, ClaimStore
from prunebench.grid.result_store import ResultStore
from prunebench.run.allocation_controls import source_run_id
from prunebench.run.run_checkpoint import STOP, CheckpointPolicy, ClaimLost, RunCheckpoint, RunInterrupted
from prunebench.run.run_config import RunConfig, dense_pretrain_key
from prunebench.run.run_context import RunContext, RunOptions, dense_cache
from prunebench.run.run_record import FINISHED
from prunebench.run.runner import run_or_record_failure
from prunebench.run.schedule_plans import needs_dense_pretraining
from prunebench.run.source_fingerprint import stale_source_warnings
from prunebench.run.trainer import Diverged


def prerequisites(config: RunConfig) -> list[str]:
    """The run ids whose records ``config`` needs before it can start: an allocation control needs its source run's
    saved mask (:func:`~prunebench.run.allocation_controls.source_run_id`). The shared dense pre-training is handled apart, as a
    job of the grid (:class:`Pretraining`)."""
    return [source_run_id(config)] if config.control else []


@dataclass(frozen=True)
class RunnerSettings:
    """How a runner works; none of this enters a run's id."""

    checkpoint: CheckpointPolicy = field(default_factory=CheckpointPolicy)
    stale_after_s: float = DEFAULT_STALE_AFTER_S
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    poll_s: float = 2.0
    deterministic: bool = False
    batch: int | None = 1
    """Runs executed together by the batched engine (:mod:`prunebench.run.batched_engine`); ``None``: the
    automatic size for the run's model and device (:func:`prunebench.run.batch_size.auto_batch`); 1: each alone."""
    batch_order: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    """Each run's place in the sequence its batches are cut from (:func:`batch_order`, of the whole grid, set by
    :func:`with_batch_order`); empty: the runner orders the runs it was given."""


def with_batch_order(settings: RunnerSettings | None, configs: Sequence[RunConfig]) -> RunnerSettings:
    """``settings`` with the :func:`batch_order` of the grid ``configs`` (finished runs included), where runs are
    batched, so that every runner of the grid cuts the same batches."""
    settings = settings or RunnerSettings()
    if settings.batch == 1:
        return settings
    return dataclasses.replace(settings, batch_order=batch_order(configs))


def set_deterministic(enabled: bool) -> None:
    """``--deterministic``: PyTorch's deterministic algorithms (an error for an operation that has none) and
    cuDNN's deterministic, non-benchmarking mode. Set before CUDA starts (cuBLAS reads its workspace setting then)."""
    if not enabled:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


class GridReporter:
    """Callbacks of a grid run (the CLI shows them with rich); every one is a no-op by default."""

    def grid_started(self, total: int, skipped: int) -> None: ...

    def pretraining_started(self, job: Pretraining) -> None: ...

    def run_started(self, config: RunConfig) -> None: ...

    def epoch_done(self, phase: str, epoch: int, epochs: int, loss: float) -> None: ...

    def run_finished(self, config: RunConfig, record: dict | None) -> None:
        """``record`` is ``None`` when the run was skipped as already finished."""


@dataclass(frozen=True)
class Pretraining:
    """The shared dense pre-training of a (dataset, model, seed, recipe), a job of the grid: computed once, by the
    runner that claims it, into the cache every run that starts from it reads (``config``: the first such run)."""

    key: str
    config: RunConfig

    @property
    def name(self) -> str:
        """The job's claim and checkpoint name (the cache file's stem)."""
        return f"dense-{self.key}"

    @property
    def label(self) -> str:
        c = self.config
        return f"dense pre-training of {c.dataset} / {c.model}, seed {c.seed} ({c.recipe.pretrain_epochs} epochs)"


def _pretraining_key(config: RunConfig) -> str | None:
    """The key of the pre-training ``config`` starts from, or ``None`` (none, or a method this process cannot
    build: the run then records why)."""
    try:
        return dense_pretrain_key(config) if needs_dense_pretraining(config) else None
    except Exception:  # noqa: BLE001
        return None


def pretrainings(
    configs: Sequence[RunConfig], keys: dict[str, str | None] | None = None
) -> list[Pretraining]:
    """The distinct dense pre-trainings the runs of ``configs`` start from, in the order of their first run
    (``keys``: each run's pre-training key by run id, where the caller has them)."""
    keys = {c.run_id: _pretraining_key(c) for c in configs} if keys is None else keys
    jobs: dict[str, Pretraining] = {}
    for config in configs:
        key = keys[config.run_id]
        if key is not None and key not in jobs:
            jobs[key] = Pretraining(key, config)
    return list(jobs.values())


@dataclass(frozen=True)
class Invocation:
    """A grid as one ``bench run`` (or Slurm submission) starts it: ``since``, the results directory's time before
    its records were read (see the module docstring), the runs to execute and those already finished (skipped)."""

    since: float
    todo: list[RunConfig]
    finished: list[RunConfig]


def start_invocation(configs: Sequence[RunConfig], store: ResultStore, force: bool) -> Invocation:
    """Take the invocation's ``since``, then sort ``configs`` into the runs to execute and those finished (all to
    execute with ``force``), reading only the records that exist (one directory listing); remove the checkpoints
    finished runs left (:func:`remove_leftover_checkpoints`); warn, in one line each, of the records that cannot be
    used (they are run again) and of finished records written by other source under the same version
    (:func:`~prunebench.run.source_fingerprint.stale_source_warnings`)."""
    since = store.clock()  # before the records are read: whatever is written after is this invocation's
    present = store.record_names()
    todo, finished, unusable, records = [], [], [], []
    for config in configs:
        record, reason = store.read(config.run_id) if config.run_id in present else (None, None)
        if reason is not None:
            unusable.append(f"{store.path(config.run_id)}: {reason}")
        if not force and record is not None and record["status"] in FINISHED:
            finished.append(config)
            records.append(record)
        else:
            todo.append(config)
    remove_leftover_checkpoints(store, finished)
    if unusable:
        first = unusable[0] if len(unusable) == 1 else f"the first, {unusable[0]}"
        warnings.warn(f"{len(unusable)} record(s) could not be used and are run again: {first}", stacklevel=2)
    for message in stale_source_warnings(zip(finished, records, strict=True)):
        warnings.warn(message, stacklevel=2)
    return Invocation(since, todo, finished)


def remove_leftover_checkpoints(store: ResultStore, finished: Sequence[RunConfig]) -> int:
    """Remove the checkpoints of finished runs (their runner died between writing the record and removing the
    checkpoint), each under the run's claim so that no live runner's file is touched; return how many.

    One listing of the checkpoints' directory."""
    try:
        present = {path.stem for path in store.checkpoints.glob("*.pt")}
    except OSError:
        return 0
    claims, removed = ClaimStore(store.root), 0
    for config in finished:
        if config.run_id not in present:
            continue
        claim = claims.try_claim(config.run_id)
        if claim is None:
            continue
        with claim:
            store.checkpoint_path(config.run_id).unlink(missing_ok=True)
            removed += 1
    return removed


class Runner:
    """One runner over a grid on a results directory: :meth:`run` claims and executes its jobs until none is left,
    the dense pre-trainings the runs start from first (:class:`Pretraining`), then the runs.

    ``since`` is when the invocation started (:meth:`~prunebench.grid.result_store.ResultStore.clock`, taken before
    ``todo`` was made); ``None``: now, for a runner that is its invocation's only one.

    ``reporter`` receives the :class:`GridReporter` callbacks. A stop request
    (:data:`~prunebench.run.run_checkpoint.STOP`: a signal, a parent process that died, a pre-emption) checkpoints
    the job in progress and raises :class:`RunInterrupted`.
    """

    def __init__(
        self,
        todo: Sequence[RunConfig],
        store: ResultStore,
        device: torch.device,
        *,
        reporter: GridReporter | None = None,
        options: RunOptions | None = None,
        settings: RunnerSettings | None = None,
        since: float | None = None,
    ) -> None:
        self.store = store
        self.device = device
        self.reporter = reporter or GridReporter()
        self.options = options or RunOptions()
        self.settings = settings or RunnerSettings()
        self.claims = ClaimStore(
            store.root, self.settings.stale_after_s, self.settings.heartbeat_s, describe_device(device)
        )
        self.cache_dir = store.root / "cache"
        self.pending = list(todo)
        self.pretraining_of = {config.run_id: _pretraining_key(config) for config in todo}
        """Each run's pre-training key (``None``: it starts from none), worked out once."""
        self.pretrainings = [job for job in pretrainings(todo, self.pretraining_of) if not self._cached(job)]
        """The pre-trainings not cached yet; a run that starts from one of them waits for it."""
        self.since = store.clock() if since is None else since
        """When the invocation started: records written since are this invocation's (see the module docstring)."""
        self.records: list[dict] = []
        self._batch_ids: dict[str, tuple[str, int]] = {}
        self._batch_order = self.settings.batch_order or batch_order(todo)
        self._pretraining_ids: dict[str, tuple[str, int]] = {}
        self._members: dict[tuple[str, int], list[RunConfig]] | None = None

    def _handled(self, config: RunConfig, present: dict[str, float]) -> bool:
        """Whether a runner of this invocation wrote the run's record (since the grid was planned)."""
        mtime = present.get(config.run_id)
        return mtime is not None and mtime >= self.since

    def run(self) -> list[dict]:
        """Execute the pending jobs; return the records this runner wrote."""
        while self.pending:
            if STOP:
                raise RunInterrupted(f"stopped ({STOP.reason}) before claiming another run")
            progressed = self._pretraining_pass()
            progressed = self._run_pass() or progressed
            if not progressed and self.pending:
                time.sleep(self.settings.poll_s)
        return self.records

    def _run_pass(self) -> bool:
        """Execute every pending run that is ready and that no other runner holds, alone or in batches
        (:func:`batch_id`); return whether one was."""
        present = self.store.record_names()
        waiting = {config.run_id for config in self.pending}
        progressed = False
        for config in list(self.pending):
            if STOP:
                break
            if config not in self.pending:  # executed in an earlier batch of this pass
                continue
            if self._handled(config, present):
                self.pending.remove(config)
                self.reporter.run_finished(config, None)
                continue
            if not self._ready(config, present, waiting):
                continue
            if self._batch_size(config) > 1:
                batch = self._batch_of(config, present, waiting)
                if not all(self._ready(c, present, waiting) for c in batch):
                    continue
                executed = self._execute_batch(batch)
            else:
                executed = self._execute(config)
            if not executed:
                continue
            progressed = True  # a run executed: list the records again
            present = self.store.record_names()
        return progressed

    def _batch_size(self, config: RunConfig) -> int:
        """The number of runs ``config`` executes with (``--batch``; ``auto`` by its model and the device)."""
        if self.settings.batch is not None:
            return self.settings.batch
        from prunebench.run.batch_size import auto_batch

        return auto_batch(config, self.device)

    def _batch_of(self, config: RunConfig, present: dict[str, float], pending: set[str]) -> list[RunConfig]:
        """The runs of ``config``'s batch (:func:`batch_id`) still pending (``pending``: their ids) and not finished
        by any runner, ``config`` among them, in their :func:`batch_order`."""
        if self._members is None:  # each batch's runs, indexed once
            self._members = {}
            for run in self.pending:
                self._members.setdefault(self._batch_id(run), []).append(run)
        members = self._members.get(self._batch_id(config), [])
        batch = [c for c in members if c is config or (c.run_id in pending and not self._handled(c, present))]
        return sorted(batch, key=lambda c: self._batch_order[c.run_id][1])  # the order they stack in

    def _batch_id(self, config: RunConfig) -> tuple[str, int]:
        """:func:`batch_id` of ``config`` at its batch size, worked out once per run."""
        if config.run_id not in self._batch_ids:
            place = self._batch_order[config.run_id]
            self._batch_ids[config.run_id] = batch_id(place, self._batch_size(config))
        return self._batch_ids[config.run_id]

    def _ready(self, config: RunConfig, present: dict[str, float], waiting: set[str]) -> bool:
        """Whether the runs ``config`` needs have records (a prerequisite outside the grid is not waited for: the
        run records its absence) and the pre-training it starts from is done."""
        if any(run_id not in present and run_id in waiting for run_id in prerequisites(config)):
            return False
        key = self.pretraining_of[config.run_id]
        return key is None or all(job.key != key for job in self.pretrainings)

    # The shared dense pre-trainings -------------------------------------------------------------------------
    def _cached(self, job: Pretraining) -> bool:
        """Whether ``job`` is done: cached, or remembered as diverged (its runs then record that)."""
        path, marker = dense_cache(job.config, self.cache_dir)
        return path.exists() or marker.exists()

    def _pretraining_pass(self) -> bool:
        """Compute every pre-training not cached that no other runner holds, alone or in batches (the seeds of
        one model and recipe); return whether one was."""
        progressed = False
        for job in list(self.pretrainings):
            if STOP:
                break
            if job not in self.pretrainings:  # computed in an earlier batch of this pass
                continue
            if self._cached(job):
                self.pretrainings.remove(job)
                continue
            size = self._batch_size(job.config)
            own = self._pretraining_batch_id(job, size)
            batch = [job] + [
                other
                for other in self.pretrainings
                if other is not job
                and self._pretraining_batch_id(other, size) == own
                and not self._cached(other)
            ]
            claimed = self._claim_all([(j, j.name) for j in batch])
            if not claimed:
                continue
            self._run_claimed(claimed, self._pretrain_claimed, batched=size > 1)
            for done, _ in claimed:  # done, or failed here: each of its runs then trains it, recording why
                self.pretrainings.remove(done)
            progressed = True
        return progressed

    def _pretraining_batch_id(self, job: Pretraining, size: int) -> tuple[str, int]:
        """:func:`pretraining_batch_id` of ``job``, worked out once per pre-training."""
        if job.key not in self._pretraining_ids:
            self._pretraining_ids[job.key] = pretraining_batch_id(job.config, size)
        return self._pretraining_ids[job.key]

    def _pretrain_claimed(self, job: Pretraining, claim: Claim) -> None:
        if not self._cached(job):
            self._pretrain(job, claim)

    def _pretrain(self, job: Pretraining, claim) -> None:
        checkpoint = RunCheckpoint(
            self.store.checkpoint_path(job.name),
            self.settings.checkpoint,
            lost=lambda: claim.lost,
            device=self.device,
        )
        self.reporter.pretraining_started(job)
        ctx = RunContext(
            job.config, self.device, self.cache_dir, self.options, checkpoint, self.reporter.epoch_done
        )
        try:
            ctx.dense_pretrained(ctx.loaders())
        except Diverged:
            pass  # the marker beside the cache says so; each run records it
        except Exception as error:  # noqa: BLE001  (each run that needs it trains it again and records the error)
            if is_disk_full(error):
                raise  # the grid stops (see run_or_record_failure)
            warnings.warn(f"the {job.label} failed ({type(error).__name__}: {error})", stacklevel=2)
        checkpoint.delete()

    # One run ------------------------------------------------------------------------------------------------
    def _execute(self, config: RunConfig) -> bool:
        """Claim and execute ``config``; ``False`` when another runner holds it."""
        claim = self.claims.try_claim(config.run_id)
        if claim is None:
            return False
        self._execute_claimed(config, claim)
        return True

    def _execute_batch(self, configs: Sequence[RunConfig]) -> bool:
        """Claim ``configs`` and execute those this runner got as one batch of the batched engine; ``False`` when
        other runners hold them all. Each run's record is written when it finishes; a stop request (or a full
        disk) is raised once every run of the batch has stopped."""
        claimed = self._claim_all([(c, c.run_id) for c in configs])
        if not claimed:
            return False
        lead = claimed[0][0]

        def execute(config: RunConfig, claim: Claim) -> None:  # the progress shown is the batch's first run's
            self._execute_claimed(config, claim, reports=config is lead)

        self._run_claimed(claimed, execute, batched=True)
        return True

    @staticmethod
    def _run_claimed(claimed: list[tuple[Any, Claim]], execute, batched: bool) -> None:
        """``execute(job, claim)`` for each claimed job, as one batch of the batched engine (or the one job alone
        when not ``batched``), every claim's heartbeat running from now whichever job's turn it is; the first
        exception a job raised (a stop request, a full disk) is raised once every job of the batch has stopped."""
        from prunebench.run.batched_engine import Batch

        with contextlib.ExitStack() as held:
            for _, claim in claimed:
                held.enter_context(claim)
            if not batched:
                (job, claim), *_ = claimed
                execute(job, claim)
                return
            results = Batch([functools.partial(execute, job, claim) for job, claim in claimed]).run()
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _claim_all(self, jobs: list[tuple[Any, str]]) -> list[tuple[Any, Claim]]:
        """Claim every job of a batch (by its claim key), or none: a batch runs whole, so that a resumed batch
        stacks the same runs as the batch that was interrupted, and computes the same bits."""
        claimed = []
        for job, key in jobs:
            claim = self.claims.try_claim(key)
            if claim is None:
                for _, held in claimed:
                    held.release()
                return []
            claimed.append((job, claim))
        return claimed

    def _execute_claimed(self, config: RunConfig, claim: Claim, reports: bool = True) -> None:
        """Execute ``config``, claimed, with its checkpoint; write its record; release the claim. ``reports``:
        whether the reporter hears of its start and epochs (in a batch, of its first run's only)."""
        with claim:
            if self._handled(config, self.store.record_names()):
                self.pending.remove(config)
                self.reporter.run_finished(config, None)
                return
            checkpoint = RunCheckpoint(
                self.store.checkpoint_path(config.run_id),
                self.settings.checkpoint,
                lost=lambda: claim.lost,
                device=self.device,
            )
            if reports:
                self.reporter.run_started(config)
            try:
                record = run_or_record_failure(
                    config,
                    self.device,
                    self.cache_dir,
                    self.reporter.epoch_done if reports else None,
                    self.options,
                    checkpoint,
                )
            except ClaimLost:
                warnings.warn(
                    f"run {config.run_id} was taken over by another runner; left to it", stacklevel=2
                )
                self.pending.remove(config)
                return
            if claim.lost:
                self.pending.remove(config)
                return
            self.store.save(record)
            checkpoint.delete()
        self.pending.remove(config)
        self.records.append(record)
        self.reporter.run_finished(config, record)


CELL_KEYS = ("method", "scope", "sparsity", "prunable", "seed")
"""What tells the runs of one schedule apart (:func:`schedule_key`)."""


def schedule_key(config: RunConfig) -> str:
    """What the runs whose phases the batched engine can stack share: the run's identity but its method, scope,
    sparsity, prunable set and seed, with the kind of its method's schedule (dense, at initialization, after
    training, during training, ...) kept."""
    shared = {key: value for key, value in config.identity.items() if key not in CELL_KEYS}
    return stable_hash({**shared, "schedule": config.identity["method"]["schedule"]})


def batch_order(configs: Sequence[RunConfig]) -> dict[str, tuple[str, int]]:
    """Each run's place in the sequence its batches are cut from: the grid's runs of one schedule
    (:func:`schedule_key`) in one sequence, method by method, cell by cell, each cell's seeds in order. A place
    depends on the whole grid, finished runs included, and not on which runs are pending, so that every runner of
    the grid, however late, and every resume forms the same batches."""
    sequences: dict[str, list[RunConfig]] = {}
    for config in configs:
        sequences.setdefault(schedule_key(config), []).append(config)
    order = {}
    for key, runs in sequences.items():
        cells = {c.run_id: stable_hash({k: v for k, v in c.identity.items() if k != "seed"}) for c in runs}
        runs.sort(key=lambda c: (c.method, cells[c.run_id], c.seed))
        for position, config in enumerate(runs):
            order[config.run_id] = (key, position)
    return order


def batch_id(place: tuple[str, int], size: int) -> tuple[str, int]:
    """The batch of the run at ``place`` (:func:`batch_order`) with batches of ``size``: ``size`` consecutive runs
    of its schedule's sequence (the seeds of a cell, then those of the next cell)."""
    key, position = place
    return key, position // size


def pretraining_batch_id(config: RunConfig, size: int) -> tuple[str, int]:
    """The batch of the dense pre-training ``config`` starts from: the pre-trainings of one data, model, recipe and
    prunable set, ``size`` consecutive seeds at a time (they depend on nothing else, so no grid-wide order is
    needed)."""
    shared = (config.dataset, config.model, repr(config.recipe), repr(config.prunable))
    return stable_hash(shared), config.seed // size
