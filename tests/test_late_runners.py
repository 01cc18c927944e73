"""Runners that start late trust the records already written; a full disk stops a grid; Slurm is asked for only
where it exists; the status counts each run once.

The defects these reproduce: a runner started after its grid was planned (a replacement worker, a requeued or
late Slurm task) executed again every run finished in between; a full disk was recorded as every run's failure;
``--executor slurm`` without Slurm ran local processes; ``bench status`` counted pre-trainings and interrupted
runs twice.
"""

from __future__ import annotations

import errno
import io
import json
import os
import time

import pytest
import torch

from prunebench.core.atomic_files import atomic_save_tensors
from prunebench.core.errors import Failed, UsageError, WriteError
from prunebench.grid.claims import ClaimStore
from prunebench.grid.experiment import Experiment
from prunebench.grid.grid_run import run_grid
from prunebench.grid.result_store import ResultStore
from prunebench.grid.scheduler import Runner, RunnerSettings, remove_leftover_checkpoints
from prunebench.run.record_head import failure_record

CPU = torch.device("cpu")
FAST = RunnerSettings(poll_s=0.05)


def _grid(methods: str = "magnitude_init,random", seeds: int = 1):
    experiment = Experiment(
        preset="synthetic-tiny", methods=methods, scopes="global", sparsity=[0.5, 0.9], seeds=seeds
    )
    experiment.set("recipe", "epochs", [2])
    return experiment.configs()


