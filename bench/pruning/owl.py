"""OWL's outlier-weighted layer-wise densities (Yin et al., ICML 2024, "Outlier Weighed Layerwise Sparsity (OWL): A
Missing Secret Sauce for Pruning LLMs to High Sparsity").

OWL measures each block's *outlier ratio* ``D_l``: the share of its Wanda scores ``|W_ij| * ||X_j||_2`` above ``M``
times their mean (the official ``check_outlier_mean`` with ``Hyper_m``; ``M = 5`` as the repository's LLaMA
examples, its ``main.py`` default is 3), and gives blocks with more outliers more density: the ratios are mapped
linearly onto ``[0, 2*lambda]`` and centred on the target density ``1 - s`` (``lib/prune_all.py``,
``prune_wanda_outlier``: ``(D - min) / (max - min) * 2 * Lamda``, minus its mean, plus ``1 - s``; ``lambda = 0.08``).
The paper states the range ``[S - lambda, S + lambda]``; the code's band is ``2 * lambda`` wide around the target but
centred by the mean, so a density lies within ``lambda`` of the target only when the ratios are spread symmetrically
(within ``2 * lambda`` always). This module follows the code.

Deviations from the official code:

* It centres the densities by their plain mean, which meets the budget only when every block has the same number
  of weights (the decoder layers of a language model). Here the shift is solved so that ``sum(size * density)``
  equals the budget exactly whatever the block sizes (for equal sizes it is the official shift, and the densities
  are the official ones: docs/one-shot.md, "Fidelity to the official code").
* Densities are clipped to ``[0, 1]``, with the shift solved again over the unclipped blocks (the official code
  floors a layer's sparsity at 0.01 and does not re-solve); the densities then span ``2 * lambda`` or less.
* Equal ratios give the uniform allocation (the official division by ``max - min`` gives NaN).
* The ratio is a fraction (the official one is in percent; the mapping onto ``[0, 2*lambda]`` does not depend on it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from prunebench.core.errors import UsageError
from prunebench.pruning.keep_budget import keep_budget


def outlier_ratio(scores: Sequence[torch.Tensor], m: float = 5.0) -> float:
    """The share of the entries of ``scores`` (a block's layers together) above ``m`` times their mean."""
    flat = torch.cat([s.detach().reshape(-1).to(torch.float64) for s in scores])
    if flat.numel() == 0:
        raise UsageError("a block without weights has no outlier ratio")
    return float((flat > m * flat.mean()).to(torch.float64).mean())


def owl_densities(
    ratios: Mapping[str, float], sizes: Mapping[str, int], sparsity: float, lam: float = 0.08
) -> dict[str, float]:
    """Each block's density: its outlier ratio mapped onto ``[0, 2*lam]``, shifted to meet the budget exactly."""
    if not 0.0 <= lam < 0.5:
        raise UsageError(f"OWL's lambda must lie in [0, 0.5), got {lam}")
    names = list(sizes)
    keep = keep_budget(sum(sizes.values()), sparsity)
    low, high = min(ratios[n] for n in names), max(ratios[n] for n in names)
    spread = high - low
    raw = {n: 0.0 if spread == 0 else (ratios[n] - low) / spread * 2 * lam for n in names}
    fixed: dict[str, float] = {}
    while True:
        free = [n for n in names if n not in fixed]
        if not free:
            return fixed
        budget = keep - sum(sizes[n] * fixed[n] for n in fixed)
        shift = (budget - sum(sizes[n] * raw[n] for n in free)) / sum(sizes[n] for n in free)
        densities = {n: raw[n] + shift for n in free}
        clipped = {n: min(max(d, 0.0), 1.0) for n, d in densities.items() if not 0.0 <= d <= 1.0}
        if not clipped:
            return {n: fixed.get(n, densities.get(n)) for n in names}
        fixed.update(clipped)
