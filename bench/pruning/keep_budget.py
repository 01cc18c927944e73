"""The arithmetic of scopes: the keep budget and each layer's share of it, from layer shapes alone.

Pure Python on shapes and floats, so that the leaderboard can draw the uniform and ERK allocations of a budget
without importing torch. :mod:`prunebench.pruning.allocation` builds the masks of every run on these functions.

The budget is ``keep = round(N * (1 - sparsity))`` weights over the ``N`` prunable weights. Every scope keeps exactly
``keep`` weights in total, and each layer keeps its allotted count to within one weight of its target density.

* ``global``: one threshold over all scores (the highest ``keep`` scores survive wherever they are).
* ``uniform``: every layer at the target density.
* ``uniform_plus`` (Gale et al. 2019, "The State of Sparsity"; the LAMP repository's ``unifplus``): the first layer
  dense when it is a convolution (as the LAMP code: a fully connected first layer is pruned like the others), the last
  layer at most 80% sparse, the others uniform.
* ``erk`` (Evci et al. 2020, RigL, after Mocanu et al.'s Erdos-Renyi): density proportional to
  ``sum(shape) / prod(shape)``, scaled to the budget; layers that would exceed density 1 are made dense and the scale
  is solved again for the rest, until none exceeds 1 (as ``rigl/sparse_utils.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from prunebench.core.errors import UsageError

LAYERWISE_SCOPES = ("uniform", "uniform_plus", "erk")


def keep_budget(total: int, sparsity: float) -> int:
    """The number of weights kept out of ``total`` at ``sparsity``."""
    if not 0.0 < sparsity < 1.0:
        raise UsageError(f"sparsity must lie in (0, 1), got {sparsity}")
    keep = round(total * (1.0 - sparsity))
    if keep < 1:
        raise UsageError(f"sparsity {sparsity} leaves no weight of {total}")
    return keep


def layer_densities(shapes: Mapping[str, Sequence[int]], sparsity: float, scope: str) -> dict[str, float]:
    """Target density of each layer under a layer-wise ``scope`` (``shapes`` in module order)."""
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    total = sum(sizes.values())
    keep = keep_budget(total, sparsity)
    if scope == "uniform":
        return {name: keep / total for name in sizes}
    if scope == "uniform_plus":
        first_is_conv = len(next(iter(shapes.values()))) > 2
        return _uniform_plus_densities(sizes, keep, first_dense=first_is_conv)
    if scope == "erk":
        return _erk_densities(shapes, sizes, keep)
    raise UsageError(
        f"scope {scope!r} has no fixed layer densities; layer-wise scopes: {', '.join(LAYERWISE_SCOPES)}"
    )


def _uniform_plus_densities(sizes: dict[str, int], keep: int, *, first_dense: bool) -> dict[str, float]:
    names = list(sizes)
    if len(names) < 3:
        raise UsageError(
            "uniform_plus needs at least three prunable layers (first dense, last at most 80% sparse)"
        )
    dense = names[:1] if first_dense else []
    last = names[-1]
    middle = [n for n in names[:-1] if n not in dense]
    rest = keep - sum(sizes[n] for n in dense)
    density = rest / (sizes[last] + sum(sizes[n] for n in middle))
    last_density = density
    if density < 0.2:
        last_density = 0.2
        density = (rest - 0.2 * sizes[last]) / sum(sizes[n] for n in middle)
    if density <= 0.0:
        raise UsageError(
            f"uniform_plus cannot keep only {keep} weights: the dense first layer and 20% of the last layer "
            f"({sizes[last]} weights) already exceed it"
        )
    return {**dict.fromkeys(dense, 1.0), **{n: density for n in middle}, last: last_density}


def _erk_densities(shapes: Mapping[str, Sequence[int]], sizes: dict[str, int], keep: int) -> dict[str, float]:
    raw = {name: sum(shape) / math.prod(shape) for name, shape in shapes.items()}
    dense: set[str] = set()
    while True:
        sparse_names = [n for n in sizes if n not in dense]
        if not sparse_names:
            return dict.fromkeys(sizes, 1.0)
        budget = keep - sum(sizes[n] for n in dense)
        epsilon = budget / sum(raw[n] * sizes[n] for n in sparse_names)
        largest = max(raw[n] for n in sparse_names)
        if epsilon * largest <= 1.0:
            return {n: 1.0 if n in dense else epsilon * raw[n] for n in sizes}
        dense.update(n for n in sparse_names if raw[n] == largest)


def counts_from_densities(sizes: dict[str, int], densities: dict[str, float], keep: int) -> dict[str, int]:
    """Integer keep counts, each within one of ``size * density``, that add up to exactly ``keep``.

    Floors every layer, then hands the remaining weights to the layers with the largest fractional parts.
    """
    exact = {n: sizes[n] * densities[n] for n in sizes}
    counts = {n: min(sizes[n], math.floor(exact[n])) for n in sizes}
    short = keep - sum(counts.values())
    by_remainder = sorted(sizes, key=lambda n: (-(exact[n] - counts[n]), list(sizes).index(n)))
    for name in by_remainder:
        if short <= 0:
            break
        if counts[name] < sizes[name]:
            counts[name] += 1
            short -= 1
    return counts


def layer_keep_counts(shapes: Mapping[str, Sequence[int]], sparsity: float, scope: str) -> dict[str, int]:
    """Weights kept per layer under a layer-wise ``scope``; they add up to the exact budget."""
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    keep = keep_budget(sum(sizes.values()), sparsity)
    return counts_from_densities(sizes, layer_densities(shapes, sparsity, scope), keep)
