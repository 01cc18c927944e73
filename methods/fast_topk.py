"""Opt-in speed-up of hard movement pruning's per-step top-k: found near the previous step's threshold, the same
mask as ``torch.topk``.

Measured (``scripts/step_time.py --plain``, LeNet-300-100, one CPU thread): hard movement's training step takes 3.5 ms
with it, 8.9 ms with ``torch.topk``.

Hard movement keeps the ``k`` highest scores at every step, and its scores move a little per step, so the ``k``-th
largest score is near where it was. :class:`TrackedTopK` looks for it in a band around the previous threshold (a few
passes over the scores) instead of ranking them all (``torch.topk``). It gives up, and the caller runs ``torch.topk``,
wherever the top ``k`` is not unique (scores tie at the threshold), so the masks are the plain path's at every step
(tested against ``torch.topk``). It is on where :func:`~prunebench.run.fast_paths.speedup_on` says (the CPU, unless
``PRUNEBENCH_PLAIN=1``).
"""

from __future__ import annotations

import numpy as np
import torch

from prunebench.methods.masked import count_ones
from prunebench.run.fast_paths import speedup_on


def tracked_top_k_on(device: torch.device) -> bool:
    """Whether the tracked top-k runs on ``device`` (else the caller's plain ``torch.topk``)."""
    return speedup_on("tracked_top_k", device)


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
