"""What a pruned model is, counted from its weights: sparsity, parameters, FLOPs, per-layer density, collapse.

Sparsity is counted from weights that are exactly zero, never from a mask. FLOPs follow ShrinkBench's theoretical
speedup: each Conv/Linear layer costs its dense multiply-accumulates times its weight density; other operations
(normalization, pooling, activations) are not counted. One multiply-accumulate is two FLOPs, the convention of
``torch.utils.flop_counter``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from prunebench.prunable import PRUNABLE_TYPES, prunable_weights


@dataclass
class LayerStats:
    name: str
    shape: list[int]
    size: int
    nonzero: int
    density: float
    flops_dense: int
    flops_sparse: float


def layer_flops(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Dense FLOPs of one example through each Conv/Linear layer, keyed by the layer's weight name."""
    flops: dict[str, int] = {}
    handles = []

    def counter(name: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            weight = module.weight
            if isinstance(module, nn.Linear):
                macs = output.numel() * module.in_features
            else:
                macs = output.numel() * weight[0].numel()
            flops[name] = flops.get(name, 0) + 2 * macs

        return hook

    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE_TYPES):
            handles.append(module.register_forward_hook(counter(f"{name}.weight" if name else "weight")))
    device = next(model.parameters()).device
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return flops


@torch.no_grad()
def account(
    model: nn.Module, input_shape: tuple[int, ...], prunable: dict[str, torch.Tensor] | None = None
) -> dict[str, Any]:
    """The accounting fields of a run record for ``model`` as it is now."""
    weights = prunable if prunable is not None else prunable_weights(model)
    flops = layer_flops(model, input_shape)
    layers = []
    for name, weight in weights.items():
        nonzero = int(torch.count_nonzero(weight))
        density = nonzero / weight.numel()
        dense = flops.get(name, 0)
        layers.append(
            LayerStats(name, list(weight.shape), weight.numel(), nonzero, density, dense, dense * density)
        )
    size = sum(layer.size for layer in layers)
    nonzero = sum(layer.nonzero for layer in layers)
    params_total = sum(p.numel() for p in model.parameters())
    params_nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    pruned_names = set(weights)
    flops_dense = sum(flops.values())
    flops_sparse = sum(layer.flops_sparse for layer in layers) + sum(
        f for name, f in flops.items() if name not in pruned_names
    )
    densities = [layer.density for layer in layers]
    return {
        "achieved_sparsity": 1.0 - nonzero / size if size else 0.0,
        "prunable_weights": size,
        "prunable_nonzero": nonzero,
        "params_total": params_total,
        "params_nonzero": params_nonzero,
        "compression_ratio": params_total / max(params_nonzero, 1),
        "flops_dense": flops_dense,
        "flops_sparse": flops_sparse,
        "speedup": flops_dense / flops_sparse if flops_sparse else float("inf"),
        "min_layer_density": min(densities) if densities else 1.0,
        "collapsed": any(layer.nonzero == 0 for layer in layers),
        "layers": [asdict(layer) for layer in layers],
    }
