"""Per-epoch curves beside every record: one row per epoch of every schedule, resumed without repeats, and plotted."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from prunebench.grid.result_store import ResultStore
from prunebench.methods.method_registry import get_method
from prunebench.run.curves import COLUMNS, CURVES_KEY, curves_path, read_curves
from prunebench.run.method_contract import record_differences
from prunebench.run.run_checkpoint import RunCheckpoint, RunInterrupted
from prunebench.run.run_config import RunConfig
from prunebench.run.run_context import RunOptions
from prunebench.run.runner import execute, run_or_record_failure

CPU = torch.device("cpu")
SCHEDULES = {  # a method of each schedule, and the phases its rows fall in with their epoch counts' record keys
    "dense": ("dense", {"train": "dense"}),
    "at_init": ("snip", {"train": "sparse"}),
    "after_training": ("magnitude", {"finetune": "finetune"}),
    "gradual": ("gmp", {"train": "gradual"}),
    "iterative": ("imp", {}),
    "during_training": ("str", {"learn": "learn", "finetune": "finetune"}),
    "during_training, not evaluable": ("probmask", {"learn": "learn", "finetune": "finetune"}),
}


def _config(method: str, seed: int = 0) -> RunConfig:
    scope = (get_method(method).scopes or ("none",))[0]
    return RunConfig.from_preset("synthetic-tiny", method, scope, 0.9, seed)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_schedule_writes_one_row_per_epoch_beside_its_record(tmp_path, schedule):
    method, phases = SCHEDULES[schedule]
    config = _config(method)
    record = run_or_record_failure(config, CPU, tmp_path / "cache", options=RunOptions(eval_every=2))
    assert record["status"] == "ok", record.get("error")
    assert config.spec.schedule == schedule.partition(",")[0]
    ResultStore(tmp_path).save(record)
    assert CURVES_KEY not in json.loads((tmp_path / "runs" / f"{config.run_id}.json").read_text())
    rows = read_curves(tmp_path, config.run_id)
    assert curves_path(tmp_path, config.run_id).name == f"{config.run_id}.curves.csv"
    assert rows and list(rows[0])[: len(COLUMNS)] == list(COLUMNS)
    counts = Counter(row["phase"] for row in rows)
    assert "pretrain" not in counts  # the shared pre-training is not the run's
    for phase, key in phases.items():
        assert counts[phase] == record["epochs"][key], (phase, counts)
    for phase in counts:  # within a phase, each epoch once and in order, the steps increasing
        own = [row for row in rows if row["phase"] == phase]
        assert len({row["epoch"] for row in own}) == len(own)
        assert all(a["step"] < b["step"] for a, b in zip(own, own[1:], strict=False))
    assert rows[-1]["sparsity"] == pytest.approx(record["achieved_sparsity"], abs=1e-12)
    assert all(row["lr"] >= 0 and row["train_loss"] > 0 for row in rows)
    evaluated = [i for i, row in enumerate(rows, 1) if row["test_top1"] is not None]
    assert all(i % 2 == 0 for i in evaluated)  # only every second epoch of the run
    if schedule == "during_training, not evaluable":  # its layers compute only inside a step
        assert all(row["test_top1"] is None for row in rows if row["phase"] == "learn")
        assert {"temperature", "budget", "expected_sparsity"} <= set(rows[0])
    elif len(rows) >= 2:
        assert evaluated == list(range(2, len(rows) + 1, 2))


def test_method_quantities_follow_the_method():
    """STR's sparsity is its W_eff's (the stored weights stay dense while it learns); gradual pruning's target
    rises along the cubic schedule to the run's sparsity; ProbMask's temperature falls."""
    rows = {
        m: execute(_config(m), CPU, Path("/nonexistent/cache"))[CURVES_KEY]
        for m in ("str", "gmp", "probmask")
    }
    learn = [row for row in rows["str"] if row["phase"] == "learn"]
    assert all(0.0 <= row["sparsity"] < 0.9 and 0.0 <= row["threshold"] < 1.0 for row in learn)
    targets = [row["target_sparsity"] for row in rows["gmp"]]
    assert targets == sorted(targets) and targets[-1] == 0.9
    assert [row["sparsity"] for row in rows["gmp"]] == pytest.approx(targets, abs=1e-3)
    temperatures = [row["temperature"] for row in rows["probmask"] if row["phase"] == "learn"]
    assert temperatures == sorted(temperatures, reverse=True) and len(set(temperatures)) == len(temperatures)


def test_evaluating_during_training_changes_nothing_the_run_computes(tmp_path):
    for method in ("snip", "str"):
        config = _config(method)
        plain = execute(config, CPU, tmp_path / "cache")
        watched = execute(config, CPU, tmp_path / "cache", options=RunOptions(eval_every=1))
        # the default evaluates only at the end; the evaluations change nothing, masks and outcomes included
        assert all(row["test_top1"] is None for row in plain[CURVES_KEY])
        assert all(row["test_top1"] is not None for row in watched[CURVES_KEY])
        assert record_differences(watched, plain, ignore=(CURVES_KEY,)) == [], method
        losses = [[row["train_loss"] for row in record[CURVES_KEY]] for record in (watched, plain)]
        assert losses[0] == losses[1]


@pytest.mark.parametrize("method,stop_at", [("snip", 11), ("str", 20), ("imp", 30)])
def test_a_resumed_run_continues_its_curves_without_repeating_an_epoch(tmp_path, method, stop_at):
    config = _config(method)
    reference = execute(config, CPU, tmp_path / "cache")[CURVES_KEY]
    path, calls = tmp_path / "resume.pt", iter(range(1, 10**6))
    with pytest.raises(RunInterrupted):
        execute(
            config,
            CPU,
            tmp_path / "cache",
            checkpoint=RunCheckpoint(path, stop=lambda: next(calls) == stop_at),
        )
    saved = RunCheckpoint(path).values["curves"]
    assert 0 < len(saved) < len(reference)  # stopped in the middle, the rows so far kept in the checkpoint
    resumed = execute(config, CPU, tmp_path / "cache", checkpoint=RunCheckpoint(path, stop=lambda: False))
    assert resumed[CURVES_KEY] == reference


def test_a_failed_run_keeps_the_curves_it_trained(tmp_path, monkeypatch):
    from prunebench.run import runner

    def fails_after_an_epoch(config, device, cache_dir, on_epoch, options, checkpoint, curves):
        curves.rows.append(
            {"phase": "train", "epoch": 1, "step": 8, "train_loss": 1.5, "sparsity": 0.9, "lr": 0.1}
        )
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "execute", fails_after_an_epoch)
    config = _config("snip")
    record = run_or_record_failure(config, CPU, tmp_path / "cache")
    assert record["status"] == "failed"
    ResultStore(tmp_path).save(record)
    assert read_curves(tmp_path, config.run_id) == [
        {
            "phase": "train",
            "epoch": 1,
            "step": 8,
            "train_loss": 1.5,
            "test_top1": None,
            "sparsity": 0.9,
            "lr": 0.1,
        }
    ]
