"""SparseGPT's layer-wise reconstruction: prune a weight matrix and update the kept weights to keep its outputs on the
calibration inputs (Frantar & Alistarh 2023, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot").

For a layer ``W`` (``out x in``) with inputs ``X`` and ``H = 2 X X^T`` (damped by ``percdamp`` times the mean of its
diagonal), SparseGPT processes the columns left to right in blocks of ``blocksize`` (Algorithm 1). At the start of a
block it chooses the block's mask from the OBS saliency ``w^2 / d_c^2`` ("Adaptive Mask Selection"), where ``d`` is
the diagonal of the upper Cholesky factor of ``H^-1``: ``d_c^2`` is ``[H_F^-1]_cc`` of the columns not yet processed,
the denominator of the OBS error of eq. 3. Then for each column ``c`` it zeroes the pruned entries and spreads their
error over the later columns with the row ``c`` of that factor (the OBS update of eq. 3 along the sequence of inverse
Hessians, eq. 4, which the factor's rows hold; inside the block at once, to the later blocks after it, the "lazy
batch updates"). An N:M pattern chooses its mask every ``M`` columns from the weights updated so far ("Extension to
Semi-Structured Sparsity"), as the official ``fasterprune`` with ``prune_n``/``prune_m``.

Deviations from the official ``fasterprune`` (``IST-DASLab/sparsegpt``, as vendored in ``locuslab/wanda``):

* **Exact counts.** The official code prunes, in each block, the entries whose saliency is at most the one at rank
  ``int(numel * sparsity)`` of the sorted block: ``int(numel * sparsity) + 1`` entries (more at ties), so every block
  keeps one weight fewer than its share. Here the layer's count (the scope's) is split over the column blocks in
  proportion to their widths (:func:`~prunebench.pruning.keep_budget.counts_from_densities`), and each block keeps
  exactly its share: its highest saliencies over all rows (``per_layer``) or each row its share of the block
  (``per_output``; a row's total is then within one weight per block of the others'). At the official code's count
  the masks and weights are the official ones (docs/one-shot.md, "Fidelity to the official code").
* **N:M.** The official ``prune_n`` is the number *pruned* of every ``prune_m``; an ``N:M`` group here is the number
  *kept* (NVIDIA's convention). For 2:4 and 4:8 the two read the same. The pattern needs ``blocksize`` to be a
  multiple of ``M`` (the official code would cut a window at a block's end).
* **Dead inputs.** The official code sets the weights of inputs that are zero on every calibration sample to zero
  before it prunes: their saliency is then 0, its mask prunes them first, and where they outnumber a block's pruned
  share the layer ends sparser than asked. Here they keep their values and compete by their saliency like the others
  (their rows of ``H`` are decoupled, so pruning them or not leaves the reconstruction of the other weights the
  same); the mask alone says what is pruned, exactly the count.
* The computation is in float32 as the official code; the result is returned in the weight's dtype.
"""

from __future__ import annotations

import torch

from prunebench.core.errors import UsageError
from prunebench.pruning.comparison_groups import group_mask, nm_pattern
from prunebench.pruning.keep_budget import counts_from_densities


def damped_inverse_factor(hessian: torch.Tensor, percdamp: float) -> torch.Tensor:
    """The upper Cholesky factor of ``(H + damp I)^-1``, dead inputs (zero diagonal) set to 1 as the official code."""
    hessian = hessian.to(torch.float32).clone()
    dead = torch.diag(hessian) == 0
    hessian[dead, dead] = 1.0
    damp = percdamp * torch.mean(torch.diag(hessian))
    hessian.diagonal().add_(damp)
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(hessian))
    return torch.linalg.cholesky(inverse, upper=True)


def obs_saliency(weight2d: torch.Tensor, hessian: torch.Tensor, percdamp: float = 0.01) -> torch.Tensor:
    """``w^2 / d_c^2`` with ``d`` the diagonal of the upper Cholesky factor of the damped ``H^-1``, the saliency
    SparseGPT selects its masks by, of the weights as they are before any update (what the ``global`` scope compares
    across layers)."""
    factor = damped_inverse_factor(hessian, percdamp)
    return weight2d.to(torch.float32) ** 2 / torch.diag(factor).reshape(1, -1) ** 2


def sparsegpt_prune(
    weight2d: torch.Tensor,
    hessian: torch.Tensor,
    count: int,
    group: str,
    blocksize: int = 128,
    percdamp: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(new_weight2d, keep_mask2d)``: exactly ``count`` weights kept, placed by ``group``, the kept ones updated."""
    rows, columns = weight2d.shape
    pattern = nm_pattern(group)
    if pattern is not None:
        group_mask(weight2d, count, group)  # the pattern's checks: count and input size
        if blocksize % pattern[1]:
            raise UsageError(
                f"SparseGPT's blocksize {blocksize} must be a multiple of M for the {group} pattern"
            )
    weight = weight2d.to(torch.float32).clone()
    factor = damped_inverse_factor(hessian, percdamp)
    keep = torch.zeros_like(weight, dtype=torch.bool)
    starts = list(range(0, columns, blocksize))
    widths = {str(s): min(s + blocksize, columns) - s for s in starts}
    sizes = {k: w * rows for k, w in widths.items()}
    block_counts = counts_from_densities(sizes, dict.fromkeys(sizes, count / weight.numel()), count)
    for start in starts:
        stop = start + widths[str(start)]
        block = weight[:, start:stop].clone()
        block_factor = factor[start:stop, start:stop]
        diagonal = torch.diag(block_factor)
        block_keep = None
        if pattern is None:
            block_keep = group_mask(block**2 / diagonal.reshape(1, -1) ** 2, block_counts[str(start)], group)
        errors = torch.zeros_like(block)
        for column in range(stop - start):
            if pattern is not None and column % pattern[1] == 0:
                window = slice(column, column + pattern[1])
                saliency = block[:, window] ** 2 / diagonal[window].reshape(1, -1) ** 2
                keep[:, start:stop][:, window] = group_mask(
                    saliency, saliency.numel() * pattern[0] // pattern[1], group
                )
            kept = block_keep[:, column] if block_keep is not None else keep[:, start + column]
            values = block[:, column]
            quantized = torch.where(kept, values, torch.zeros_like(values))
            error = (values - quantized) / diagonal[column]
            block[:, column:] -= error.unsqueeze(1) @ block_factor[column, column:].unsqueeze(0)
            block[:, column] = quantized
            errors[:, column] = error
        if block_keep is not None:
            keep[:, start:stop] = block_keep
        weight[:, start:stop] = block
        weight[:, stop:] -= errors @ factor[start:stop, stop:]
    return weight.to(weight2d.dtype), keep
