"""Many short runs through local workers with random kills: runs lost, runs written twice, wall time.

Runs a grid of ``--runs`` short runs (the ``synthetic-tiny`` preset at two epochs: random and magnitude-at-init
pruning at two sparsities over as many seeds as needed, each seed with its dense baseline) with ``--jobs`` workers
twice: once undisturbed, once while a random worker is killed with SIGKILL every ``--kill-every`` seconds on average
(as an out-of-memory killer would) and, every third kill, the whole ``bench run`` with its workers (as a lost node),
after which it is started again until the grid is done. Every record write is logged (through a ``sitecustomize``
on the workers' path), so the script counts the runs written twice; then it checks that each record equals the
undisturbed grid's (all but the timing fields).

    python scripts/scaleout_kills.py [--runs 1000] [--jobs 4] [--kill-every 3]
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
import prunebench.results

_save = prunebench.results.ResultStore.save


def save(self, record):
    path = _save(self, record)
    with open(os.environ["PRUNEBENCH_AUDIT"], "a") as log:
        log.write(record["run_id"] + "\\n")
    return path


prunebench.results.ResultStore.save = save
"""


def grid_flags(runs: int) -> list[str]:
    seeds = max(1, round(runs / 5))  # per seed: dense, random and magnitude_init at two sparsities
    return [
        "--preset", "synthetic-tiny", "--epochs", "2", "--methods", "random,magnitude_init", "--scopes", "global",
        "--sparsity", "0.5,0.9", "--seeds", f"0-{seeds - 1}",
    ]  # fmt: skip


def bench(flags: list[str], out: Path, jobs: int, env: dict) -> subprocess.Popen:
    command = [
        str(Path(sys.executable).parent / "bench"),
        "run",
        *flags,
        "--devices",
        "cpu",
        "--per-device",
        str(jobs),
        "--out",
        str(out),
    ]
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--kill-every", type=float, default=3.0, help="mean seconds between kills")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    chance = random.Random(args.seed)
    flags = grid_flags(args.runs)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "hooks").mkdir()
        (root / "hooks" / "sitecustomize.py").write_text(AUDIT)
        env = {**os.environ, "PYTHONPATH": str(root / "hooks"), "PRUNEBENCH_AUDIT": str(root / "audit.log")}

        started = time.perf_counter()
        calm = bench(flags, root / "calm", args.jobs, env)
        _, err = calm.communicate()
        if calm.returncode != 0:
            raise SystemExit(f"the undisturbed grid failed: {err}")
        calm_time = time.perf_counter() - started
        expected = records(root / "calm")
        (root / "audit.log").unlink()

        kills = group_kills = restarts = 0
        started = time.perf_counter()
        while True:
            process = bench(flags, root / "killed", args.jobs, env)
            restarts += 1
            while process.poll() is None:
                time.sleep(chance.expovariate(1.0 / args.kill_every))
                if process.poll() is not None:
                    break
                kills += 1
                if kills % 3 == 0:
                    group_kills += 1
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                    break
                workers = [p for p in children(process.pid)]
                if workers:
                    os.kill(chance.choice(workers), signal.SIGKILL)
            if process.wait() == 0:
                break
        killed_time = time.perf_counter() - started
        got = records(root / "killed")
        writes = Counter((root / "audit.log").read_text().split())
    lost = len(expected.keys() - got.keys())
    twice = sum(1 for n in writes.values() if n > 1)
    different = sum(1 for k in expected.keys() & got.keys() if expected[k] != got[k])
    print(f"{len(expected)} runs, {args.jobs} workers, synthetic-tiny at 2 epochs")
    print(f"undisturbed: {calm_time:.1f} s")
    print(
        f"with kills:  {killed_time:.1f} s ({killed_time / calm_time:.2f}x), {kills} kills "
        f"({group_kills} of the whole bench run, {kills - group_kills} of one worker), {restarts} start(s)"
    )
    print(
        f"runs lost: {lost}; runs written twice: {twice}; records that differ from the undisturbed grid: {different}"
    )


if __name__ == "__main__":
    main()
