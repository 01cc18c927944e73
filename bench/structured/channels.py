"""Channels, the unit of the structured track: their coupling, one exact allocation layer, masks and removal.

A *channel* is an output channel of a Conv or Linear layer (a filter with its BatchNorm channel, a row of a Linear);
the classifier's outputs (the last Conv or Linear layer in module order) are never pruned. Channels tied together
(by a residual addition, or by a layer that must keep its input and output widths equal) form one **group channel**:
they are scored, kept and removed together. The groups come from Torch-Pruning's dependency graph
(:func:`channel_groups`), which traces the model once on an example input. A Linear layer after a ``Flatten``
(LeNet-5, a VGG head without global pooling) reads each channel of the convolution before it at every spatial
position: removing the channel removes those input columns (:attr:`Member.span`).

Every structured criterion scores the channels of each group (one score per group channel); :func:`allocate` turns
the scores into keep masks at the target, in either scope:

* unit ``channels``: remove exactly ``round(N * fraction)`` of the ``N`` group channels (``global``: the lowest
  scores wherever they are; ``uniform``: the same fraction of every group, counts rounded so that they add up to
  the exact total, as :func:`prunebench.pruning.keep_budget.counts_from_densities` does for weights);
* unit ``flops``: remove channels until the model's FLOPs fall to ``(1 - fraction)`` of the dense model's, as closely
  as channel granularity allows (``global``: greedily, lowest score first; ``uniform``: the smallest common fraction
  of every group that reaches the target, found by bisection). FLOPs are those :func:`prunebench.pruning.accounting.
  count_flops` counts (``torch.utils.flop_counter``); each layer's count scales with the fractions of its input and
  output channels kept (:class:`FlopModel`), and the run records the FLOPs the physically pruned model really has.

Every group keeps at least one channel (a layer with no channel left would disconnect the network).
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from prunebench.core.errors import UsageError
from prunebench.pruning.accounting import count_flops
from prunebench.pruning.keep_budget import counts_from_densities

UNITS = ("channels", "flops")
"""What a structured target counts: a fraction of the group channels, or a fraction of the dense FLOPs."""
STRUCTURED_SCOPES = ("global", "uniform")
"""How a structured budget is split across groups."""

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_NORMS = (nn.modules.batchnorm._BatchNorm,)


@dataclass(frozen=True)
class Member:
    """One module of a group: ``role`` is ``producer`` (a Conv/Linear whose output channels these are), ``norm``
    (a BatchNorm on them) or ``consumer`` (a Conv/Linear that reads them).

    Each group channel is ``span`` of the module's channels: ``index[k * span : (k + 1) * span]`` are those of the
    group's channel ``k`` (``index[k]`` when ``span`` is 1, as for every producer and norm). A Linear layer after a
    ``Flatten`` reads each channel at every spatial position: its ``span`` is the positions per channel.
    """

    module: str
    role: str
    index: tuple[int, ...]
    span: int = 1

    def channels(self, group_channels: Iterable[int]) -> list[int]:
        """The module's channels of the given group channels."""
        return [self.index[k * self.span + j] for k in group_channels for j in range(self.span)]


@dataclass(frozen=True)
class ChannelGroup:
    """Channels pruned together: ``size`` group channels, named after the layer that roots the group."""

    name: str
    size: int
    members: tuple[Member, ...]

    def of(self, role: str) -> list[Member]:
        return [m for m in self.members if m.role == role]


def classifier_name(model: nn.Module) -> str:
    """The classifier: the last Conv or Linear layer in module order (its outputs are never pruned)."""
    names = [name for name, module in model.named_modules() if isinstance(module, _LAYERS)]
    if not names:
        raise UsageError("the structured track needs a model with Conv or Linear layers")
    return names[-1]


def _handler_role(handler: object) -> str:
    name = getattr(handler, "__name__", "") or type(handler).__name__
    return "producer" if "out_channels" in name else "consumer"


