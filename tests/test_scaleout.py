"""Scale-out: claims, checkpoints inside a run, stopping and resuming, worker processes, status, Slurm options.

The checks are against properties that must hold: a resumed run gives the record of an uninterrupted one bit for
bit (on the CPU), every run of a grid is executed exactly once whatever the number of runners and kills, exactly
one of several racing processes wins a claim.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from prunebench.core.errors import UsageError
from prunebench.grid.claims import ClaimStore
from prunebench.grid.experiment import Experiment, parse_devices
from prunebench.grid.grid_run import run_grid
from prunebench.grid.result_store import ResultStore
from prunebench.grid.scheduler import RunnerSettings
from prunebench.methods.method_registry import combinations, get_method
from prunebench.pruning.saved_masks import MASK_KEY, read_mask, unpack
from prunebench.run.method_contract import record_differences
from prunebench.run.recipe import OptimConfig
from prunebench.run.run_checkpoint import CheckpointPolicy, RunCheckpoint, RunInterrupted
from prunebench.run.runner import execute
from prunebench.run.trainer import Trainer

CPU = torch.device("cpu")


def _grid(methods: str, scopes: str = "global,learned", sparsities=(0.9,), seeds: int = 1, epochs: int = 2):
    experiment = Experiment(
        preset="synthetic-tiny", methods=methods, scopes=scopes, sparsity=list(sparsities), seeds=seeds
    )
    experiment.set("recipe", "epochs", [epochs])
    return experiment.configs()


# Claims ---------------------------------------------------------------------------------------------------------
def test_a_claim_is_exclusive_until_released(tmp_path):
    claims = ClaimStore(tmp_path)
    first = claims.try_claim("run")
    assert first is not None and claims.try_claim("run") is None and claims.is_held("run")
    first.release()
    assert not claims.is_held("run")
    assert claims.try_claim("run") is not None


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_claim_of_a_dead_process_or_without_heartbeat_is_taken_over(tmp_path):
    claims = ClaimStore(tmp_path, stale_after_s=60)
    path = claims.path("dead")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"host": claims.host, "pid": _dead_pid(), "start": time.time()}))
    assert not claims.is_held("dead") and claims.try_claim("dead") is not None

    other_host = claims.path("silent")
    other_host.write_text(json.dumps({"host": "elsewhere", "pid": 1, "start": time.time()}))
    assert claims.try_claim("silent") is None  # alive as far as anyone can tell
    os.utime(other_host, (time.time() - 61, time.time() - 61))
    taken = claims.try_claim("silent")
    assert taken is not None and json.loads(other_host.read_text())["pid"] == os.getpid()


def test_an_owner_notices_that_its_claim_was_taken_over(tmp_path):
    owner = ClaimStore(tmp_path, stale_after_s=60).try_claim("run")
    os.utime(owner.path, (time.time() - 100, time.time() - 100))  # suspended for longer than the timeout
    assert ClaimStore(tmp_path, stale_after_s=60).try_claim("run") is not None
    owner.beat()
    assert owner.lost
    owner.release()  # leaves the new owner's file alone
    assert owner.path.exists()


def test_a_runner_that_judged_a_claim_stale_too_late_leaves_the_new_owner_alone(tmp_path):
    claims = ClaimStore(tmp_path, stale_after_s=60)
    path = claims.path("run")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"host": claims.host, "pid": _dead_pid(), "start": 0, "token": "dead"}))
    late = claims._stale_token(path)  # judged stale here, acts only after another runner took the claim over
    owner = claims.try_claim("run")
    assert late == "dead" and owner is not None
    assert claims._take_over("run", path, late) is None
    assert owner.still_mine() and not list(path.parent.glob(".*"))  # no marker nor staged file left behind

    marker = path.with_name(".run.dead.takeover")  # a runner killed while taking the claim over
    marker.touch()
    assert claims._take_over("run", path, "dead") is None and marker.exists()
    os.utime(marker, (time.time() - 61, time.time() - 61))
    assert claims._take_over("run", path, "dead") is None and not marker.exists()
    assert owner.still_mine()


def _race(root: str, keys: list[str], stale: bool, barrier, results) -> None:
    claims = ClaimStore(Path(root), stale_after_s=60)
    barrier.wait()
    won = [key for key in keys if claims.try_claim(key) is not None]
    results.put(won)


@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "takeover"])
def test_exactly_one_of_racing_processes_wins_each_claim(tmp_path, stale):
    keys = [f"run{i}" for i in range(60)]
    if stale:  # every key held by a dead owner: the racers all try to take it over
        claims = ClaimStore(tmp_path)
        claims.directory.mkdir(parents=True)
        for key in keys:
            claims.path(key).write_text(json.dumps({"host": claims.host, "pid": _dead_pid(), "start": 0}))
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(6), context.Queue()
    racers = [
        context.Process(target=_race, args=(str(tmp_path), keys, stale, barrier, results)) for _ in range(6)
    ]
    for racer in racers:
        racer.start()
    won = [key for _ in racers for key in results.get(timeout=60)]
    for racer in racers:
        racer.join()
    assert sorted(won) == sorted(keys)


# Checkpoints inside a run ---------------------------------------------------------------------------------------
class _Batches:
    """Six batches per epoch, a fixed order per epoch (as the suite's loaders)."""

    def __init__(self) -> None:
        self.epoch = 0

    def __len__(self) -> int:
        return 6

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.epoch)
        for _ in range(6):
            yield torch.randn(8, 5, generator=generator), torch.randint(0, 3, (8,), generator=generator)


