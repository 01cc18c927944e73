"""The default grid's time against its arithmetic floor: the FLOPs it computes at the rate torch.mm reaches.

    python scripts/grid_time.py [--seeds 3] [--jobs 2] [--batch K] [--out DIR]  # runs `bench run` with the defaults
    python scripts/grid_time.py --records DIR --jobs 2                  # the floor of records already there

The grid runs as a child process (``bench run --seeds N --jobs J``); its wall time and its CPU time are printed, the
CPU time divided by the workers being what the grid takes on quiet cores (on a machine shared with other jobs the
wall time also counts the waits for a core). With ``--batch K`` (the batched engine) a run's own ``wall_time_s`` spans
its batch, so the per-method table then says little; the grid's own times do not.

The floor counts, from the records and the existing FLOP accounting (each record's ``flops_dense``: one example's
forward pass, :mod:`prunebench.pruning.accounting`): 3x the forward FLOPs per training example (forward and backward), for
every epoch a run trains beyond the dense pre-training that after-training runs share (counted once per seed and
budget), ProbMask's learning phase once per relaxed sample; and one forward pass per test example. Masked weights
count as dense: training multiplies them. Rate: GFLOP/s of ``torch.mm`` on the shapes of the model's training step
(forward, input gradient and weight gradient of each Linear or flattened Conv at the preset's batch size), measured
in this process with the workers' thread count. Floor = FLOPs / (rate x workers).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from prunebench.datasets import LoaderRequest, get_dataset
from prunebench.run.run_config import RunConfig
from prunebench.run.run_context import initial_model
from prunebench.zoo.presets import DEFAULT_PRESET, get_preset


def mm_shapes(model: nn.Module, batch: int) -> list[tuple[int, int, int]]:
    """``(m, k, n)`` of every matrix product of one training step of the model's Linear layers (Conv layers as
    their im2col products are not modelled: the default preset is an MLP)."""
    shapes = []
    for module in model.modules():
        if isinstance(module, nn.Linear):
            out_features, in_features = module.weight.shape
            shapes += [
                (batch, in_features, out_features),  # forward
                (batch, out_features, in_features),  # gradient of the input
                (out_features, batch, in_features),  # gradient of the weight
            ]
    return shapes


def mm_rate(shapes: list[tuple[int, int, int]], seconds: float = 2.0) -> float:
    """FLOP/s of ``torch.mm`` over ``shapes`` in turn, on this process's CPU time."""
    operands = [(torch.randn(m, k), torch.randn(k, n)) for m, k, n in shapes]
    flops = sum(2 * m * k * n for m, k, n in shapes)
    for a, b in operands:
        torch.mm(a, b)
    rounds, started = 0, time.process_time()
    while time.process_time() - started < seconds:
        for a, b in operands:
            torch.mm(a, b)
        rounds += 1
    return rounds * flops / (time.process_time() - started)


def run_flops(record: dict, train_size: int, test_size: int, *, pretraining: bool = False) -> float:
    """Training and evaluation FLOPs of one run, without the dense pre-training it may share with others unless
    ``pretraining``."""
    forward = float(record["flops_dense"])
    epochs = record.get("epochs") or {}
    trained = float(epochs.get("budget", 0)) - (0.0 if pretraining else float(epochs.get("dense", 0)))
    if record["method"] == "probmask":
        samples = (record.get("hparams") or {}).get("samples", 2)
        trained += (samples - 1) * float(epochs.get("learn", 0))
    return 3 * forward * train_size * trained + forward * test_size


def grid_flops(records: list[dict], train_size: int, test_size: int) -> float:
    """Training and evaluation FLOPs of the runs of ``records`` (see the module docstring)."""
    done = [record for record in records if record.get("status") == "ok"]
    pretrainings = {
        (record["seed"], float(record["epochs"]["dense"]), float(record["flops_dense"]))
        for record in done
        if (record.get("epochs") or {}).get("dense")
    }
    shared = sum(3 * forward * train_size * dense for _, dense, forward in pretrainings)
    return sum(run_flops(record, train_size, test_size) for record in done) + shared


def print_methods(records: list[dict], train_size: int, test_size: int, rate: float) -> None:
    """Each method's runs: their own wall time in all against the floor of their own work on one worker."""
    print(
        "per method: runs, their wall time in all, its floor (one worker; a dense pre-training that runs share is"
    )
    print("in the wall time of the run that computed it and only in the dense baseline's floor), ratio")
    by_method: dict[str, list[dict]] = {}
    for record in records:
        if record.get("status") == "ok":
            by_method.setdefault(record["method"], []).append(record)
    rows = []
    for method, runs in by_method.items():
        wall = sum(float(r.get("wall_time_s") or 0.0) for r in runs)
        floor = sum(run_flops(r, train_size, test_size, pretraining=method == "dense") for r in runs) / rate
        rows.append((wall, method, len(runs), floor))
    for wall, method, count, floor in sorted(rows, reverse=True):
        print(f"  {method:<16}{count:>5}{wall:>9.0f} s{floor:>9.0f} s{wall / floor:>7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", help="the records of a grid already run (default: run the default grid)")
    parser.add_argument("--out", help="where to run the grid (default: a temporary directory)")
    parser.add_argument("--seeds", default="3", help="seeds of the grid (default: 3, the default grid)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default: 2)")
    parser.add_argument("--batch", default="auto", help="bench run --batch (default: auto)")
    args = parser.parse_args()

    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    torch.set_num_threads(threads)
    wall = cpu = None
    if args.records:
        root = Path(args.records)
    else:
        root = Path(args.out or tempfile.mkdtemp(prefix="grid-time-"))
        bench = [
            sys.executable,
            "-m",
            "prunebench.cli",
            "run",
            "--seeds",
            args.seeds,
            "--jobs",
            str(args.jobs),
            "--batch",
            args.batch,
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run([*bench, "--out", str(root)], check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    records = [json.loads(p.read_text()) for p in sorted((root / "runs").glob("*.json"))]
    preset = get_preset(DEFAULT_PRESET)
    loaders = get_dataset(preset.dataset).make_loaders(
        LoaderRequest(batch_size=preset.recipe.batch_size, seed=0, device=torch.device("cpu"))
    )
    train_size, test_size = len(loaders.train.inputs), len(loaders.test.inputs)
    model = initial_model(RunConfig.from_preset(preset, "dense", "global", 0.5, 0), torch.device("cpu"))
    rate = mm_rate(mm_shapes(model, preset.recipe.batch_size))
    flops = grid_flops(records, train_size, test_size)
    floor = flops / (rate * args.jobs)
    print(f"{len(records)} runs in {root}; {args.jobs} workers of {threads} thread(s)")
    print(f"FLOPs: {flops / 1e12:.2f} TFLOP; torch.mm: {rate / 1e9:.1f} GFLOP/s per worker (CPU time)")
    print(f"floor: {floor:.0f} s")
    if wall is not None:
        quiet = cpu / args.jobs
        print(f"grid: {wall:.0f} s wall, {cpu:.0f} s CPU ({quiet:.0f} s per worker)")
        print(f"ratio: {quiet / floor:.2f} (CPU time per worker / floor); {wall / floor:.2f} (wall / floor)")
    else:
        summed = sum(float(r.get("wall_time_s") or 0.0) for r in records)
        print(f"runs' own wall times: {summed:.0f} s in all, {summed / args.jobs:.0f} s per worker")
        print(f"ratio: {summed / args.jobs / floor:.2f} (runs' wall time per worker / floor)")
    print_methods(records, train_size, test_size, rate)


if __name__ == "__main__":
    main()
