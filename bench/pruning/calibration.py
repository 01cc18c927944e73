"""Calibration statistics of each prunable layer's inputs, captured with forward hooks, and the blocks a model is
pruned in, for the one-shot schedule (:mod:`prunebench.run.one_shot`).

A layer's inputs are the rows it multiplies by its weight ``weight.reshape(out, -1)``: a linear layer's input
``[..., in]`` flattened over every leading dimension (the tokens of a language model), a convolution's unfolded
patches (:func:`torch.nn.functional.unfold`, in its order: channel, kernel row, kernel column; one row per output
position). From them, in float32 on the model's device, :class:`LayerInputs` keeps the sum of squares of each input
feature (Wanda's ``||X_j||_2^2``) and, when asked, SparseGPT's Hessian ``H = (2 / rows) X^T X``. The official
SparseGPT code scales ``H`` by the number of calibration sequences instead of rows; its damping is relative to the
mean of ``diag(H)``, so the reconstruction does not depend on that scale.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from prunebench.core.errors import UsageError


@dataclass
class LayerInputs:
    """What the calibration data fed one layer."""

    rows: int
    """Input rows accumulated (samples x positions; a convolution's output positions)."""
    sq_norms: torch.Tensor
    """``[in_features]`` float32: the sum over rows of ``x_j ** 2`` (Wanda's ``||X_j||_2`` squared)."""
    hessian: torch.Tensor | None
    """``[in_features, in_features]`` float32: ``(2 / rows) X^T X``, as SparseGPT's ``add_batch``; ``None`` when
    not asked for."""


def layer_rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The rows ``[rows, in_features]`` (float32) that ``module`` multiplies by ``weight.reshape(out, -1)`` for its
    input ``x``."""
    if isinstance(module, nn.Conv2d):
        if isinstance(module.padding, str):
            raise UsageError(
                f"one_shot unfolds convolutions with numeric padding; a {module} has padding={module.padding!r}"
            )
        patches = F.unfold(
            x.float(), module.kernel_size, module.dilation, module.padding, module.stride
        )  # [batch, in_features, positions]
        return patches.transpose(1, 2).reshape(-1, patches.shape[1])
    return x.float().reshape(-1, x.shape[-1])


def _check_capturable(name: str, module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        if module.groups != 1 or module.padding_mode != "zeros":
            raise UsageError(
                f"one_shot captures convolutions with groups=1 and zero padding; {name} has groups={module.groups}, "
                f"padding_mode={module.padding_mode!r}"
            )
    elif not isinstance(module, nn.Linear):
        raise UsageError(
            "one_shot captures the inputs of nn.Linear and nn.Conv2d layers; "
            f"{name} belongs to a {type(module).__name__}"
        )


class _Accumulator:
    """Running sums of one layer's input rows."""

    def __init__(self, hessian: bool) -> None:
        self.hessian = hessian
        self.rows = 0
        self.sq_norms: torch.Tensor | None = None
        self.gram: torch.Tensor | None = None

    def add(self, rows: torch.Tensor) -> None:
        squares = rows.square().sum(dim=0)
        self.sq_norms = squares if self.sq_norms is None else self.sq_norms + squares
        if self.hessian:
            gram = rows.T @ rows
            self.gram = gram if self.gram is None else self.gram + gram
        self.rows += rows.shape[0]

    def result(self, name: str) -> LayerInputs:
        if self.rows == 0 or self.sq_norms is None:
            raise UsageError(
                f"layer {name} received no input during calibration (its module is never called in the forward "
                f"pass, as nn.MultiheadAttention's out_proj); one_shot prunes layers it can observe"
            )
        hessian = self.gram * (2.0 / self.rows) if self.gram is not None else None
        return LayerInputs(self.rows, self.sq_norms, hessian)


def weight_modules(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    """The module whose ``weight`` each parameter name (``features.0.weight``) is, checked capturable."""
    modules = {}
    for name in names:
        path, _, attribute = name.rpartition(".")
        module = model.get_submodule(path)
        if attribute != "weight":
            raise UsageError(
                f"one_shot prunes the weight of nn.Linear and nn.Conv2d layers; {name} is not a layer's weight"
            )
        _check_capturable(name, module)
        modules[name] = module
    return modules


@torch.no_grad()
def capture_inputs(
    model: nn.Module,
    names: Sequence[str],
    batches: Iterable[torch.Tensor],
    hessian: bool = False,
) -> dict[str, LayerInputs]:
    """The inputs of the layers whose weights are ``names`` on the calibration ``batches`` (model inputs), by a
    forward pass of ``model`` as it is (in eval mode, restored afterwards) with a forward hook on each layer."""
    modules = weight_modules(model, names)
    sums = {name: _Accumulator(hessian) for name in names}

    def hook_of(name: str, module: nn.Module):
        return lambda _module, args, _output: sums[name].add(layer_rows(module, args[0]))

    handles = [module.register_forward_hook(hook_of(name, module)) for name, module in modules.items()]
    training = model.training
    model.eval()
    try:
        for inputs in batches:
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    return {name: sums[name].result(name) for name in names}


def pruning_blocks(model: nn.Module, names: Sequence[str]) -> list[list[str]]:
    """The blocks the one-shot pass prunes in order: the model's ``pruning_blocks()`` restricted to the run's
    prunable ``names`` (a block left empty is dropped; a prunable weight the model's blocks leave out is its own block
    after them), else each prunable weight alone, in module order."""
    declared = getattr(model, "pruning_blocks", None)
    if declared is None:
        return [[name] for name in names]
    wanted = set(names)
    blocks = [[name for name in block if name in wanted] for block in declared()]
    blocks = [block for block in blocks if block]
    placed = [name for block in blocks for name in block]
    if len(placed) != len(set(placed)):
        raise UsageError(f"{type(model).__name__}.pruning_blocks() names a parameter in two blocks")
    return blocks + [[name] for name in names if name not in placed]


def first_examples(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]], count: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``count`` examples of ``batches`` (``(inputs, targets)`` pairs), in their batches (fewer when the
    data has fewer)."""
    taken, left = [], count
    for inputs, targets in batches:
        if left <= 0:
            break
        taken.append((inputs[:left], targets[:left]))
        left -= len(taken[-1][0])
    if not taken:
        raise UsageError("the calibration data is empty")
    return taken