class _Noise(nn.Module):
    """A layer that draws from the global random stream at every step (as dropout or ProbMask's noise)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(5, 3)

    def forward(self, x):
        return self.linear(x + 0.1 * torch.randn_like(x))


def _train(checkpoint=None) -> tuple[dict, float]:
    torch.manual_seed(0)
    model = _Noise()
    optim = OptimConfig(lr=0.1, momentum=0.9, weight_decay=1e-3, schedule="cosine")
    trainer = Trainer(model, _Batches(), optim, 4, checkpoint=checkpoint, phase="train")
    loss = trainer.fit()
    return model.state_dict(), loss


@pytest.mark.parametrize("stop_at", [1, 6, 13, 23])
def test_a_trainer_stopped_anywhere_resumes_bit_identically(tmp_path, stop_at):
    reference, reference_loss = _train()
    calls = iter(range(1, 1000))
    stopping = RunCheckpoint(tmp_path / "c.pt", CheckpointPolicy(2), stop=lambda: next(calls) == stop_at)
    with pytest.raises(RunInterrupted):
        _train(stopping)
    weights, loss = _train(RunCheckpoint(tmp_path / "c.pt", CheckpointPolicy(2), stop=lambda: False))
    assert loss == reference_loss
    assert all(torch.equal(weights[k], reference[k]) for k in reference)


def test_checkpoint_policy_and_its_errors():
    assert CheckpointPolicy.parse("3") == CheckpointPolicy(3, None)
    assert CheckpointPolicy.parse("10m") == CheckpointPolicy(0, 10.0)
    assert CheckpointPolicy.parse("off") == CheckpointPolicy(0, None)
    with pytest.raises(UsageError, match="--checkpoint-every takes N"):
        CheckpointPolicy.parse("-1")


def _interrupted_then_resumed(config, tmp_path: Path, stop_at: int) -> dict:
    """``config``'s record after a stop at the ``stop_at``-th step boundary and a resume from its checkpoint."""
    calls = iter(range(1, 10**6))
    path = tmp_path / "resume.pt"
    try:
        return execute(
            config,
            CPU,
            tmp_path / "cache",
            checkpoint=RunCheckpoint(path, stop=lambda: next(calls) == stop_at),
        )
    except RunInterrupted:
        pass
    assert path.exists()
    return execute(config, CPU, tmp_path / "cache", checkpoint=RunCheckpoint(path, stop=lambda: False))


