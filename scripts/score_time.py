"""Scoring time of the pruning-at-initialization methods on a preset's initial model and scoring data.

    python scripts/score_time.py [--preset mnist5k-lenet5] [--sparsity 0.95] [--scope global] [--repeats 3]

Times ``method.masks(...)`` as the harness calls it (on a copy of the seed's initial model, with the training loader
as scoring data), SynFlow's rounds included; prints the median over repeats.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from prunebench.datasets import LoaderRequest, get_dataset
from prunebench.methods.base import ScoringData, ScoringMethod
from prunebench.methods.method_registry import get_method
from prunebench.pruning.prunable import prunable_weights
from prunebench.run.run_context import initial_model
from prunebench.zoo.presets import get_preset

METHODS = ("magnitude_init", "snip", "grasp", "synflow")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mnist5k-lenet5")
    parser.add_argument("--sparsity", type=float, default=0.95)
    parser.add_argument("--scope", default="global")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    preset = get_preset(args.preset)
    dataset = get_dataset(preset.dataset)
    loaders = dataset.make_loaders(LoaderRequest(batch_size=preset.batch_size, seed=0, device=device))
    data = ScoringData(loaders.train, dataset.num_classes)
    model = initial_model(preset, 0, device)
    print(
        f"{preset.name} ({preset.model} on {preset.dataset}), {device}, {torch.get_num_threads()} threads, "
        f"sparsity {args.sparsity}, scope {args.scope}"
    )
    for name in METHODS:
        method = get_method(name).build()
        assert isinstance(method, ScoringMethod)
        seconds = []
        for _ in range(args.repeats):
            scratch = copy.deepcopy(model)
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            method.masks(scratch, prunable_weights(scratch), args.sparsity, args.scope, data)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - started)
        print(f"{name:15s} {statistics.median(seconds) * 1e3:9.1f} ms  (median of {args.repeats})")


if __name__ == "__main__":
    main()
