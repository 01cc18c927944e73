"""Running one configuration end to end: its schedule's plan of phases, the final evaluation, the contract check, the record.

A run is a pure function of its :class:`~prunebench.run.run_config.RunConfig`: the seed fixes the initial weights, the
data order and the augmentation, identically for every method. What happens between initialization and the final
evaluation is the plan of the method's schedule (:mod:`prunebench.run.schedule_plans`), or of an allocation control
(:mod:`prunebench.run.allocation_controls`); the structured track runs its own (:mod:`prunebench.structured`). The
final model is evaluated once, on held-out data, at the end: nothing is selected on the test set. The harness then
checks the exact-sparsity contract itself.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch

from prunebench.core.errors import is_disk_full
from prunebench.datasets import DataLoaders, get_dataset
from prunebench.methods.base import ScoringData
from prunebench.pruning.accounting import account
from prunebench.pruning.allocation import keep_budget
from prunebench.pruning.saved_masks import MASK_KEY, pack
from prunebench.run.batched_engine import ENGINE
from prunebench.run.control_plans import control_plan
from prunebench.run.curves import CURVES_KEY, CurveLog
from prunebench.run.phases import Outcome, run_plan
from prunebench.run.record_head import evaluation_fields, failure_record, record_head
from prunebench.run.run_checkpoint import RunCheckpoint
from prunebench.run.run_config import RunConfig
from prunebench.run.run_context import EpochCallback, RunContext, RunOptions, run_prunable
from prunebench.run.run_record import RunRecord
from prunebench.run.schedule_plans import plan_of
from prunebench.structured.structured_run import execute_structured


class TargetMissed(RuntimeError):
    """A finished run whose achieved sparsity is not its target: a method broke the exact-sparsity contract."""


def check_target(accounting: dict, sparsity: float, layers: int) -> None:
    """Raise :class:`TargetMissed` unless the model's non-zero prunable weights are the target's count, within one
    weight per layer (each layer's share rounds once)."""
    keep = keep_budget(accounting["prunable_weights"], sparsity)
    if abs(accounting["prunable_nonzero"] - keep) > layers:
        raise TargetMissed(
            f"{accounting['prunable_nonzero']} non-zero weights left, the target keeps {keep} "
            f"(achieved sparsity {accounting['achieved_sparsity']:.5f}, target {sparsity})"
        )


def _train_run(ctx: RunContext) -> tuple[Outcome, DataLoaders]:
    """Run the phases of ``ctx.config``'s plan (an allocation control's, or its method's schedule's)."""
    config = ctx.config
    loaders = ctx.loaders()
    if ctx.curves is not None:
        ctx.curves.test = loaders.test
    if config.control:  # the source's mask, shuffled or on re-drawn weights; not checkpointed
        ctx = replace(ctx, checkpoint=None)
        plan = control_plan(ctx, loaders)
    else:
        plan = plan_of(config, config.spec.build(config.hparams))
    data = ScoringData(loaders.train, get_dataset(config.dataset).num_classes)
    return run_plan(ctx, plan, loaders, data), loaders


def execute(
    config: RunConfig,
    device: torch.device,
    cache_dir: Path,
    on_epoch: EpochCallback | None = None,
    options: RunOptions | None = None,
    checkpoint: RunCheckpoint | None = None,
    curves: CurveLog | None = None,
) -> RunRecord:
    """Run ``config`` and return its record (status ``ok``; exceptions propagate).

    ``checkpoint``: save the run's state as it trains, resume it from there (see :mod:`prunebench.run.run_checkpoint`).
    ``curves``: collect the run's per-epoch curves there (default: a :class:`~prunebench.run.curves.CurveLog` kept in
    ``checkpoint``, evaluating as ``options.eval_every`` says); they go to the store with the record.

    Denormal floats are flushed to zero for the whole process: products with near-zero mask values (ProbMask's
    relaxed masks, STR's soft threshold) otherwise fall into denormals and slow CPU matrix products up to tenfold. The
    setting is the same for every method, and values below 1e-38 do not change a result.
    """
    torch.set_flush_denormal(True)
    options = options or RunOptions()
    curves = curves or CurveLog(checkpoint, eval_every=options.eval_every)
    ctx = RunContext(config, device, cache_dir, options, checkpoint, on_epoch, curves)
    if config.track.name == "structured":
        return {**execute_structured(replace(ctx, checkpoint=None)), **engine_fields(ctx)}
    started = time.perf_counter()
    outcome, loaders = _train_run(ctx)
    evaluation = evaluation_fields(outcome.model, loaders.test)
    weights = run_prunable(config, outcome.model)
    example = next(iter(loaders.test))[0][:1]  # one real input: its dtype and shape, token ids included
    accounting = account(outcome.model, example, weights)
    if config.method != "dense":
        check_target(accounting, config.sparsity, len(weights))
    saved = {} if config.method == "dense" else {MASK_KEY: pack({n: w != 0 for n, w in weights.items()})}
    if curves.rows:
        saved[CURVES_KEY] = curves.rows
    return {
        **record_head(config, device, "ok", time.perf_counter() - started),
        **saved,
        **evaluation,
        **accounting,
        "method_sparsity": outcome.method_sparsity,
        "enforcement": outcome.enforcement,
        "method_details": outcome.details,
        "epochs": outcome.epochs,
        "train_loss": outcome.train_loss,
        "loader": loaders.kind,
        "precision": "bf16-autocast" if device.type == "cuda" else "fp32",
        **engine_fields(ctx),
    }


def engine_fields(ctx: RunContext) -> dict:
    """The record's ``engine``, only where the batched engine trained a phase of the run (so a record of a run
    trained alone is today's): its name and the phases it trained, in order (``docs/batched.md``)."""
    phases = ctx.batched_phases()
    return {"engine": {"name": ENGINE, "phases": phases}} if phases else {}


def run_or_record_failure(
    config: RunConfig,
    device: torch.device,
    cache_dir: Path,
    on_epoch: EpochCallback | None = None,
    options: RunOptions | None = None,
    checkpoint: RunCheckpoint | None = None,
) -> dict:
    """The record of ``config``: its results, or its failure (a failing method must not stop the grid).

    A run stopped on request (:class:`~prunebench.run.run_checkpoint.RunInterrupted`), abandoned to another runner
    (:class:`~prunebench.run.run_checkpoint.ClaimLost`) or stopped by a full disk (:func:`~prunebench.core.errors.is_disk_full`)
    raises: it has no record."""
    started = time.perf_counter()
    options = options or RunOptions()
    curves = CurveLog(checkpoint, eval_every=options.eval_every)
    status = "interrupted"  # the trackers' status unless a record says otherwise
    try:
        curves.trackers = _trackers(config, options, cache_dir)
        try:
            record = execute(config, device, cache_dir, on_epoch, options, checkpoint, curves)
        except Exception as error:  # noqa: BLE001
            if is_disk_full(error):
                raise  # not the run's failure: the grid stops, and the run is retried once there is space
            record = failure_record(config, device, error, time.perf_counter() - started)
            if curves.rows:
                record[CURVES_KEY] = curves.rows
        status = record["status"]
        return record
    finally:
        for tracker in curves.trackers:
            tracker.close(status)


def _trackers(config: RunConfig, options: RunOptions, cache_dir: Path) -> list:
    """The trackers ``options.log`` asks for, opened for ``config``'s run (under ``options.log_dir``, else the
    results directory that holds ``cache_dir``)."""
    if not options.log:
        return []
    from prunebench.run.tracking import open_trackers

    log_dir = options.log_dir or Path(cache_dir).parent
    return open_trackers(options.log, config.run_id, config.identity, log_dir)