# A stop at fixed step boundaries (in the first epoch, and past its end) of every registered weight-pruning method,
# in its first scope, gives the record of the uninterrupted run. The method contract (tests/test_method_contract.py)
# stops every method in the middle of its phases in the default run.
RESUMED = [spec.name for spec in combinations() if spec.track == "unstructured"]


@pytest.mark.slow
@pytest.mark.parametrize("method", RESUMED)
def test_a_stopped_run_resumes_to_the_same_record(tmp_path, method):
    scope = (get_method(method).scopes or ("global",))[0]  # the dense baseline has none
    (config,) = [c for c in _grid(method, scopes=scope) if c.method == method]
    reference = execute(config, CPU, tmp_path / "cache")
    for stop_at in (3, 9):
        resumed = _interrupted_then_resumed(config, tmp_path, stop_at)
        assert record_differences(resumed, reference) == [], (method, stop_at)


# Runners sharing a directory ------------------------------------------------------------------------------------
def test_two_runners_on_one_directory_run_each_run_once(tmp_path):
    """Two runners (threads of one process here; processes in the slow test) over one grid."""
    import threading

    configs = _grid("magnitude,snip", sparsities=(0.9, 0.95))
    store = ResultStore(tmp_path)
    settings = RunnerSettings(poll_s=0.1)
    written: list[dict] = []
    from prunebench.grid.scheduler import Runner

    def work() -> None:
        written.extend(Runner(configs, store, CPU, settings=settings).run())

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r["run_id"] for r in written) == sorted(c.run_id for c in configs)
    assert len(list((tmp_path / "cache").glob("dense-*.pt"))) == 1
    assert not list((tmp_path / "claims").iterdir()) and not list((tmp_path / "checkpoints").glob("*"))


def test_devices_cpu_cpu_run_a_grid_in_two_workers(tmp_path):
    devices = parse_devices("cpu,cpu", 1)
    assert devices == [CPU, CPU] and parse_devices("cpu", 3) == [CPU] * 3
    configs = _grid("random")
    records = run_grid(configs, ResultStore(tmp_path), CPU, devices=devices)
    assert sorted(r["run_id"] for r in records) == sorted(c.run_id for c in configs)
    assert {r["status"] for r in records} == {"ok"}
    assert {r["threads"] for r in records} == {max(1, len(os.sched_getaffinity(0)) // 2)}
    assert run_grid(configs, ResultStore(tmp_path), CPU, devices=devices) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [("gpu", "not a device"), ("cuda:7", "PyTorch sees"), ("meta", "only cpu and cuda"), (",", "no device")],
)
def test_bad_devices_are_one_line_errors(text, message):
    if text == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    with pytest.raises(UsageError, match=message):
        parse_devices(text, 1)


# Status -----------------------------------------------------------------------------------------------------------
def test_status_counts_done_failed_running_stale_interrupted_and_pending(tmp_path):
    from prunebench.cli import main
    from prunebench.grid.grid_status import grid_status

    configs = _grid("magnitude", sparsities=(0.9, 0.95, 0.99))
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / f"{configs[0].run_id}.json").write_text(json.dumps({"status": "ok"}))
    (runs / f"{configs[1].run_id}.json").write_text(json.dumps({"status": "failed"}))
    claims = ClaimStore(tmp_path)
    live = claims.try_claim(configs[2].run_id)
    claims.path(configs[3].run_id).write_text(
        json.dumps({"host": claims.host, "pid": _dead_pid(), "start": 0})
    )
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / f"{configs[3].run_id}.pt").write_bytes(b"")
    status = grid_status(tmp_path, configs)
    assert (status.done, status.statuses["failed"], len(status.running), len(status.stale)) == (1, 1, 1, 1)
    assert status.interrupted == [configs[3].run_id] and status.pending == len(configs) - 4
    assert grid_status(tmp_path).pending is None
    assert main(["status", str(tmp_path), "--preset", "synthetic-tiny", "--methods", "magnitude"]) == 0
    live.release()