def channel_groups(model: nn.Module, example: torch.Tensor) -> list[ChannelGroup]:
    """The model's groups of coupled channels, in module order of their root layer (Torch-Pruning's
    ``DependencyGraph.get_all_groups``, the classifier's outputs excluded).

    The model is traced in evaluation mode (BatchNorm statistics are left alone) and restored to its mode. A group
    that touches a module other than Conv, Linear or BatchNorm with channels (LayerNorm, GroupNorm, an attention
    layer) is a usage error: the structured track supports those three.
    """
    return _groups(model, _graph(model, example))


def _graph(model: nn.Module, example: torch.Tensor):
    """Torch-Pruning's dependency graph of ``model``, traced in evaluation mode (BatchNorm statistics untouched)."""
    import torch_pruning as tp

    training = model.training
    model.eval()
    try:
        return tp.DependencyGraph().build_dependency(model, example_inputs=example)
    finally:
        model.train(training)


def _groups(model: nn.Module, graph) -> list[ChannelGroup]:
    names = {module: name for name, module in model.named_modules()}
    classifier = model.get_submodule(classifier_name(model))
    found = []
    for group in graph.get_all_groups(ignored_layers=[classifier], root_module_types=_LAYERS):
        root = group[0].dep.target.module
        size = len(group[0].idxs)
        members: dict[tuple[str, str], dict[int, set[int]]] = {}
        for item in group:
            module = item.dep.target.module
            if module not in names:
                continue  # an element-wise operation of the traced graph (addition, activation, pooling)
            if isinstance(module, _NORMS):
                role = "norm"
            elif isinstance(module, _LAYERS):
                role = _handler_role(item.dep.handler)
            else:
                raise UsageError(
                    f"the structured track prunes Conv, Linear and BatchNorm channels; {names[module]} "
                    f"({type(module).__name__}) shares channels with {names[root]}"
                )
            channels = members.setdefault((names[module], role), {})
            roots = getattr(item, "root_idxs", None) or [None] * len(item.idxs)
            for position, (idx, root_idx) in enumerate(zip(item.idxs, roots, strict=True)):
                root_channel = position if root_idx is None else int(root_idx)
                channels.setdefault(root_channel, set()).add(int(getattr(idx, "idx", idx)))
        found.append(
            ChannelGroup(
                names[root],
                size,
                tuple(_member(module, role, by_root, size) for (module, role), by_root in members.items()),
            )
        )
    order = {name: i for i, name in enumerate(names.values())}
    return sorted(found, key=lambda group: order[group.name])


def _member(module: str, role: str, by_root: dict[int, set[int]], size: int) -> Member:
    """The member ``module`` whose channels of each group channel ``k`` are ``by_root[k]``.

    Every group channel must map to the same number of the module's channels, as a Flatten maps a convolution's
    channel to its spatial positions; another mapping is a usage error naming the module.
    """
    spans = {len(by_root.get(k, ())) for k in range(size)}
    span = spans.pop() if len(spans) == 1 else 0
    if span == 0 or len(by_root) != size or (role != "consumer" and span != 1):
        raise UsageError(
            f"the structured track cannot map the channels of {module} ({role}) to its group's {size} channels"
        )
    return Member(module, role, tuple(c for k in range(size) for c in sorted(by_root[k])), span)


