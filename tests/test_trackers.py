"""Streaming the curves to TensorBoard, W&B (offline) and MLflow (local file store), and the per-cell curve figures."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from prunebench.core.errors import UsageError
from prunebench.grid.result_store import ResultStore
from prunebench.methods.method_registry import get_method
from prunebench.run.curves import CURVES_KEY
from prunebench.run.run_config import RunConfig
from prunebench.run.run_context import RunOptions
from prunebench.run.runner import run_or_record_failure
from prunebench.run.tracking import check_installed, flatten, parse_backends

CPU = torch.device("cpu")


def _config(method: str = "snip", seed: int = 0) -> RunConfig:
    scope = (get_method(method).scopes or ("none",))[0]
    return RunConfig.from_preset("synthetic-tiny", method, scope, 0.9, seed)


def _logged_run(tmp_path, backend: str, method: str = "snip"):
    config = _config(method)
    options = RunOptions(eval_every=2, log=(backend,), log_dir=tmp_path)
    record = run_or_record_failure(config, CPU, tmp_path / "cache", options=options)
    assert record["status"] == "ok", record.get("error")
    return config, record[CURVES_KEY]


def test_tensorboard_event_files_hold_every_row(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config, rows = _logged_run(tmp_path, "tensorboard", "gmp")
    events = EventAccumulator(str(tmp_path / "tensorboard" / config.run_id))
    events.Reload()
    losses = events.Scalars("train_loss")
    assert [e.step for e in losses] == list(range(1, len(rows) + 1))
    assert [e.value for e in losses] == pytest.approx([row["train_loss"] for row in rows], rel=1e-6)
    assert [e.value for e in events.Scalars("target_sparsity")] == pytest.approx(
        [r["target_sparsity"] for r in rows]
    )
    assert [e.step for e in events.Scalars("test_top1")] == [2, 4]  # only the epochs evaluated


def test_wandb_offline_writes_its_run_directory_with_the_config(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    config, rows = _logged_run(tmp_path, "wandb")
    # run.finish() may return before W&B's core process has written the records out; a process's exit waits for
    # it (wandb's atexit teardown), so the test does what the exit does before it reads the log
    wandb.teardown()
    (run_dir,) = (tmp_path / "wandb").glob(f"offline-run-*-{config.run_id}")
    (log,) = run_dir.glob(f"run-{config.run_id}.wandb")  # the offline log that `wandb sync` uploads
    data = log.read_bytes()  # records holding JSON values: the config and every row's metrics
    assert b"harness_version" in data and b'"snip"' in data
    assert data.count(b"train_loss") >= len(rows)


def test_mlflow_file_store_holds_the_metrics_and_the_identity(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config, rows = _logged_run(tmp_path, "mlflow")
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("prunebench").experiment_id])
    assert run.info.run_name == config.run_id and run.info.status == "FINISHED"
    assert run.data.params["method.criterion"] == "snip" and run.data.params["seed"] == "0"
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in history] == list(range(1, len(rows) + 1))
    assert [m.value for m in history] == pytest.approx([row["train_loss"] for row in rows])


def test_tracker_names_and_missing_packages_are_one_line_errors(monkeypatch):
    assert parse_backends("tensorboard, mlflow,tensorboard") == ("tensorboard", "mlflow")
    with pytest.raises(UsageError, match="unknown tracker neptune; choose from tensorboard, wandb, mlflow"):
        parse_backends("neptune")
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if it were not installed
    with pytest.raises(UsageError, match=r'--log wandb needs wandb.*pip install "prunebench\[log\]"'):
        check_installed(["wandb"])


def test_the_identity_flattens_into_parameters():
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2], "f": {}}) == {
        "a.b": "1",
        "a.c.d": "x",
        "e": "[1, 2]",
        "f": "{}",
    }


def test_each_cell_gets_a_curve_figure_with_mean_and_band_over_seeds(tmp_path):
    pytest.importorskip("matplotlib")
    from prunebench.leaderboard.curve_plots import band, cell_curves, write_curve_plots

    store = ResultStore(tmp_path)
    for seed in (0, 1):
        store.save(run_or_record_failure(_config("snip", seed), CPU, tmp_path / "cache"))
    ((cell, runs),) = cell_curves([tmp_path]).items()
    assert cell[2] == "snip" and len(runs) == 2
    epochs, mean, low, high = band(runs, "train_loss")
    losses = np.array([[row["train_loss"] for row in rows] for rows in runs])
    assert list(epochs) == [1, 2, 3, 4]
    assert np.allclose(mean, losses.mean(axis=0)) and np.allclose(low, losses.min(axis=0))
    assert np.allclose(high, losses.max(axis=0))
    assert band(runs, "test_top1") is None  # never evaluated during training
    (path,) = write_curve_plots([tmp_path], tmp_path / "board")
    assert path.parent == tmp_path / "board" / "curves" and path.read_bytes().startswith(b"\x89PNG")
