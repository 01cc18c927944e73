"""Streaming a run's curves to TensorBoard, Weights & Biases or MLflow while the grid runs (``bench run --log``).

Each tracker gets one run per prunebench run: named by the run id, its configuration the run's identity (what the run
id hashes: dataset, model, method, hyperparameters, recipe, seed...), and every row of the run's curves
(:mod:`prunebench.run.curves`) as scalars at the run's epoch count. Each backend is optional and imported only when
asked for; a missing one is a one-line :class:`UsageError` naming the extra that installs it.

* ``tensorboard``: :class:`torch.utils.tensorboard.SummaryWriter` in ``<log dir>/tensorboard/<run_id>``, the identity
  as a text summary ``identity``;
* ``wandb``: ``wandb.init`` in ``<log dir>``, offline unless ``WANDB_MODE`` says otherwise (it never asks to log in),
  the run id as the W&B run's name and id, so that a resumed run continues the same W&B run;
* ``mlflow``: :class:`mlflow.tracking.MlflowClient` on ``MLFLOW_TRACKING_URI``, else a local file store
  ``<log dir>/mlruns`` (allowed through ``MLFLOW_ALLOW_FILE_STORE``, which MLflow 3 asks for), experiment
  ``prunebench``; the identity flattened into parameters (``recipe.lr``), the run id
  as the run's name and its ``prunebench.run_id`` tag, by which a resumed run finds its MLflow run again.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from prunebench.core.errors import UsageError

BACKENDS = ("tensorboard", "wandb", "mlflow")
EXTRA = 'pip install "prunebench[log]"'
PROJECT = "prunebench"
"""The W&B project and the MLflow experiment the runs go to."""


class Tracker(Protocol):
    """One tracker's run for one prunebench run."""

    def log(self, row: Mapping[str, Any], step: int) -> None:
        """Stream one row of the curves at ``step`` (the run's epoch count)."""

    def close(self, status: str) -> None:
        """End the tracker's run (``status``: the record's, ``ok`` or ``failed``, or ``interrupted``)."""


def parse_backends(text: str) -> tuple[str, ...]:
    """``tensorboard,wandb`` as a tuple of backends; an unknown name is a :class:`UsageError`."""
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in BACKENDS]
    if unknown or not names:
        raise UsageError(
            f"--log: unknown tracker {', '.join(unknown) or repr(text)}; choose from {', '.join(BACKENDS)}"
        )
    return names


def _require(module: str, backend: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"--log {backend} needs {module}, which is not installed: {EXTRA}") from None


def check_installed(backends: Sequence[str]) -> None:
    """Refuse, before any run starts, a backend whose package is missing."""
    modules = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
    for backend in backends:
        _require(modules[backend], backend)


def scalars(row: Mapping[str, Any]) -> dict[str, float]:
    """The row's finite numbers (the phase is a name, an epoch not evaluated has no test top-1)."""
    return {
        key: float(value)
        for key, value in row.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


def flatten(identity: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested identity fields as ``a.b`` keys with text values (MLflow's parameters are flat strings)."""
    flat: dict[str, str] = {}
    for key, value in identity.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value, default=str) if not isinstance(value, str) else value
    return flat


class TensorBoardTracker:
    """A :class:`torch.utils.tensorboard.SummaryWriter` per run."""

    def __init__(self, run_id: str, identity: Mapping[str, Any], log_dir: Path) -> None:
        _require("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir / "tensorboard" / run_id))
        self.writer.add_text("identity", f"```\n{json.dumps(identity, indent=1, default=str)}\n```", 0)

    def log(self, row: Mapping[str, Any], step: int) -> None:
        for key, value in scalars(row).items():
            self.writer.add_scalar(key, value, step)

    def close(self, status: str) -> None:
        self.writer.add_text("status", status)
        self.writer.close()


class WandbTracker:
    """A W&B run per run, offline unless ``WANDB_MODE`` is set."""

    def __init__(self, run_id: str, identity: Mapping[str, Any], log_dir: Path) -> None:
        wandb = _require("wandb", "wandb")
        log_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=PROJECT,
            name=run_id,
            id=run_id,
            resume="allow",
            config=dict(identity),
            dir=str(log_dir),
            mode=os.environ.get("WANDB_MODE") or "offline",
            reinit="create_new",
        )

    def log(self, row: Mapping[str, Any], step: int) -> None:
        self.run.log({**scalars(row), "phase": row.get("phase")}, step=step)

    def close(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "ok" else 1)


class MlflowTracker:
    """An MLflow run per run, through the client API (no global active run, so runs of a process do not mix)."""

    def __init__(self, run_id: str, identity: Mapping[str, Any], log_dir: Path) -> None:
        _require("mlflow", "mlflow")
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:  # MLflow 3 keeps its file store only on request; this default is the one the docs promise
            uri = (log_dir / "mlruns").resolve().as_uri()
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        experiment = self.client.get_experiment_by_name(PROJECT)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(PROJECT)
        found = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`prunebench.run_id` = '{run_id}'", max_results=1
        )
        if found:
            self.run_id = found[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
            return
        run = self.client.create_run(experiment_id, run_name=run_id, tags={"prunebench.run_id": run_id})
        self.run_id = run.info.run_id
        params = [Param(key, value[:6000]) for key, value in flatten(identity).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters a batch
            self.client.log_batch(self.run_id, params=params[start : start + 100])

    def log(self, row: Mapping[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value in scalars(row).items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self, status: str) -> None:
        state = {"ok": "FINISHED", "interrupted": "KILLED"}.get(status, "FAILED")
        self.client.set_terminated(self.run_id, status=state)


TRACKERS = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker, "mlflow": MlflowTracker}


def open_trackers(
    backends: Sequence[str], run_id: str, identity: Mapping[str, Any], log_dir: Path
) -> list[Tracker]:
    """One tracker run per backend for the run ``run_id``, writing under ``log_dir``."""
    return [TRACKERS[backend](run_id, identity, Path(log_dir)) for backend in backends]
