"""Comparison groups: where a layer's keep count goes inside the layer (per layer, per output row, or an N:M pattern).

The scope (:mod:`prunebench.pruning.allocation`) decides how many weights each layer keeps; the comparison group
decides which scores compete for them. Sun et al. 2024 (Wanda, section 3 and its analysis) call this the *comparison
group*: ``per_output`` (each output row keeps its share, Wanda's default for language models), ``per_layer`` (the
layer's highest scores wherever they are, the suite's default for every method), and across the whole model, which
is the ``global`` scope here. An N:M pattern (Mishra et al. 2021, NVIDIA's 2:4 sparsity) keeps exactly N of every M
consecutive weights along the input dimension of each output row, ``weight.reshape(out, -1)`` (for a convolution the
unfolded order: input channel, kernel row, kernel column), so its density is N/M in every layer. The official Wanda
and SparseGPT code read their ``prune_n:prune_m`` as the number *pruned* of every M; for 2:4 and 4:8 the two
conventions agree.

Every group keeps exactly the layer's count; ties among equal scores are broken by ``torch.topk``, fixed for a given
device and PyTorch build.
"""

from __future__ import annotations

import re

import torch

from prunebench.core.errors import UsageError
from prunebench.pruning.keep_budget import counts_from_densities

COMPARISON_GROUPS = ("per_layer", "per_output")
"""The comparison groups other than N:M patterns; ``per_layer`` is the default of every run."""

_PATTERN = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse_group(text: str) -> str:
    """``text`` as a comparison group: ``per_layer``, ``per_output`` or ``N:M`` with 0 < N < M (normalised, e.g.
    ``" 2 : 4"`` -> ``"2:4"``); a one-line error saying what is accepted otherwise."""
    name = str(text).strip()
    if name in COMPARISON_GROUPS:
        return name
    match = _PATTERN.match(name)
    if match:
        n, m = int(match.group(1)), int(match.group(2))
        if 0 < n < m:
            return f"{n}:{m}"
    raise UsageError(
        f"unknown comparison group {text!r}; give per_layer, per_output or an N:M pattern with 0 < N < M (e.g. 2:4)"
    )


def nm_pattern(group: str) -> tuple[int, int] | None:
    """``(N, M)`` of an N:M pattern, ``None`` for ``per_layer`` and ``per_output``."""
    match = _PATTERN.match(group)
    return (int(match.group(1)), int(match.group(2))) if match else None


def top_mask(score: torch.Tensor, count: int) -> torch.Tensor:
    """Boolean mask of exactly ``count`` highest scores (``torch.topk``: among equal scores the choice is fixed for
    a given device and PyTorch build, so the mask is deterministic)."""
    flat = score.detach().reshape(-1)
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if count > 0:
        mask[torch.topk(flat, count, sorted=False).indices] = True
    return mask.view_as(score)


def group_mask(score: torch.Tensor, count: int, group: str) -> torch.Tensor:
    """Boolean keep mask of ``score``'s shape with exactly ``count`` weights kept, placed by ``group``."""
    score = score.detach()
    if group == "per_layer":
        return top_mask(score, count)
    rows = score.reshape(score.shape[0], -1)
    if group == "per_output":
        return _per_output(rows, count).view_as(score)
    pattern = nm_pattern(group)
    if pattern is None:
        raise UsageError(
            f"unknown comparison group {group!r}; accepted: per_layer, per_output or N:M (e.g. 2:4)"
        )
    return _n_of_m(rows, count, *pattern).view_as(score)


def _per_output(rows: torch.Tensor, count: int) -> torch.Tensor:
    """Each row keeps its share of ``count`` (equal densities, exact total: the rows with the largest remainders keep
    one more, first rows first) and, inside the row, its highest scores; among equal scores the lower column index is
    pruned first, as the official stable ascending sort of ``prune_wanda``."""
    size = rows.shape[1]
    names = [str(i) for i in range(rows.shape[0])]
    density = count / rows.numel()
    counts = counts_from_densities(dict.fromkeys(names, size), dict.fromkeys(names, density), count)
    mask = torch.zeros_like(rows, dtype=torch.bool)
    per_row = torch.tensor([counts[name] for name in names], device=rows.device)
    order = torch.argsort(rows, dim=1, stable=True)
    ranks = torch.arange(size, device=rows.device).expand_as(rows)
    mask.scatter_(1, order, ranks >= size - per_row[:, None])
    return mask


def _n_of_m(rows: torch.Tensor, count: int, n: int, m: int) -> torch.Tensor:
    """Exactly ``n`` kept of every ``m`` consecutive weights of each row (their highest scores)."""
    out, size = rows.shape
    if size % m:
        raise UsageError(
            f"the {n}:{m} pattern needs each output row's input size to be a multiple of {m}; this layer has "
            f"{size} inputs per row (shape {out}x{size})"
        )
    if count != rows.numel() * n // m:
        raise UsageError(
            f"the {n}:{m} pattern keeps {n}/{m} of every layer ({rows.numel() * n // m} of {rows.numel()} here), "
            f"not {count}: run it in the uniform scope at sparsity {1 - n / m:g}"
        )
    blocks = rows.reshape(out, size // m, m)
    keep = torch.zeros_like(blocks, dtype=torch.bool)
    keep.scatter_(2, torch.topk(blocks, n, dim=2).indices, True)
    return keep.reshape(out, size)
