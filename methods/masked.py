"""What the learned-mask methods (ProbMask, STR, ASL, hard and soft movement) share: the plumbing around their maths.

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
* :func:`count_ones`: an exact count of a 0/1 mask, whatever its size.

The trainer gives the methods the rest: it optimizes the parameters a session declares
(:meth:`~prunebench.run.trainer.TrainHook.param_groups`: scores, thresholds, each group with its optimizer and
schedule) and keeps their optimizers' state in its checkpoints, and it reports
:attr:`~prunebench.run.trainer.Trainer.progress` (the fraction of the learning phase done) and
:attr:`~prunebench.run.trainer.Trainer.lr_factor` (the weights' learning-rate schedule).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.utils import parametrize

from prunebench.methods.base import FinalMasks, Masks, TrainingSession, Weights
from prunebench.pruning.allocation import masks_from_scores, top_mask
from prunebench.pruning.mask_application import apply_masks
from prunebench.pruning.prunable import weight_locations

if TYPE_CHECKING:
    from prunebench.run.trainer import Trainer


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
    all layers (a global top-k, :func:`~prunebench.pruning.allocation.masks_from_scores`)."""
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
