"""Time ``bench leaderboard`` on the default grid's records and on a large synthetic set made from them.

    python scripts/leaderboard_time.py [--records examples/default-grid/runs] [--synthetic 20000] [--format md,csv,png]

Each leaderboard is written by ``bench leaderboard`` in a child process, into a temporary copy of the records (the
examples stay as they are); its wall time and CPU time (user + system of the child) are printed, for the first
leaderboard of the records (every figure drawn) and for the next one (the figures kept: nothing they show changed). The synthetic set
repeats the records with new seeds (each copy's seeds shifted past the previous ones, run ids made unique), so that
it has the grid's rows and columns with more seeds per cell.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_leaderboard(root: Path, formats: str) -> tuple[float, float]:
    """Wall and CPU seconds of ``bench leaderboard root --format formats``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "prunebench.cli", "leaderboard", str(root), "--format", formats],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def report(count: int, root: Path, formats: str) -> None:
    """Print the first and the next leaderboard's times."""
    for moment in ("first", "next"):
        wall, cpu = timed_leaderboard(root, formats)
        print(f"{count:>6} records, {moment:>5}: {wall:6.2f} s wall, {cpu:6.2f} s CPU")


def synthetic_records(records: list[dict], count: int, into: Path) -> int:
    """Write ``count`` records (the given ones repeated with shifted seeds) into ``into``; returns how many."""
    into.mkdir(parents=True)
    span = 1 + max(int(r.get("seed", 0)) for r in records)
    written = 0
    for copy in range(-(-count // len(records))):
        for record in records:
            if written == count:
                return written
            clone = dict(record)
            clone["seed"] = int(record.get("seed", 0)) + copy * span
            if isinstance(clone.get("config"), dict):
                clone["config"] = {**clone["config"], "seed": clone["seed"]}
            run_id = f"{record.get('run_id', 'run')}-{copy}"
            clone["run_id"] = run_id
            (into / f"{run_id}.json").write_text(json.dumps(clone))
            written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default="examples/default-grid/runs", help="a directory of run records")
    parser.add_argument("--synthetic", type=int, default=20_000, help="size of the synthetic set (0: none)")
    parser.add_argument(
        "--format", default="md,csv,png", help="formats written (default: bench's, md,csv,png)"
    )
    args = parser.parse_args()

    sources = sorted(Path(args.records).glob("*.json"))
    records = [json.loads(p.read_text()) for p in sources]
    print(f"load average {os.getloadavg()[0]:.1f}; formats {args.format}")
    with tempfile.TemporaryDirectory() as temporary:
        grid = Path(temporary) / "grid"
        (grid / "runs").mkdir(parents=True)
        for path in sources:
            shutil.copy(path, grid / "runs" / path.name)
        report(len(records), grid, args.format)
        if args.synthetic:
            large = Path(temporary) / "large"
            count = synthetic_records(records, args.synthetic, large / "runs")
            report(count, large, args.format)


if __name__ == "__main__":
    main()
