"""Many short runs through runners that are killed, replaced, started late or requeued: runs lost, runs written
twice, records that differ, wall time.

Runs a grid of ``--runs`` short runs (the ``synthetic-tiny`` preset at two epochs: random and magnitude-at-init
pruning, or ``--methods``, at two sparsities over as many seeds as needed, each seed with its dense baseline) once undisturbed with
``--jobs`` workers, then once in each scenario of ``--scenarios``, each into a directory of its own:

* ``kills``: a random worker is killed with SIGKILL every ``--kill-every`` seconds on average (as an out-of-memory
  killer would; the parent starts a replacement, handed the original run list) and, every third kill, the whole
  ``bench run`` with its workers (as a lost node), after which it is started again until the grid is done;
* ``late``: a second ``bench run --jobs N`` on the same directory, started ``--late`` seconds after the first (its
  workers start while the first's are finishing runs);
* ``slurm``: ``bench run --executor slurm --slurm-cluster local --slurm-time 1 --wait`` with ``--slurm-tasks`` tasks:
  submitit's local cluster signals each task 30 s before its one-minute limit and requeues it, so a grid longer
  than a minute completes only through requeues (or, when submitit stops requeueing, the command must exit
  non-zero saying how many runs are left).

Every record write is logged (through a ``sitecustomize`` on the runners' path), so the script counts the runs
written twice; then it checks that each record equals the undisturbed grid's (all but the timing fields).

``--batch K`` runs every runner, the undisturbed one too, with the batched engine (``bench run --batch K``): a killed
batch must then resume each of its runs from its own checkpoint, batched again or alone, to the same record.

    python scripts/scaleout_kills.py [--runs 1000] [--jobs 4] [--kill-every 3] [--scenarios kills,late,slurm]
                                     [--batch K] [--methods random,magnitude_init]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

AUDIT = """
import os
import prunebench.grid.result_store

_save = prunebench.grid.result_store.ResultStore.save


def save(self, record):
    path = _save(self, record)
    with open(os.environ["PRUNEBENCH_AUDIT"], "a") as log:
        log.write(record["run_id"] + "\\n")
    return path


