"""What the learned-mask methods (ProbMask, STR, movement, soft movement) share: the plumbing around their mathematics.

* :class:`MaskedSession`: while the method learns, every prunable weight computes through a parametrization
  (:mod:`torch.nn.utils.parametrize`) that applies the method's mask function to it; at the end the
  parametrizations are removed, leaving a plain module whose weights are zero outside the final masks. Weights are
  found by parameter name, so a weight held directly by a module (``nn.MultiheadAttention.in_proj_weight``) is
  wrapped like a ``Linear``'s ``weight``, and a tied weight (one parameter held by several modules) is wrapped
  wherever it is used, so that every module computes with the masked weight. The raw weight stays the parametrization's ``original`` (the same
  parameter object), so the weight optimizer keeps training it and it comes back in place.
* :func:`exact_top_k`: the exact-count step, the highest scores at exactly the target, each layer keeping at least
  its floor. Hard movement's ``global`` scope, soft movement's enforcement and STR's projection are this step;
  ProbMask's enforcement is its own (it moves the fewest entries of a sampled mask, see
  :mod:`prunebench.methods.probmask`).
* :class:`TrackedTopK`: the same top-k at every step of a run whose scores move a little per step, found from the
  previous step's threshold instead of a sort of all scores.

The trainer gives the methods the rest: :attr:`~prunebench.trainer.Trainer.progress` (the fraction of the learning
phase done) and :attr:`~prunebench.trainer.Trainer.lr_factor` (the weights' learning-rate schedule).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.utils import parametrize

from prunebench.allocation import masks_from_scores, top_mask
from prunebench.masks import apply_masks
from prunebench.methods.base import FinalMasks, Masks, TrainingSession, Weights
from prunebench.prunable import weight_locations

if TYPE_CHECKING:
    from prunebench.trainer import Trainer


class MaskedSession(TrainingSession):
    """A learned-mask method's session: each prunable weight computes through its parametrization until :meth:`finish`.

    ``parametrizations`` maps each prunable weight's name to the module computing the weight the network uses from
    the raw one (``W -> W * M(S)`` for movement, the soft threshold for STR, the relaxed mask for ProbMask).
    ``unsafe`` skips parametrize's trial call (for a mask that does not exist before the first step). Subclasses
    implement :meth:`final_masks`.
    """

    def __init__(
        self,
        model: nn.Module,
        weights: Weights,
        parametrizations: Mapping[str, nn.Module],
        *,
        unsafe: bool = False,
    ) -> None:
        self.model = model
        self.weights = dict(weights)
        """The raw weights ``W``, by name (each is its parametrization's ``original``)."""
        self._locations: list[tuple[nn.Module, str]] = []
        for name, parametrization in parametrizations.items():
            for module, attribute in weight_locations(model, name):
                parametrize.register_parametrization(module, attribute, parametrization, unsafe=unsafe)
                self._locations.append((module, attribute))

    def final_masks(self, trainer: Trainer) -> FinalMasks:
        """The masks at exactly the target, computed once the weights are plain again (``self.weights`` are the raw
        ones; a method whose survivors take other values than ``W`` writes them here)."""
        raise NotImplementedError

    def release(self) -> None:
        """Remove every parametrization: each location (a tied weight has several) holds its raw weight again."""
        for module, attribute in self._locations:
            parametrize.remove_parametrizations(module, attribute, leave_parametrized=False)
        self._locations.clear()

    @torch.no_grad()
    def finish(self, trainer: Trainer) -> FinalMasks:
        """Remove every parametrization, then zero the plain weights outside the method's final masks."""
        self.release()
        final = self.final_masks(trainer)
        apply_masks(self.model, final.masks)
        return final


def exact_top_k(
    scores: Mapping[str, torch.Tensor], sparsity: float, floors: Mapping[str, int] | None = None
) -> Masks:
    """Masks at exactly ``sparsity``: each layer's ``floors`` highest scores, then the highest remaining scores over
    all layers (a global top-k, :func:`~prunebench.allocation.masks_from_scores`)."""
    if floors is not None:
        scores = {name: s.masked_fill(top_mask(s, floors[name]), math.inf) for name, s in scores.items()}
    return masks_from_scores(dict(scores), sparsity, "global")


EXACT_FLOAT32_COUNT = 2**24
"""Below this many entries, a float32 sum of 0/1 values is an exact count."""


def count_ones(indicator: torch.Tensor) -> int:
    """The number of ones in a 0/1 float tensor, exactly (in float64 where float32 could round)."""
    if indicator.numel() < EXACT_FLOAT32_COUNT:
        return int(indicator.sum())
    return int(indicator.sum(dtype=torch.float64))


class TrackedTopK:
    """The ``k`` highest entries of a vector that changes a little from one step to the next, at every step.

    The ``k``-th largest value ``t`` is looked for in a band around the previous step's: one pass counts the entries
    above the band, the band's few entries are ranked (``torch.kthvalue``), and the band widens (x4) until it
    holds the ``k``-th entry; it starts the next step at twice the threshold's last move. The mask is ``v >= t``.
    When exactly ``k`` entries reach ``t`` the top ``k`` is unique, so this mask is the one any exact selection
    (``torch.topk``) gives; when entries tie at ``t`` (the choice among them is ``torch.topk``'s own), :meth:`mask`
    returns ``None`` and the caller selects with ``torch.topk`` as before. A run's masks are therefore identical
    to a global top-k at every step.

    Comparisons are written as 0/1 in float tensors and counted by summing (:func:`count_ones`): on the CPU a
    comparison that makes a boolean tensor, and a count of one, cost several times more.

    ``threshold`` and ``width`` only speed the search: a fresh tracker finds the same masks.
    """

    def __init__(self) -> None:
        self.threshold: torch.Tensor | None = None
        """The ``k``-th largest value found at the previous step."""
        self.width = 0.0
        """Half-width of the band searched first at the next step."""
        self._scratch: tuple[torch.Tensor, torch.Tensor] | None = None

    def _indicators(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Two float tensors shaped like ``values`` that comparisons are written into (kept between steps)."""
        if (
            self._scratch is None
            or self._scratch[0].shape != values.shape
            or self._scratch[0].device != values.device
        ):
            self._scratch = (
                torch.empty(values.shape, dtype=torch.float32, device=values.device),
                torch.empty(values.shape, dtype=torch.float32, device=values.device),
            )
        return self._scratch

    def _count(self, compare: Callable[..., torch.Tensor], values: torch.Tensor, bound: torch.Tensor) -> int:
        return count_ones(compare(values, bound, out=self._indicators(values)[0]))

    def _kth_largest(self, values: torch.Tensor, k: int) -> torch.Tensor:
        previous = self.threshold
        found = None
        if previous is not None:
            width = self.width
            for _ in range(6):
                low, high = previous - width, previous + width
                above = self._count(torch.gt, values, high)
                if above < k <= self._count(torch.ge, values, low):
                    inside, below_high = self._indicators(values)
                    torch.ge(values, low, out=inside).mul_(torch.le(values, high, out=below_high))
                    band = values[inside.bool()]
                    found = torch.kthvalue(band, band.numel() - (k - above) + 1).values
                    break
                width = 4.0 * width + 1e-12
        if found is None:
            found = torch.kthvalue(values, values.numel() - k + 1).values
        moved = 0.0 if previous is None else abs(float(found - previous))
        self.threshold, self.width = found, 2.0 * moved
        return found

    def mask(self, values: torch.Tensor, k: int) -> torch.Tensor | None:
        """The mask of the ``k`` highest entries of the flat ``values`` (``1 <= k <= values.numel()``) as 0/1 in
        float32, or ``None`` when entries tie at the ``k``-th largest value (or a NaN hides it)."""
        mask = torch.empty(values.shape, dtype=torch.float32, device=values.device)
        torch.ge(values, self._kth_largest(values, k), out=mask)
        return mask if count_ones(mask) == k else None
