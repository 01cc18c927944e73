"""The head of every run record: what ran, where and with which code, for a finished run and a failed one alike."""

from __future__ import annotations

import traceback
from datetime import datetime, timezone
from typing import Any

import torch

from prunebench.core.environment import describe_device, library_versions, machine
from prunebench.core.errors import UsageError
from prunebench.run.run_config import RunConfig
from prunebench.run.run_record import RECORD_VERSION, RunRecord
from prunebench.run.source_fingerprint import source_fingerprints
from prunebench.run.trainer import Diverged


def record_head(config: RunConfig, device: torch.device, status: str, wall_time: float) -> dict[str, Any]:
    """The fields every record of ``config`` starts with: its identity, status, device, threads, versions and source."""
    identity = config.identity
    try:
        name, variant = config.spec.name, config.variant
    except UsageError:  # a failure record must be writable even where the method is not registered
        name, variant = config.method, ""
    return {
        "version": RECORD_VERSION,
        "run_id": config.run_id,
        "status": status,
        "config": {**identity, "preset": config.preset},
        "dataset": config.dataset,
        "model": config.model,
        "preset": config.preset,
        "method": name,
        "variant": variant,
        "criterion": identity["method"]["criterion"],
        "schedule": identity["method"]["schedule"],
        "scope": config.scope,
        "sparsity": config.sparsity,
        "seed": config.seed,
        "hparams": identity["method"]["hparams"],
        "device": describe_device(device),
        "threads": torch.get_num_threads(),
        "machine": machine(device),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "versions": library_versions(),
        "source": source_fingerprints(config),
        "wall_time_s": wall_time,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **({"control": config.control} if config.control else {}),
    }


def failure_record(
    config: RunConfig, device: torch.device, error: BaseException, wall_time: float
) -> RunRecord:
    """The record of a run that raised: status ``diverged`` for a NaN loss, ``failed`` otherwise, with the error."""
    status = "diverged" if isinstance(error, Diverged) else "failed"
    return {
        **record_head(config, device, status, wall_time),
        "error": f"{type(error).__name__}: {error}",
        "traceback": "".join(traceback.format_exception(error)),
    }