prunebench.grid.result_store.ResultStore.save = save
"""


def grid_flags(runs: int, methods: str) -> list[str]:
    per_seed = 1 + 2 * len(methods.split(","))  # dense, and each method at two sparsities
    seeds = max(1, round(runs / per_seed))
    return [
        "--preset", "synthetic-tiny", "--epochs", "2", "--methods", methods, "--scopes", "global,learned",
        "--sparsity", "0.5,0.9", "--seeds", f"0-{seeds - 1}",
    ]  # fmt: skip


def bench(
    flags: list[str], out: Path, jobs: int, env: dict, *executor: str, stdout=subprocess.DEVNULL
) -> subprocess.Popen:
    where = list(executor) or ["--devices", "cpu", "--per-device", str(jobs)]
    command = [str(Path(sys.executable).parent / "bench"), "run", *flags, *where, "--out", str(out)]
    return subprocess.Popen(
        command, stdout=stdout, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env
    )


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def records(out: Path) -> dict[str, dict]:
    drop = ("wall_time_s", "finished_at")
    return {
        p.stem: {k: v for k, v in json.loads(p.read_text()).items() if k not in drop}
        for p in (out / "runs").glob("*.json")
    }


def undisturbed(
    flags: list[str], out: Path, jobs: int, env: dict, *executor: str
) -> tuple[dict[str, dict], float]:
    started = time.perf_counter()
    calm = bench(flags, out, jobs, env, *executor)
    _, err = calm.communicate()
    if calm.returncode != 0:
        raise SystemExit(f"the undisturbed grid failed: {err}")
    return records(out), time.perf_counter() - started


def with_kills(flags: list[str], out: Path, jobs: int, env: dict, kill_every: float, chance) -> str:
    """Kill a random worker, or every third time the whole ``bench run``, until the grid is done."""
    kills = group_kills = starts = 0
    while True:
        process = bench(flags, out, jobs, env)
        starts += 1
        while process.poll() is None:
            time.sleep(chance.expovariate(1.0 / kill_every))
            if process.poll() is not None:
                break
            kills += 1
            if kills % 3 == 0:
                group_kills += 1
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                break
            workers = children(process.pid)
            if workers:
                os.kill(chance.choice(workers), signal.SIGKILL)
        if process.wait() == 0:
            break
    return f"{kills} kills ({group_kills} of the whole bench run, {kills - group_kills} of one worker), {starts} start(s)"


def started_late(flags: list[str], out: Path, jobs: int, env: dict, late: float) -> str:
    """Two ``bench run`` on one directory, the second ``late`` seconds after the first; both must succeed."""
    first = bench(flags, out, jobs, env)
    time.sleep(late)
    second = bench(flags, out, jobs, env)
    errors = [process.communicate()[1] for process in (first, second)]
    if first.returncode or second.returncode:
        raise SystemExit(f"a runner failed: {errors}")
    return f"a second bench run --jobs {jobs} started {late:g} s after the first"


def requeued(flags: list[str], out: Path, tasks: int, env: dict) -> str:
    """The grid as Slurm tasks on submitit's local cluster, each limited to one minute and requeued."""
    slurm = ["--executor", "slurm", "--slurm-cluster", "local", "--slurm-time", "1", "--slurm-gpus", "0"]
    started = time.perf_counter()
    options = [*slurm, "--slurm-cpus", "1", "--slurm-tasks", str(tasks), "--wait"]
    process = bench(flags, out, 1, env, *options, stdout=subprocess.PIPE)
    said, err = process.communicate()
    elapsed = time.perf_counter() - started
    requeues = sum(
        path.read_text(errors="replace").count("stopped by SIGUSR2") for path in out.glob("slurm/*/*.err")
    )
    last = (said + err).strip().splitlines()[-1:]  # --wait's closing line (stdout), or an error (stderr)
    ended = f"exit {process.returncode}" + (f": {' '.join(last)}" if process.returncode and last else "")
    return f"{tasks} tasks of at most one minute, {requeues} requeue(s), {elapsed:.0f} s in all; the command's {ended}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--kill-every", type=float, default=3.0, help="mean seconds between kills")
    parser.add_argument("--late", type=float, default=8.0, help="seconds before the second runner starts")
    parser.add_argument("--slurm-tasks", type=int, default=2)
    parser.add_argument("--scenarios", default="kills,late,slurm", help="comma-separated: kills, late, slurm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--methods",
        default="random,magnitude_init",
        help="the grid's methods, each at sparsities 0.5 and 0.9, global scope or a learned-mask method's own "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--batch", type=int, default=1, help="runs each runner trains together (bench run --batch)"
    )
    args = parser.parse_args()
    chance = random.Random(args.seed)
    flags = [*grid_flags(args.runs, args.methods), "--batch", str(args.batch)]
    scenarios = {
        "kills": lambda out, env: with_kills(flags, out, args.jobs, env, args.kill_every, chance),
        "late": lambda out, env: started_late(flags, out, args.jobs, env, args.late),
        "slurm": lambda out, env: requeued(flags, out, args.slurm_tasks, env),
    }
    chosen = args.scenarios.split(",")
    unknown = sorted(set(chosen) - scenarios.keys())
    if unknown:
        raise SystemExit(f"unknown scenario {unknown[0]!r}; known: {', '.join(scenarios)}")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "hooks").mkdir()
        (root / "hooks" / "sitecustomize.py").write_text(AUDIT)
        env = {**os.environ, "PYTHONPATH": str(root / "hooks")}
        quiet = {**env, "PRUNEBENCH_AUDIT": os.devnull}
        workers, calm_time = undisturbed(flags, root / "calm", args.jobs, quiet)
        print(
            f"{len(workers)} runs, synthetic-tiny at 2 epochs, batches of {args.batch}; undisturbed with {args.jobs} "
            f"workers: {calm_time:.1f} s"
        )
        if "slurm" in chosen:  # a task trains in one process with its threads: compared with one alike
            alone, alone_time = undisturbed(flags, root / "calm-alone", 1, quiet, "--jobs", "1")
            print(f"undisturbed in one process (the reference of the Slurm tasks): {alone_time:.1f} s")
        for name in chosen:
            expected = alone if name == "slurm" else workers
            audit = root / f"{name}.log"
            audit.touch()
            started = time.perf_counter()
            what = scenarios[name](root / name, {**env, "PRUNEBENCH_AUDIT": str(audit)})
            elapsed = time.perf_counter() - started
            got = records(root / name)
            writes = Counter(audit.read_text().split())
            lost = len(expected.keys() - got.keys())
            twice = sum(1 for n in writes.values() if n > 1)
            fields = Counter(
                field
                for k in expected.keys() & got.keys()
                for field in expected[k].keys() | got[k].keys()
                if expected[k].get(field) != got[k].get(field)
            )
            differing = sorted(k for k in expected.keys() & got.keys() if expected[k] != got[k])
            different = len(differing)
            print(
                f"{name}: {elapsed:.1f} s ({elapsed / (alone_time if name == 'slurm' else calm_time):.2f}x); {what}"
            )
            print(
                f"  runs lost: {lost}; runs executed twice: {twice}; records that differ from the undisturbed "
                f"grid: {different}" + (f" (fields: {dict(fields)})" if fields else "")
            )
            for run_id in differing[:5]:
                record = got[run_id]
                print(
                    f"  differs: {run_id} {record['method']}/{record['scope']} s={record['sparsity']} "
                    f"seed={record['seed']} engine={record.get('engine')}"
                )


if __name__ == "__main__":
    main()