class _Counting:
    """A reporter that counts the runs a runner starts."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def grid_started(self, total: int, skipped: int) -> None: ...

    def run_started(self, config) -> None:
        self.started.append(config.run_id)

    def epoch_done(self, *args) -> None: ...

    def run_finished(self, config, record) -> None: ...


def test_a_runner_started_after_others_finished_runs_executes_none_of_them(tmp_path):
    configs = _grid()
    store = ResultStore(tmp_path)
    since = store.clock()  # the grid is planned: its todo is every run
    first = Runner(configs, store, CPU, settings=FAST, since=since).run()
    assert len(first) == len(configs)
    late = _Counting()  # a replacement worker, or a requeued task, handed the original list
    assert Runner(configs, store, CPU, reporter=late, settings=FAST, since=since).run() == []
    assert late.started == []


def test_a_failed_record_from_before_the_invocation_is_retried_and_one_from_during_it_is_not(tmp_path):
    configs = _grid("random")[:2]
    store = ResultStore(tmp_path)
    old = failure_record(configs[0], CPU, RuntimeError("an earlier failure"), 0.0)
    store.save(old)
    time.sleep(0.02)
    since = store.clock()
    store.save(failure_record(configs[1], CPU, RuntimeError("another runner of this grid"), 0.0))
    counting = _Counting()
    records = Runner(configs, store, CPU, reporter=counting, settings=FAST, since=since).run()
    assert counting.started == [configs[0].run_id]
    assert [r["status"] for r in records] == ["ok"]


def test_force_reruns_the_records_written_before_it_and_none_written_during_it(tmp_path):
    configs = _grid("random")[:2]
    store = ResultStore(tmp_path)
    run_grid(configs, store, CPU)
    time.sleep(0.02)
    since = store.clock()
    counting = _Counting()
    Runner(configs, store, CPU, reporter=counting, settings=FAST, since=since).run()
    assert sorted(counting.started) == sorted(c.run_id for c in configs)
    again = _Counting()
    Runner(configs, store, CPU, reporter=again, settings=FAST, since=since).run()
    assert again.started == []


def test_workers_started_late_are_handed_the_invocations_start(tmp_path):
    from prunebench.grid.local_executor import run_in_workers
    from prunebench.grid.scheduler import GridReporter

    configs = _grid("random")[:2]
    store = ResultStore(tmp_path)
    since = store.clock()
    Runner(configs, store, CPU, settings=FAST, since=since).run()
    records = run_in_workers(configs, store, [CPU, CPU], reporter=GridReporter(), settings=FAST, since=since)
    assert records == []


def test_a_requeued_slurm_task_skips_the_runs_finished_since_submission(tmp_path):
    pytest.importorskip("submitit")
    from prunebench.grid.slurm_executor import SlurmTask
    from prunebench.run.run_context import RunOptions

    configs = _grid("random")[:2]
    store = ResultStore(tmp_path)
    since = store.clock()
    task = SlurmTask(list(configs), str(tmp_path), RunOptions(), FAST, since)
    assert task() == {"records": len(configs), "interrupted": 0}
    assert task() == {"records": 0, "interrupted": 0}  # the same pickled task, requeued


def test_slurm_without_sbatch_is_refused_unless_the_local_cluster_is_asked_for(tmp_path, monkeypatch, capsys):
    from prunebench.cli import main
    from prunebench.grid.slurm_executor import SlurmOptions, check_cluster

    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    with pytest.raises(UsageError, match="no Slurm here"):
        check_cluster(SlurmOptions())
    check_cluster(SlurmOptions(cluster="local"))
    with pytest.raises(UsageError, match="'slurm' or 'local'"):
        SlurmOptions.from_mapping({"cluster": "lsf"})
    flags = ["--preset", "synthetic-tiny", "--methods", "random", "--scopes", "global", "--sparsity", "0.9"]
    assert main(["run", *flags, "--out", str(tmp_path / "out"), "--executor", "slurm"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sbatch is not on the PATH" in err
    assert not (tmp_path / "out" / "slurm").exists()


def test_slurm_wait_exits_non_zero_with_the_runs_left_when_every_task_has_ended(
    tmp_path, monkeypatch, capsys
):
    pytest.importorskip("submitit")
    import prunebench.grid.slurm_executor
    from prunebench.cli import main

    class _Ended:
        job_id, state = "1_0", "TIMEOUT"

        def done(self) -> bool:
            return True

    monkeypatch.setattr(prunebench.grid.slurm_executor, "submit", lambda *args, **kwargs: [_Ended()])
    monkeypatch.setattr(prunebench.grid.slurm_executor, "follow", lambda *args, **kwargs: None)
    out = tmp_path / "out"
    flags = ["--preset", "synthetic-tiny", "--methods", "random", "--scopes", "global", "--sparsity", "0.9"]
    argv = [
        "run",
        *flags,
        "--seeds",
        "1",
        "--out",
        str(out),
        "--executor",
        "slurm",
        "--slurm-cluster",
        "local",
    ]
    assert main([*argv, "--wait"]) == 1
    said = " ".join(capsys.readouterr().out.split())
    assert "2 of 2 runs are not done" in said and "rerun the same command to resume" in said


# A full disk -------------------------------------------------------------------------------------------------------
def _full_disk_under(monkeypatch, folder: str) -> None:
    """Writes of files under ``folder`` fail as on a full disk (at the rename, after the data was written)."""
    import prunebench.core.atomic_files

    replace = os.replace

    def full(source, target):
        if f"/{folder}/" in str(target):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return replace(source, target)

    monkeypatch.setattr(prunebench.core.atomic_files.os, "replace", full)


def test_a_full_disk_stops_the_grid_in_one_line_and_records_no_failure(tmp_path, monkeypatch):
    configs = _grid("random")
    store = ResultStore(tmp_path)
    _full_disk_under(monkeypatch, "runs")
    with pytest.raises(Failed) as raised:
        run_grid(configs, store, CPU)
    message = str(raised.value)
    assert "\n" not in message and str(store.runs) in message and "No space left on device" in message
    assert "free" in message and "rerun to resume" in message
    assert store.record_names() == {}


def test_a_full_disk_while_checkpointing_names_the_checkpoint_and_the_size_needed(tmp_path, monkeypatch):
    _full_disk_under(monkeypatch, "checkpoints")
    path = tmp_path / "checkpoints" / "run.pt"
    with pytest.raises(WriteError) as raised:
        atomic_save_tensors({"weight": torch.zeros(1000)}, path)
    message = str(raised.value)
    assert message.startswith(f"cannot write {path}: No space left on device (needs ") and "free)" in message
    assert not path.exists() and not list(path.parent.glob(".*.tmp"))


def test_tensors_saved_through_memory_are_the_bytes_torch_writes_to_a_file(tmp_path):
    state = {"weight": torch.arange(12.0).reshape(3, 4), "step": 7}
    atomic_save_tensors(state, tmp_path / "a.pt")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    assert (tmp_path / "a.pt").read_bytes() == buffer.getvalue()
    loaded = torch.load(tmp_path / "a.pt", weights_only=True)
    assert torch.equal(loaded["weight"], state["weight"]) and loaded["step"] == 7


# Status and leftovers -----------------------------------------------------------------------------------------------
def test_status_counts_each_run_once_and_pretrainings_apart(tmp_path):
    from prunebench.grid.grid_status import grid_status

    configs = _grid("magnitude")
    runs, checkpoints = tmp_path / "runs", tmp_path / "checkpoints"
    runs.mkdir()
    checkpoints.mkdir()
    (runs / f"{configs[0].run_id}.json").write_text(json.dumps({"status": "ok"}))
    (checkpoints / f"{configs[0].run_id}.pt").write_bytes(b"")  # left beside a finished record
    (checkpoints / f"{configs[1].run_id}.pt").write_bytes(b"")  # interrupted
    claims = ClaimStore(tmp_path)
    pretraining = claims.try_claim("dense-0123456789abcdef")
    (checkpoints / "dense-0123456789abcdef.pt").write_bytes(b"")
    status = grid_status(tmp_path, configs)
    counted = status.done + status.statuses["failed"] + len(status.running) + len(status.interrupted)
    assert counted + status.pending == len(configs)
    assert (status.done, status.interrupted, len(status.running)) == (1, [configs[1].run_id], 0)
    assert [info.key for info in status.pretraining] == ["dense-0123456789abcdef"]
    assert "dense pre-trainings running 1" in status.summary()
    pretraining.release()


def test_a_finished_runs_leftover_checkpoint_is_removed_and_a_live_runs_is_not(tmp_path):
    configs = _grid("random")[:2]
    store = ResultStore(tmp_path)
    store.checkpoints.mkdir(parents=True)
    for config in configs:
        store.checkpoint_path(config.run_id).write_bytes(b"")
    held = ClaimStore(tmp_path).try_claim(configs[1].run_id)
    assert remove_leftover_checkpoints(store, configs) == 1
    assert not store.checkpoint_path(configs[0].run_id).exists()
    assert store.checkpoint_path(configs[1].run_id).exists()
    held.release()


def test_a_worker_whose_parent_is_gone_stops_instead_of_failing_its_run():
    from prunebench.grid.local_worker import _EventReporter
    from prunebench.run.run_checkpoint import STOP

    read, write = os.pipe()
    os.close(read)
    STOP.clear()
    try:
        reporter = _EventReporter(os.fdopen(write, "w"))
        reporter.epoch_done("pretrain", 1, 2, 0.5)  # the parent is gone: a broken pipe
        assert STOP and STOP.reason == "the parent process died"
        reporter.epoch_done("pretrain", 2, 2, 0.4)  # nothing more is sent, nothing raised
    finally:
        STOP.clear()


def test_a_broken_plugin_is_reported_once_not_once_per_worker(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    info = tmp_path / "site" / "broken_plugin-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[prunebench.methods]\nbroken = no_such_plugin_module\n")
    flags = [
        "--preset",
        "synthetic-tiny",
        "--methods",
        "random",
        "--scopes",
        "global",
        "--sparsity",
        "0.5,0.9",
    ]
    result = subprocess.run(
        [str(Path(sys.executable).parent / "bench"), "run", *flags, "--epochs", "2", "--jobs", "2"]
        + ["--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site")},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "plugin 'broken'" in line]
    assert len(said) == 1, result.stderr


def test_submitting_leaves_no_literal_job_id_folder(tmp_path):
    pytest.importorskip("submitit")
    from prunebench.grid.slurm_executor import SlurmOptions, submit
    from prunebench.run.run_context import RunOptions

    options = SlurmOptions(cluster="local", tasks=1, gpus=0, time=5)
    jobs = submit([], tmp_path, RunOptions(), FAST, options)  # a task with nothing to do starts and ends
    for job in jobs:
        job.wait()
    assert job.result() == {"records": 0, "interrupted": 0}
    assert sorted(p.name for p in (tmp_path / "slurm").iterdir()) == [job.job_id for job in jobs]
