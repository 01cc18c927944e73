"""What a pruned model is, counted from its weights: sparsity, parameters, FLOPs, per-layer density, collapse.

Sparsity is counted from weights that are exactly zero, never from a mask.

FLOPs are those ``torch.utils.flop_counter.FlopCounterMode`` counts for one example (batch 1, evaluation mode, no
gradients): convolutions (transposed ones included), matrix products and attention; one multiply-accumulate is two
FLOPs. Normalization, pooling, activations and other element-wise operations are not counted. Attention runs on its
plain path while counting (PyTorch's fused fast path and fused CPU kernels hide its products from the counter).

Each operation's FLOPs are attributed to the weight it multiplies, found by operand: the tensor arguments of the
operation that are one of the given weights, a view of it or a copy of it (the largest, where there are several).
Modules whose ``forward`` is never called count too (``nn.MultiheadAttention`` applies ``out_proj`` and its packed
``in_proj_weight`` inside ``F.multi_head_attention_forward``). The sparse count follows ShrinkBench's theoretical
speedup: each weight's FLOPs times its density. Operations with no given weight among their operands (attention
scores and their product with the values, layers left out of the prunable set) count in the dense and sparse totals
alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from prunebench.pruning.prunable import prunable_weights


@dataclass
class LayerStats:
    name: str
    shape: list[int]
    size: int
    nonzero: int
    density: float
    flops_dense: int
    flops_sparse: float


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one example: per given weight, those of the operations that multiply it; ``total``: all of them."""

    per_weight: dict[str, int]
    total: int


def _storage(tensor: torch.Tensor) -> int | None:
    """The address of the memory ``tensor`` lives in (shared by its views); ``None`` when it has none."""
    try:
        address = tensor.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return None
    return address or None


class _ByWeight(TorchDispatchMode):
    """Adds the FLOPs ``counter`` counts for each operation to the weight among its operands.

    Where several given weights feed one operation, the largest takes its FLOPs (a bias given as a weight is added
    in ``addmm`` or a convolution, not multiplied).

    Entered inside ``counter``, so that every operation passes here first and the counter's total grows by exactly
    that operation's FLOPs while it runs. Outputs of operations that only read one weight (copies, dtype changes) are
    that weight too; they are kept alive for the count so that their memory is never reused by another tensor.
    """

    def __init__(self, counter: FlopCounterMode, weights: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        self.counter = counter
        self.flops = dict.fromkeys(weights, 0)
        self.sizes = {name: weight.numel() for name, weight in weights.items()}
        self.owner: dict[int, str] = {}
        for name, weight in weights.items():
            address = _storage(weight)
            if address is not None:  # a weight tied under two names counts once, under the first
                self.owner.setdefault(address, name)
        self.copies: list[torch.Tensor] = []

    def _owners(self, tree: Any) -> list[str | None]:
        tensors = [t for t in tree_leaves(tree) if isinstance(t, torch.Tensor)]
        return [self.owner.get(_storage(t)) for t in tensors]  # type: ignore[arg-type]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        before = self.counter.get_total_flops()
        out = func(*args, **kwargs)
        added = self.counter.get_total_flops() - before
        owners = self._owners((args, kwargs))
        named = [name for name in owners if name is not None]
        if added and named:
            self.flops[max(named, key=self.sizes.__getitem__)] += added
        elif owners and len(named) == len(owners) and len(set(named)) == 1:
            for tensor in tree_leaves(out):
                address = _storage(tensor) if isinstance(tensor, torch.Tensor) else None
                if address is not None:
                    self.owner.setdefault(address, named[0])
                    self.copies.append(tensor)
        return out


@contextlib.contextmanager
def _plain_attention() -> Iterator[None]:
    """Attention as matrix products the counter sees: no fused fast path, the math kernel of SDPA."""
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


def count_flops(
    model: nn.Module,
    example: tuple[int, ...] | torch.Tensor,
    weights: Mapping[str, torch.Tensor] | None = None,
) -> FlopCount:
    """FLOPs of one example through ``model``, attributed to ``weights`` (default: the prunable set) by operand.

    ``example`` is one input (a batch of one, e.g. the first test example: token ids stay integers) or an input
    shape, for which an all-zeros float input is used.
    """
    weights = prunable_weights(model) if weights is None else weights
    device = next(model.parameters()).device
    inputs = (
        example.to(device) if isinstance(example, torch.Tensor) else torch.zeros(1, *example, device=device)
    )
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), _plain_attention(), FlopCounterMode(display=False) as counter:
            with _ByWeight(counter, weights) as attribution:
                model(inputs)
    finally:
        model.train(was_training)
    return FlopCount(attribution.flops, counter.get_total_flops())


@torch.no_grad()
def account(
    model: nn.Module,
    example: tuple[int, ...] | torch.Tensor,
    prunable: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """The accounting fields of a run record for ``model`` as it is now (FLOPs of ``example``, see :func:`count_flops`)."""
    weights = prunable if prunable is not None else prunable_weights(model)
    flops = count_flops(model, example, weights)
    layers = []
    for name, weight in weights.items():
        nonzero = int(torch.count_nonzero(weight))
        density = nonzero / weight.numel()
        dense = flops.per_weight[name]
        layers.append(
            LayerStats(name, list(weight.shape), weight.numel(), nonzero, density, dense, dense * density)
        )
    size = sum(layer.size for layer in layers)
    nonzero = sum(layer.nonzero for layer in layers)
    params_total = sum(p.numel() for p in model.parameters())
    params_nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    unweighted = flops.total - sum(flops.per_weight.values())
    flops_sparse = unweighted + sum(layer.flops_sparse for layer in layers)
    densities = [layer.density for layer in layers]
    return {
        "achieved_sparsity": 1.0 - nonzero / size if size else 0.0,
        "prunable_weights": size,
        "prunable_nonzero": nonzero,
        "params_total": params_total,
        "params_nonzero": params_nonzero,
        "compression_ratio": params_total / max(params_nonzero, 1),
        "flops_dense": flops.total,
        "flops_sparse": flops_sparse,
        "speedup": flops.total / flops_sparse if flops_sparse else float("inf"),
        "min_layer_density": min(densities) if densities else 1.0,
        "collapsed": any(layer.nonzero == 0 for layer in layers),
        "layers": [asdict(layer) for layer in layers],
    }
