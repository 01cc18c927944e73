"""What claims, heartbeats and per-epoch checkpoints cost a run, relative to the run itself.

Runs one configuration of a preset (default: the default preset's dense baseline) ``--repeats`` times each way,
interleaved: bare (the run and its record written, no checkpoint and no claim: what the runner did before claims
and checkpoints) and as a grid runner runs it (claimed, heartbeat thread, checkpoint every ``--every`` epochs, record written, checkpoint and claim
removed). Prints the median wall time of each, the overhead in percent, and the checkpoint's size and save time.

    python scripts/scaleout_overhead.py [--preset mnist5k-lenet300] [--method dense] [--repeats 5] [--every 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from prunebench.grid.experiment import Experiment
from prunebench.grid.result_store import ResultStore
from prunebench.grid.scheduler import Runner, RunnerSettings
from prunebench.run.run_checkpoint import CheckpointPolicy, RunCheckpoint
from prunebench.run.runner import execute


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mnist5k-lenet300")
    parser.add_argument("--method", default="dense")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--every", default="1", help="--checkpoint-every (default: every epoch)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    experiment = Experiment(preset=args.preset, methods=args.method, seeds=1, sparsity=[0.9])
    config = next(c for c in experiment.configs() if c.method == args.method)
    device = torch.device("cpu")
    policy = CheckpointPolicy.parse(args.every)
    bare, managed, saves, sizes, save_times, write_times = [], [], [], [], [], []

    class Timed(RunCheckpoint):
        """Times each save as the training thread sees it (the snapshot), and each background write."""

        def save(self, trainer, phase):
            started = time.perf_counter()
            super().save(trainer, phase)
            save_times.append(time.perf_counter() - started)

        def _write(self, snapshot):
            started = time.perf_counter()
            super()._write(snapshot)
            write_times.append(time.perf_counter() - started)
            sizes.append(self.path.stat().st_size)

    import prunebench.grid.scheduler as scheduler

    scheduler.RunCheckpoint = Timed
    with tempfile.TemporaryDirectory() as scratch:
        execute(config, device, Path(scratch) / "cache")  # warm-up (and the dense pre-training's cache)
        for repeat in range(args.repeats):
            plain = ResultStore(Path(scratch) / f"plain{repeat}")
            started = time.perf_counter()
            plain.save(execute(config, device, Path(scratch) / "cache"))
            bare.append(time.perf_counter() - started)
            store = ResultStore(Path(scratch) / f"grid{repeat}")
            store.ensure_writable()
            (store.root / "cache").symlink_to(Path(scratch) / "cache")
            count = len(save_times)
            started = time.perf_counter()
            Runner([config], store, device, settings=RunnerSettings(checkpoint=policy)).run()
            managed.append(time.perf_counter() - started)
            saves.append(len(save_times) - count)
    b, m = statistics.median(bare), statistics.median(managed)
    print(f"{config.label} on {args.preset}, {args.threads} thread(s), {args.repeats} interleaved repeats")
    print(f"bare run + record:             {b:.3f} s (median)")
    print(f"claimed + heartbeat + ckpt:    {m:.3f} s (median), {saves[0]} checkpoint(s) per run")
    print(f"overhead:                      {100 * (m - b) / b:+.2f}% (wall time, noisy on a shared machine)")
    per_run = sum(save_times) / max(len(saves), 1)
    print(
        f"checkpoint snapshots in the training thread: {per_run:.3f} s per run, {100 * per_run / b:.2f}% of it"
    )
    if sizes:
        print(
            f"checkpoint: {statistics.median(sizes) / 1e6:.2f} MB; per save (median) "
            f"{1000 * statistics.median(save_times):.2f} ms in the training thread (the snapshot), "
            f"{1000 * statistics.median(write_times):.1f} ms writing in the background"
        )


if __name__ == "__main__":
    main()
