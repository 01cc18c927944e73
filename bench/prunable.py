"""The prunable set, the same for every method: the weight of every Conv and Linear layer, first and last included.

Biases and normalization parameters are never pruned. ``keep_first_dense`` / ``keep_last_dense`` remove the first or
last layer from the set for every method alike (the run records them).
"""

from __future__ import annotations

from torch import nn

PRUNABLE_TYPES = (nn.Linear, nn.modules.conv._ConvNd)


def prunable_weights(
    model: nn.Module, *, keep_first_dense: bool = False, keep_last_dense: bool = False
) -> dict[str, nn.Parameter]:
    """The prunable weights of ``model`` in module order, keyed as in ``model.named_parameters()``."""
    weights = {
        f"{name}.weight" if name else "weight": module.weight
        for name, module in model.named_modules()
        if isinstance(module, PRUNABLE_TYPES) and isinstance(module.weight, nn.Parameter)
    }
    names = list(weights)
    if keep_first_dense and names:
        del weights[names[0]]
    if keep_last_dense and len(names) > 1:
        del weights[names[-1]]
    return weights