class FlopModel:
    """The model's FLOPs as a function of the channels each group keeps.

    A Conv or Linear layer's FLOPs (counted once by ``torch.utils.flop_counter``) scale with the kept fraction of its
    output channels times the kept fraction of its input channels (a depthwise layer, whose input and output channels
    are one group: with that fraction once). Operations on no Conv/Linear weight count as a constant. This is exact
    for the layers the track supports; :func:`allocate` uses it to reach a FLOPs target channel by channel.
    """

    def __init__(self, model: nn.Module, example: torch.Tensor, groups: list[ChannelGroup]) -> None:
        modules = dict(model.named_modules())
        weights = {f"{n}.weight": m.weight for n, m in modules.items() if isinstance(m, _LAYERS)}
        count = count_flops(model, example, weights)
        self.dense = count.total
        self.layers = {name[: -len(".weight")]: flops for name, flops in count.per_weight.items()}
        self.constant = count.total - sum(self.layers.values())
        self.sizes = {g.name: g.size for g in groups}
        self.output: dict[str, str] = {}
        self.input: dict[str, str] = {}
        for group in groups:
            for member in group.of("producer"):
                self.output[member.module] = group.name
            for member in group.of("consumer"):
                self.input[member.module] = group.name
        self.touching: dict[str, list[str]] = {g.name: [] for g in groups}
        for layer in self.layers:
            for group in {self.output.get(layer), self.input.get(layer)} - {None}:
                self.touching[group].append(layer)

    def _fraction(self, group: str | None, kept: dict[str, int]) -> float:
        return 1.0 if group is None else kept[group] / self.sizes[group]

    def layer_flops(self, layer: str, kept: dict[str, int]) -> float:
        out_group, in_group = self.output.get(layer), self.input.get(layer)
        if out_group is not None and out_group == in_group:  # depthwise
            return self.layers[layer] * self._fraction(out_group, kept)
        return self.layers[layer] * self._fraction(out_group, kept) * self._fraction(in_group, kept)

    def flops(self, kept: dict[str, int]) -> float:
        """FLOPs of the model with ``kept[group]`` channels in each group."""
        return self.constant + sum(self.layer_flops(layer, kept) for layer in self.layers)


def _top(score: torch.Tensor, count: int) -> torch.Tensor:
    keep = torch.zeros(score.numel(), dtype=torch.bool)
    keep[torch.topk(score.detach().float().cpu(), count, sorted=False).indices] = True
    return keep


def _check_scores(scores: dict[str, torch.Tensor], groups: list[ChannelGroup]) -> None:
    for group in groups:
        score = scores.get(group.name)
        if score is None or score.shape != (group.size,):
            shape = None if score is None else tuple(score.shape)
            raise ValueError(f"the score of group {group.name} has shape {shape}, expected ({group.size},)")


def allocate(
    scores: dict[str, torch.Tensor],
    groups: list[ChannelGroup],
    unit: str,
    fraction: float,
    scope: str,
    flop_model: FlopModel | None = None,
) -> dict[str, torch.Tensor]:
    """Keep masks (one boolean per group channel, keyed by group name) removing ``fraction`` of the ``unit``.

    ``scores`` are higher-is-kept, one per group channel. See the module docstring for the rules; ``flop_model`` is
    required for the unit ``flops``. A target no allocation can reach while keeping a channel per group is a
    :class:`UsageError`.
    """
    if unit not in UNITS:
        raise UsageError(f"unknown structured unit {unit!r}; known: {', '.join(UNITS)}")
    if scope not in STRUCTURED_SCOPES:
        raise UsageError(f"unknown structured scope {scope!r}; known: {', '.join(STRUCTURED_SCOPES)}")
    if not 0.0 < fraction < 1.0:
        raise UsageError(f"a structured target is a fraction in (0, 1), got {fraction}")
    if not groups:
        raise UsageError("the model has no prunable channel group")
    _check_scores(scores, groups)
    sizes = {g.name: g.size for g in groups}
    if unit == "channels":
        total = sum(sizes.values())
        keep = total - round(total * fraction)
        if keep < len(groups):
            raise UsageError(
                f"removing {fraction} of the {total} channels leaves {keep}, fewer than one per group "
                f"({len(groups)} groups)"
            )
        if keep == total:
            return {n: torch.ones(s, dtype=torch.bool) for n, s in sizes.items()}
        if scope == "uniform":
            counts = counts_from_densities(sizes, dict.fromkeys(sizes, keep / total), keep)
            for name in [
                n for n, c in counts.items() if c == 0
            ]:  # a tiny group: one channel, from the largest
                counts[name] = 1
                counts[max(counts, key=lambda n: (counts[n], -list(sizes).index(n)))] -= 1
            return {n: _top(scores[n], counts[n]) for n in sizes}
        return _global_keep(scores, sizes, lambda kept, removed, group: removed >= total - keep)
    if flop_model is None:
        raise ValueError("the unit flops needs a FlopModel")
    target = (1.0 - fraction) * flop_model.dense
    floor = flop_model.flops(dict.fromkeys(sizes, 1))
    if floor > target:
        raise UsageError(
            f"a FLOPs reduction of {fraction} cannot be reached: with one channel per group the model keeps "
            f"{floor / flop_model.dense:.4f} of its FLOPs"
        )
    if scope == "uniform":
        low, high = 0.0, 1.0  # the kept fraction of every group; FLOPs grow with it
        for _ in range(60):
            middle = (low + high) / 2
            if flop_model.flops(_uniform_counts(sizes, middle)) <= target:
                low = middle
            else:
                high = middle
        counts = _uniform_counts(sizes, low)
        return {n: _top(scores[n], counts[n]) for n in sizes}
    state = {"flops": flop_model.dense}

    def reached(kept: dict[str, int], group: str) -> bool:
        before = {**kept, group: kept[group] + 1}
        state["flops"] -= sum(
            flop_model.layer_flops(layer, before) - flop_model.layer_flops(layer, kept)
            for layer in flop_model.touching[group]
        )
        return state["flops"] <= target * (1 + 1e-12)

    return _global_keep(scores, sizes, lambda kept, removed, group: reached(kept, group))


