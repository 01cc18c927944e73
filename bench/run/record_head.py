"""The parts of a run record every track writes: the head (what ran, where and with which code, for a finished run and a
failed one alike) and the final evaluation's fields."""

from __future__ import annotations

import math
import traceback
from datetime import datetime, timezone
from typing import Any

import torch
from torch import nn

from prunebench.core.environment import describe_device, library_versions, machine
from prunebench.core.errors import UsageError
from prunebench.run.example_outcomes import OUTCOMES_KEY, pack_outcomes
from prunebench.run.run_config import RunConfig
from prunebench.run.run_record import RECORD_VERSION, RunRecord
from prunebench.run.source_fingerprint import source_fingerprints
from prunebench.run.trainer import Diverged, evaluate_examples


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
        **({"group": config.group} if config.group != "per_layer" else {}),
        **({"pretrained": identity["weights"]} if "weights" in identity else {}),
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


def evaluation_fields(model: nn.Module, loader) -> dict[str, Any]:
    """The final evaluation of ``model`` on the test ``loader`` as record fields: top-1, top-5 and loss (and perplexity
    for a language model, its test set's size then counted in tokens), the test set's size, and the per-example outcomes the store writes beside the record (under
    :data:`~prunebench.run.example_outcomes.OUTCOMES_KEY`). :class:`Diverged` when a metric is not finite."""
    evaluation = evaluate_examples(model, loader)
    for name, value in evaluation.metrics.items():
        if not math.isfinite(value):
            raise Diverged(f"the final evaluation's {name} is {value}")
    return {
        **evaluation.metrics,
        "test_examples": len(evaluation.top1),
        OUTCOMES_KEY: pack_outcomes(evaluation.top1.numpy(), evaluation.top5.numpy()),
    }