# Slurm options ------------------------------------------------------------------------------------------------------
def test_slurm_options_map_onto_submitit_parameters():
    from prunebench.grid.slurm_executor import SlurmOptions, parse_extra, parse_time

    assert [parse_time(t) for t in (90, "1:30", "2:00:00", "1-12:30", "0-0:0:30")] == [90, 2, 120, 2190, 1]
    options = SlurmOptions.from_mapping(
        {
            "partition": "gpu",
            "time": "4:00:00",
            "gpus": 1,
            "cpus": 10,
            "mem_gb": 64,
            "account": "lab",
            "qos": "high",
            "tasks": 16,
            "array_parallelism": 4,
            "extra": parse_extra(["constraint=a100"]),
        }
    )
    parameters = options.parameters()
    assert parameters["timeout_min"] == 240 and parameters["slurm_partition"] == "gpu"
    assert parameters["slurm_array_parallelism"] == 4
    assert parameters["slurm_additional_parameters"] == {"constraint": "a100"}
    for bad, message in (
        ({"time": "soon"}, "--slurm-time"),
        ({"tasks": 0}, "--slurm-tasks"),
        ({"gpu": 1}, "unknown"),
    ):
        with pytest.raises(UsageError, match=message):
            SlurmOptions.from_mapping(bad)
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_extra(["constraint"])


# Processes: kills, signals, several runners, submitit -----------------------------------------------------------
AUDIT = """
import os
import prunebench.grid.result_store, prunebench.run.trainer

_save, _fit = prunebench.grid.result_store.ResultStore.save, prunebench.run.trainer.Trainer.fit


def save(self, record):
    path = _save(self, record)
    with open(os.environ["PRUNEBENCH_TEST_AUDIT"], "a") as log:
        log.write(f"saved {record['run_id']}\\n")
    return path


def fit(self):
    if self.phase == "pretrain":
        with open(os.environ["PRUNEBENCH_TEST_AUDIT"], "a") as log:
            log.write(f"pretrain {os.getpid()}\\n")
    return _fit(self)


prunebench.grid.result_store.ResultStore.save, prunebench.run.trainer.Trainer.fit = save, fit
"""