def _uniform_counts(sizes: dict[str, int], kept_fraction: float) -> dict[str, int]:
    return {n: min(s, max(1, round(s * kept_fraction))) for n, s in sizes.items()}


def _global_keep(
    scores: dict[str, torch.Tensor], sizes: dict[str, int], done: Callable[[dict[str, int], int, str], bool]
) -> dict[str, torch.Tensor]:
    """Remove channels lowest score first (each group's best channel is never removed) until
    ``done(kept, removed, group)`` after removing one from ``group``."""
    keep = {n: torch.ones(s, dtype=torch.bool) for n, s in sizes.items()}
    candidates: list[tuple[float, int, str, int]] = []
    for order, (name, score) in enumerate(scores.items()):
        values = score.detach().float().cpu()
        best = int(torch.argmax(values))
        candidates += [(float(values[i]), order, name, i) for i in range(sizes[name]) if i != best]
    candidates.sort()
    kept = dict(sizes)
    for removed, (_, _, name, index) in enumerate(candidates, 1):
        keep[name][index] = False
        kept[name] -= 1
        if done(kept, removed, name):
            break
    return keep


def channel_masks(
    model: nn.Module, groups: list[ChannelGroup], keep: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Parameter masks that zero the removed channels: each producer's weight rows and bias, each BatchNorm's
    weight and bias. A channel so zeroed outputs exactly zero (its BatchNorm's output is its bias, zero), so the
    masked model computes what the model with the channels removed computes (:func:`remove_channels`)."""
    modules = dict(model.named_modules())
    masks: dict[str, torch.Tensor] = {}
    for group in groups:
        pruned = (~keep[group.name]).nonzero().flatten().tolist()
        for member in group.members:
            if member.role == "consumer":
                continue
            module = modules[member.module]
            for kind in ("weight", "bias"):
                param = getattr(module, kind, None)
                if not isinstance(param, nn.Parameter):
                    continue
                key = f"{member.module}.{kind}"
                mask = masks.setdefault(key, torch.ones_like(param, dtype=torch.bool))
                mask[member.channels(pruned)] = False
    return masks


def remove_channels(model: nn.Module, example: torch.Tensor, keep: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` with the removed channels physically gone (Torch-Pruning prunes each group through its
    dependency graph, the coupled layers with it)."""
    import torch_pruning as tp

    pruned = copy.deepcopy(model)
    graph = _graph(pruned, example)
    modules = dict(pruned.named_modules())
    for group in _groups(pruned, graph):
        removed = (~keep[group.name]).nonzero().flatten().tolist()
        if not removed:
            continue
        root = modules[group.name]
        handler = tp.prune_linear_out_channels if isinstance(root, nn.Linear) else tp.prune_conv_out_channels
        own = dict(enumerate(next(m for m in group.members if m.module == group.name).index))
        graph.get_pruning_group(root, handler, idxs=[own[k] for k in removed]).prune()
    return pruned


class OutputMismatch(RuntimeError):
    """The physically pruned model does not compute what the masked model computes."""


@torch.no_grad()
def check_same_outputs(
    masked: nn.Module, pruned: nn.Module, inputs: torch.Tensor, tolerance: float = 1e-4
) -> float:
    """The largest absolute difference of the two models' outputs on ``inputs`` (evaluation mode, float32, no TF32);
    :class:`OutputMismatch` when it exceeds ``tolerance`` times the largest output magnitude (at least 1)."""
    modes = masked.training, pruned.training
    masked.eval()
    pruned.eval()
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    try:  # full float32 on CUDA too: TF32 convolutions would differ by more than the tolerance
        torch.backends.cuda.matmul.allow_tf32 = False
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
            reference = masked(inputs).float()
            output = pruned(inputs).float()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
        masked.train(modes[0])
        pruned.train(modes[1])
    if reference.shape != output.shape:
        raise OutputMismatch(
            f"output shapes differ: masked {tuple(reference.shape)}, pruned {tuple(output.shape)}"
        )
    difference = float((reference - output).abs().max())
    scale = max(1.0, float(reference.abs().max()))
    if not difference <= tolerance * scale:
        raise OutputMismatch(
            f"the physically pruned model's outputs differ from the masked model's by {difference:.3g} "
            f"(tolerance {tolerance * scale:.3g})"
        )
    return difference


@torch.inference_mode()
def measure_latency(
    models: dict[str, nn.Module], inputs: torch.Tensor, warmup: int = 10, repeats: int = 50
) -> dict[str, float]:
    """Median seconds of one forward pass of each model on ``inputs`` (evaluation mode), after ``warmup`` passes.

    The models are timed in alternation (one pass of each per round), so that a change of the machine's load
    during the measurement falls on all of them alike; on CUDA each pass is synchronized.
    """
    cuda = inputs.device.type == "cuda"
    modes = {name: model.training for name, model in models.items()}
    for model in models.values():
        model.eval()
    times: dict[str, list[float]] = {name: [] for name in models}
    try:
        for round_ in range(warmup + repeats):
            for name, model in models.items():
                if cuda:
                    torch.cuda.synchronize(inputs.device)
                started = time.perf_counter()
                model(inputs)
                if cuda:
                    torch.cuda.synchronize(inputs.device)
                if round_ >= warmup:
                    times[name].append(time.perf_counter() - started)
    finally:
        for name, model in models.items():
            model.train(modes[name])
    return {name: statistics.median(values) for name, values in times.items()}


def group_norms(
    model: nn.Module, groups: Iterable[ChannelGroup]
) -> dict[str, list[tuple[nn.Module, list[int]]]]:
    """Per group, its BatchNorm modules with the channel of each group channel; a usage error names the first
    group without one (Network Slimming and MaskSparsity score and penalize BatchNorm scales)."""
    modules = dict(model.named_modules())
    found = {}
    for group in groups:
        norms = [(modules[m.module], list(m.index)) for m in group.of("norm")]
        if not norms:
            raise UsageError(
                f"channel group {group.name} has no BatchNorm; this method scores BatchNorm scales (gamma), "
                "so it needs a model with BatchNorm after every pruned layer"
            )
        found[group.name] = norms
    return found


def kept_fraction(keep: dict[str, torch.Tensor]) -> float:
    """The fraction of group channels kept."""
    total = sum(mask.numel() for mask in keep.values())
    return sum(int(mask.sum()) for mask in keep.values()) / max(total, 1)


__all__ = [
    "STRUCTURED_SCOPES",
    "UNITS",
    "ChannelGroup",
    "FlopModel",
    "Member",
    "OutputMismatch",
    "allocate",
    "channel_groups",
    "channel_masks",
    "check_same_outputs",
    "classifier_name",
    "group_norms",
    "kept_fraction",
    "measure_latency",
    "remove_channels",
]
