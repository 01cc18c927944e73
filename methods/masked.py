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
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
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
    """The number of ones in a 0/1 float tensor, exactly (in float64 where its own dtype could round: more than
    ``2**24`` entries, or a dtype narrower than float32)."""
    if indicator.dtype == torch.float32 and indicator.numel() < EXACT_FLOAT32_COUNT:
        return int(indicator.sum())
    return int(indicator.sum(dtype=torch.float64))


class TrackedTopK:
    """The ``k`` highest entries of a vector that changes a little from one step to the next, at every step.

    The ``k``-th largest value ``t`` is looked for in a band ``[low, high]`` around where the previous step's
    threshold, moving as it last moved, would be: two passes count the entries above the band and at or above its
    bottom; when the ``k``-th entry lies in the band, the band's few entries are gathered and ranked
    (``torch.kthvalue``), else the band widens (x4). The mask is ``v >= t``. When exactly ``k`` entries reach ``t``
    the top ``k`` is unique, so this mask is the one any exact selection (``torch.topk``) gives; when entries tie at
    ``t`` (the choice among them is ``torch.topk``'s own), :meth:`mask` returns ``False`` and the caller selects with
    ``torch.topk`` as before. A run's masks are therefore identical to a global top-k at every step.

    ``threshold`` and ``move`` only speed the search: a fresh tracker finds the same masks.
    """

    def __init__(self) -> None:
        self.threshold: float | None = None
        """The ``k``-th largest value found at the previous step."""
        self.move = 0.0
        """The threshold's last move, expected again at the next step: the first band is centred there, as wide."""
        self._band: _Band | None = None

    def _search_band(self, values: torch.Tensor, k: int) -> tuple[float, int] | None:
        """The ``k``-th largest entry and the number of entries at or above it, found in a band around the
        expected threshold, or ``None`` when six widenings do not bring it into the band."""
        if self.threshold is None:
            return None
        if self._band is None or not self._band.fits(values):
            self._band = _NumpyBand(values) if values.device.type == "cpu" else _TorchBand(values)
        centre, width = self.threshold + self.move, abs(self.move)
        for _ in range(6):
            above, at_least_low = self._band.count(values, centre - width, centre + width)
            if above < k <= at_least_low:
                found, reached_inside = self._band.rank_inside(values, k - above)
                return found, above + reached_inside
            width = 4.0 * width + 1e-12
        return None

    def mask(self, values: torch.Tensor, k: int, out: torch.Tensor) -> bool:
        """Write the mask of the ``k`` highest entries of the flat ``values`` (``1 <= k <= values.numel()``) into
        ``out`` as 0/1 (of ``out``'s dtype, its shape that of ``values``); ``False`` when entries tie at the
        ``k``-th largest value (or a NaN hides it), and ``out`` then holds no top-k."""
        searched = self._search_band(values, k)
        if searched is None:
            found, reached = float(torch.kthvalue(values, values.numel() - k + 1).values), None
        else:
            found, reached = searched
        self.move = 0.0 if self.threshold is None else found - self.threshold
        self.threshold = found
        torch.ge(values, found, out=out)
        if reached is None:
            reached = count_ones(out)
        return reached == k


class _Band:
    """Counts of a flat vector's entries above ``high`` and at or above ``low``, and the entries in between, with
    comparison buffers kept from step to step (allocating them at every step costs as much as a comparison)."""

    def __init__(self, values: torch.Tensor) -> None:
        self.shape, self.device = values.shape, values.device

    def fits(self, values: torch.Tensor) -> bool:
        return values.shape == self.shape and values.device == self.device

    def count(self, values: torch.Tensor, low: float, high: float) -> tuple[int, int]:
        """``#{v > high}`` and ``#{v >= low}`` (the band is ``{low <= v <= high}``)."""
        raise NotImplementedError

    def rank_inside(self, values: torch.Tensor, rank: int) -> tuple[float, int]:
        """The ``rank``-th largest entry of the band counted last, and how many of the band's entries reach it."""
        raise NotImplementedError


class _NumpyBand(_Band):
    """On the CPU, in NumPy: its comparisons write one byte per entry and its counts, boolean selection and
    selection of the ``k``-th value are vectorized, together about half the time of PyTorch's (whose boolean index
    runs ``nonzero`` first)."""

    def __init__(self, values: torch.Tensor) -> None:
        super().__init__(values)
        self.above, self.at_least, self.between = (np.empty(values.shape, dtype=bool) for _ in range(3))

    def count(self, values: torch.Tensor, low: float, high: float) -> tuple[int, int]:
        array = values.numpy()
        above = np.count_nonzero(np.greater(array, high, out=self.above))
        return above, np.count_nonzero(np.greater_equal(array, low, out=self.at_least))

    def rank_inside(self, values: torch.Tensor, rank: int) -> tuple[float, int]:
        band = values.numpy()[np.greater(self.at_least, self.above, out=self.between)]
        band.partition(band.size - rank)
        found = band[band.size - rank]
        return float(found), int(np.count_nonzero(band >= found))


class _TorchBand(_Band):
    """On other devices, in PyTorch: comparisons written as 0/1 floats and counted by summing (:func:`count_ones`)."""

    def __init__(self, values: torch.Tensor) -> None:
        super().__init__(values)
        self.above, self.at_least = (torch.empty(values.shape, device=values.device) for _ in range(2))

    def count(self, values: torch.Tensor, low: float, high: float) -> tuple[int, int]:
        above = count_ones(torch.gt(values, high, out=self.above))
        return above, count_ones(torch.ge(values, low, out=self.at_least))

    def rank_inside(self, values: torch.Tensor, rank: int) -> tuple[float, int]:
        band = values[self.at_least.sub_(self.above).bool()]
        found = torch.kthvalue(band, band.numel() - rank + 1).values
        return float(found), int(torch.count_nonzero(band >= found))