@pytest.fixture
def audited(tmp_path, monkeypatch):
    """Every Python process started by the test logs each record it writes and each pre-training it starts."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(AUDIT)
    log = tmp_path / "audit.log"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("PRUNEBENCH_TEST_AUDIT", str(log))

    def entries(kind: str) -> list[str]:
        lines = log.read_text().splitlines() if log.exists() else []
        return [line.split()[1] for line in lines if line.startswith(kind)]

    return entries


GRID_FLAGS = [
    "--preset",
    "synthetic-tiny",
    "--epochs",
    "2",
    "--sparsity",
    "0.9",
    "--seeds",
    "1",
    "--scopes",
    "global,learned",
]


def _bench(*argv: str, **kwargs) -> subprocess.Popen:
    command = [str(Path(sys.executable).parent / "bench"), "run", *GRID_FLAGS, *argv]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **kwargs
    )


def _records(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (out / "runs").glob("*.json")}


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


@pytest.mark.slow
def test_two_bench_run_processes_share_one_directory(tmp_path, audited):
    out = tmp_path / "out"
    flags = ["--methods", "magnitude,lamp,snip", "--jobs", "1", "--out", str(out)]
    processes = [_bench(*flags) for _ in range(2)]
    try:
        for process in processes:
            _, err = process.communicate(timeout=900)
            assert process.returncode == 0, err
    finally:
        for process in processes:
            _kill_group(process)
    saved = audited("saved")
    assert len(saved) == len(set(saved)) == len(_records(out)) == len(_grid("magnitude,lamp,snip"))
    assert len(audited("pretrain")) == 1


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_gives_the_uninterrupted_grid(tmp_path, audited):
    import random

    methods = ["--methods", "magnitude,snip,str,gmp"]
    reference = _bench(*methods, "--jobs", "2", "--out", str(tmp_path / "reference"))
    _, err = reference.communicate(timeout=900)
    assert reference.returncode == 0, err
    expected = _records(tmp_path / "reference")
    Path(os.environ["PRUNEBENCH_TEST_AUDIT"]).unlink()  # count the writes of the killed grid only
    out = tmp_path / "out"
    chance = random.Random(0)
    for attempt in range(5):
        process = _bench(*methods, "--jobs", "2", "--out", str(out), "--checkpoint-every", "1")
        time.sleep(chance.uniform(2.0, 12.0))
        if attempt % 2:  # one worker, as the out-of-memory killer would
            workers = subprocess.run(
                ["pgrep", "-P", str(process.pid)], capture_output=True, text=True
            ).stdout.split()
            if workers:
                os.kill(int(chance.choice(workers)), signal.SIGKILL)
            time.sleep(chance.uniform(1.0, 4.0))
        _kill_group(process)
    final = _bench(*methods, "--jobs", "2", "--out", str(out))
    _, err = final.communicate(timeout=900)
    assert final.returncode == 0, err
    got = _records(out)
    assert got.keys() == expected.keys()
    assert all(record_differences(got[k], expected[k]) == [] for k in expected)
    saved = audited("saved")
    assert (
        len(saved) == len(set(saved)) <= len(expected)
    )  # no run written twice (kills may hit after a write)
    assert not list((out / "checkpoints").glob("*.pt")) and not list((out / "claims").glob("*.claim"))


@pytest.mark.slow
def test_sigterm_checkpoints_a_learned_mask_run_and_a_rerun_resumes_it(tmp_path):
    (config,) = [c for c in _grid("str", scopes="learned", epochs=4) if c.method == "str"]
    record = execute(config, CPU, tmp_path / "cache")
    mask = unpack(record.pop(MASK_KEY))  # written beside the record, not in it
    reference = json.loads(json.dumps(record, default=str))  # as written
    out = tmp_path / "out"
    flags = ["--methods", "str", "--epochs", "4", "--jobs", "1", "--out", str(out)]
    process = _bench(*flags)
    try:
        deadline = time.monotonic() + 600
        while not list((out / "checkpoints").glob("*.pt")) and time.monotonic() < deadline:
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=300)
    finally:
        _kill_group(process)
    assert process.returncode == 143 and "bench: stopped by SIGTERM" in err
    rerun = _bench(*flags)
    _, err = rerun.communicate(timeout=900)
    assert rerun.returncode == 0, err
    # versions: the checkout's commit is read once per process, and may change between them
    assert record_differences(_records(out)[config.run_id], reference, ignore=("versions",)) == []
    resumed = read_mask(out, config.run_id)
    assert resumed.keys() == mask.keys() and all(np.array_equal(resumed[k], mask[k]) for k in mask)


@pytest.mark.slow
def test_submitit_local_tasks_run_a_grid_and_take_over_a_killed_task(tmp_path, audited):
    from prunebench.grid.slurm_executor import SlurmOptions, submit
    from prunebench.run.run_context import RunOptions

    configs = _grid("magnitude,snip,str", epochs=3)
    out = tmp_path / "out"
    ResultStore(out).ensure_writable()
    settings = RunnerSettings(poll_s=0.5)
    jobs = submit(
        configs, out, RunOptions(), settings, SlurmOptions(cluster="local", tasks=2, gpus=0, time=30)
    )
    claims = ClaimStore(out)
    deadline = time.monotonic() + 600
    victim = None
    while victim is None and time.monotonic() < deadline:
        victim = next(
            (info.pid for info, _ in claims.all() if info.pid and not info.key.startswith("dense-")), None
        )
        time.sleep(0.2)
    assert victim is not None, "no task claimed a run"
    time.sleep(1.0)
    os.kill(victim, signal.SIGKILL)
    for job in jobs:
        try:
            job.wait()
        except Exception:  # noqa: BLE001, S110  (the killed task's job reports its death)
            pass
    assert _records(out).keys() == {c.run_id for c in configs}
    assert {r["status"] for r in _records(out).values()} == {"ok"}
    saved = audited("saved")
    assert len(saved) == len(set(saved))


def test_the_readme_status_example_runs_and_counts_the_pending_runs(tmp_path, capsys):
    import re
    import shlex

    from prunebench.cli import main

    page = (Path(__file__).resolve().parent.parent / "docs" / "cluster.md").read_text()
    block = re.search(r"```bash\n(bench run [^\n]*prunebench-status[^\n]*\n[^\n]*)\n```", page).group(1)
    for line in block.splitlines():
        argv = shlex.split(line.replace("/tmp/prunebench-status", str(tmp_path)))[1:]
        assert main(argv) == 0
    # seed 1's two runs are pending: the status was asked for seeds 0 and 1
    assert "done 2, failed 0, running 0, interrupted 0, pending 2" in " ".join(
        capsys.readouterr().out.split()
    )


def _live_workers(parent_pids: set[int]) -> list[int]:
    """Live ``prunebench.grid.local_worker`` processes whose parent is one of ``parent_pids`` or init (orphans)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes()
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if b"prunebench.grid.local_worker" in command and fields[0] != "Z" and int(fields[1]) in parent_pids:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _wait_for_claim(out: Path, timeout: float = 600) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for info, _ in ClaimStore(out).all():
            if info.pid:
                return info.pid
        time.sleep(0.1)
    raise AssertionError("no run was claimed")


