"""The measured speed-up of 2:4 sparsity through PyTorch's semi-structured sparse tensors, on a CUDA GPU.

For each linear layer of a preset's model (the one-shot runs' prunable layers), a 2:4 mask from the suite's own
comparison group (:func:`prunebench.pruning.comparison_groups.group_mask` on the weights' magnitudes), the weight
converted with ``torch.sparse.to_sparse_semi_structured``, and ``F.linear`` timed against the dense weight on a
batch of inputs (CUDA events, median of ``--repeats``). Semi-structured kernels run on NVIDIA GPUs of compute
capability 8.0 and later, in half precision; elsewhere the script prints that the speed-up is not measured, which is
what a leaderboard of a CPU machine says of its 2:4 columns.

    python scripts/semi_structured_speed.py [--preset shakespeare-gpt] [--tokens 4096] [--repeats 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch
from torch import nn
from torch.nn import functional as F

from prunebench.pruning.comparison_groups import group_mask
from prunebench.zoo.model_zoo import build_model
from prunebench.zoo.presets import get_preset


def _time(function, repeats: int) -> float:
    """Median milliseconds of ``function()`` on the current CUDA stream."""
    times = []
    for _ in range(repeats + 5):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        function()
        stop.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times[5:])


def measure(preset: str, tokens: int, repeats: int) -> list[tuple[str, tuple[int, int], float, float]]:
    """Per linear layer: its name, shape, and the dense and 2:4 times (ms) of one ``F.linear`` on ``tokens`` rows."""
    from prunebench.datasets import get_dataset

    chosen = get_preset(preset)
    dataset = get_dataset(chosen.dataset)
    model = build_model(chosen.model, dataset.input_shape, dataset.num_classes)
    rows = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or module.weight.shape[1] % 4:
            continue
        weight = module.weight.detach().to("cuda", torch.float16)
        pruned = weight * group_mask(weight.abs(), weight.numel() // 2, "2:4")
        sparse = torch.sparse.to_sparse_semi_structured(pruned)
        x = torch.randn(tokens, weight.shape[1], device="cuda", dtype=torch.float16)
        dense_ms = _time(lambda w=pruned, x=x: F.linear(x, w), repeats)
        sparse_ms = _time(lambda w=sparse, x=x: F.linear(x, w), repeats)
        rows.append((name, tuple(weight.shape), dense_ms, sparse_ms))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="shakespeare-gpt")
    parser.add_argument("--tokens", type=int, default=4096, help="input rows of each timed product")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 0):
        print(
            "2:4 speed-up: not measured (semi-structured sparse kernels need an NVIDIA GPU of capability 8.0+)"
        )
        return 0
    print(f"{torch.cuda.get_device_name()}, float16, {args.tokens} rows, median of {args.repeats}")
    for name, shape, dense_ms, sparse_ms in measure(args.preset, args.tokens, args.repeats):
        print(
            f"{name:32s} {str(shape):14s} dense {dense_ms:.4f} ms  2:4 {sparse_ms:.4f} ms  {dense_ms / sparse_ms:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