# The local runner's faults found by fault injection: a killed worker, a parent killed or interrupted alone.
@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_its_run_taken_over(tmp_path):
    out = tmp_path / "out"
    process = _bench("--methods", "snip,random", "--jobs", "2", "--out", str(out))
    try:
        os.kill(_wait_for_claim(out), signal.SIGKILL)
        _, err = process.communicate(timeout=900)
    finally:
        _kill_group(process)
    assert process.returncode == 0, err
    assert "ended with signal 9" in err and "Traceback" not in err and "leaked" not in err
    assert _records(out).keys() == {c.run_id for c in _grid("snip,random")}


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "SIGINT"])
def test_workers_stop_with_their_parent(tmp_path, how):
    out = tmp_path / "out"
    process = _bench("--methods", "snip,random,str", "--jobs", "2", "--out", str(out))
    try:
        _wait_for_claim(out)
        workers = _live_workers({process.pid})
        assert len(workers) == 2
        started = time.monotonic()
        os.kill(process.pid, getattr(signal, how))  # the parent alone
        process.wait(timeout=120)
        deadline = time.monotonic() + 120
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(map(_alive, workers))
        elapsed = time.monotonic() - started
    finally:
        _kill_group(process)
    err = process.stderr.read()
    if how != "SIGKILL":
        assert process.returncode == (143 if how == "SIGTERM" else 130)
        assert "bench: stopped by" in err and "Traceback" not in err and "leaked" not in err
    assert elapsed < 120
    # every run started is either recorded or checkpointed, and a rerun finishes the grid
    rerun = _bench("--methods", "snip,random,str", "--jobs", "2", "--out", str(out))
    _, err = rerun.communicate(timeout=900)
    assert rerun.returncode == 0, err
    assert _records(out).keys() == {c.run_id for c in _grid("snip,random,str")}
