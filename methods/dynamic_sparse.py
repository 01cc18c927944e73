"""Dynamic sparse training, SET and RigL: a sparse mask drawn at initialization that drops and regrows weights while
they train, at exactly the target sparsity at every step.

* **SET** (Mocanu et al., Nature Communications 2018, "Scalable training of artificial neural networks with adaptive
  sparse connectivity inspired by network science"): drop the smallest ``|w|``, regrow at random.
* **RigL** (Evci et al., ICML 2020, "Rigging the Lottery: Making All Tickets Winners", Algorithm 1): drop the
  smallest ``|w|``, regrow the largest ``|dL/dw|`` of the dense gradient on the step's batch.

Both follow RigL's Algorithm 1 and its official code, google-research/rigl (TF1: ``rigl/sparse_optimizers_base.py``,
``SparseSETOptimizerBase`` and ``SparseRigLOptimizerBase``; TF2: ``rigl/rigl_tf2/mask_updaters.py``), with
google-research/jaxpruner (``jaxpruner/algorithms/sparse_trainers.py``, ``SET`` and ``RigL``) as a second reference:

* **Initial mask**: drawn at random at the scope's exact per-layer counts (``init_mask="random"``: the top-k of
  i.i.d. uniform scores through :func:`~prunebench.pruning.allocation.masks_from_scores`, as rigl's
  ``sparse_utils.get_mask_random`` shuffles a layer's ones; in ``global`` scope a uniform draw of the whole budget), or
  the largest ``|w|`` at initialization (``init_mask="magnitude"``, not in the papers). The weights outside it are
  zeroed. The draw comes from a CPU ``torch.Generator`` seeded from the run's seed (so a ``set`` and a ``rigl`` run of
  one seed start from the same mask), which also draws SET's regrowth; its state is checkpointed.
* **Update steps**: the steps ``t = 0, delta_t, 2 delta_t, ...`` (0-based) with ``t < T_end = floor(t_end T)`` of the
  ``T`` steps of the budget. Step 0 is one, as in the official code (``is_mask_update_iter``: ``last_mask_update_step``
  starts at ``-frequency``, ``begin_step`` 0; jaxpruner's ``PeriodicSchedule``: ``step % update_freq == 0``);
  ``t < T_end`` is Algorithm 1's bound (the official ``global_step <= end_step`` adds an update at ``T_end`` whose
  drop fraction is 0).
* **Drop fraction**: ``f(t) = alpha / 2 (1 + cos(pi t / T_end))`` (the paper's cosine decay; rigl's
  ``get_drop_fraction`` with ``drop_fraction_anneal='cosine'``, TF's ``cosine_decay`` over ``end_step - begin_step``).
  A layer with ``n`` active weights drops ``floor(f n)`` (``_get_update_op``: ``n_prune = int(n_ones *
  drop_fraction)``) and regrows as many, so every layer keeps its exact count at every step. In ``global`` scope one
  count ``floor(f N_active)`` is dropped over all prunable weights and as many regrown over all of them, so the layers'
  densities move while the total stays exact: the official code and jaxpruner update each layer on its own; this
  variant is the suite's (the record keeps every layer's density at each update).
* **Drop**: the smallest ``|w|`` among the active weights (Algorithm 1; jaxpruner's ``_update_masks`` lowers the
  inactive entries' scores below every active one). Deviation on ties only: the TF1 code ranks ``|mask * w|`` plus
  ``N(0, 1e-5)`` noise over all entries (``generic_mask_update``), so an inactive entry can outrank an active weight
  smaller than the noise, and TF2's ``SET``/``RigL`` (no noise) rank the inactive entries' zeros among active weights
  that are exactly zero; here an inactive weight is never kept, and ties fall by ``torch.topk``'s fixed order.
* **Grow**: among every weight not kept, the just-dropped ones included (``_get_update_op`` lifts only ``mask1``, the
  kept set; jaxpruner only ``dropped_mask``). SET: uniform scores (the official ``_random_uniform``, stateless, seeded
  by weight name and step; here the generator above). RigL: ``|dL/dW|`` of the step's batch, where the trainer's
  gradient with respect to the weight tensor (zeros included) is the gradient with respect to the masked weight that
  ``SparseRigLOptimizerBase.compute_gradients`` takes over ``get_masked_weights()``.
* **New connections**: a weight regrown at the update that dropped it keeps its value and optimizer state
  (``new_connections = mask2 & (mask == 0)``, ``reinit_when_same=False``); a newly grown weight starts at zero
  (``grow_init='zeros'``) with its momentum zeroed (``reset_momentum``; RigL's ``initial_acc_scale`` defaults to 0,
  which also gives 0). A dropped weight is zeroed with its optimizer state (every state tensor of the weight's shape:
  SGD's ``momentum_buffer``, Adam's averages as jaxpruner's ``restart_inner_state``). The official code leaves a
  dropped weight's value and momentum in its variable, unseen behind the mask, and resets them when it grows again:
  every active weight computes the same.
* **Order at an update step**: RigL updates the mask *instead of* the weights (Algorithm 1's ``else``;
  ``SparseRigLOptimizerBase.apply_gradients``: ``cond(is_mask_update_iter, mask_update_op, apply_gradient_op)``;
  jaxpruner's ``skip_gradients=True``). The session clears the weights' gradients, so the optimizer's step leaves
  every weight and its momentum as they are (the learning-rate schedule still advances). The TF1 code does not
  advance ``global_step`` on that iteration, so its runs take one extra batch per update; here the budget stays the
  same number of batches as every method's (Algorithm 1, jaxpruner) and the record counts the skipped weight steps.
  SET takes the weight step, then updates the mask from the updated weights (``SparseSETOptimizerBase.apply_gradients``
  makes the mask update depend on the optimizer's update; jaxpruner skips the step for SET as well: we follow TF1).
* **Between updates** the pruned weights are re-zeroed after every optimizer step by one fused multiply, as
  :class:`~prunebench.pruning.mask_application.MaskEnforcer` does for fixed masks: between two updates the training is
  the ``at_init`` schedule's. The gradient itself is not masked: an inactive weight's momentum gathers its dense
  gradient, never reaches a weight (re-zeroed after each step) and is zeroed when the weight grows, so the active
  weights are those of the official masked gradient.
* **Exact count by value**: the harness counts the weights that are not exactly zero. A weight grown into a unit
  that no gradient reaches (a ReLU off for every input) stays at its regrowth value 0; one grown at an update is the
  first dropped at the next, but those left after the last update would count as pruned. At the end of the learning
  phase (:meth:`DynamicSparseSession.on_train_end`) every kept weight still exactly zero gets its own value from the
  seed's initialization, an addition of the suite (the official code counts sparsity from the masks); the record
  counts them (``revived``, and the enforcement line) and ``method_sparsity`` is the sparsity before (how often it
  happens: ``docs/dynamic-sparse.md``).
* **SET's schedule** is the RigL paper's SET baseline (TF1 ``SparseSETOptimizer`` with RigL's ``delta_t`` and
  cosine), not Mocanu et al.'s code (``dcmocanu/sparse-evolutionary-artificial-neural-networks``,
  ``set_mlp_keras_cifar10.py``: ``weightsEvolution`` after every epoch with a constant ``zeta = 0.3``, taken
  separately from the positive and the negative weights by ``rewireMask``, on an Erdos-Renyi mask set by ``epsilon``
  rather than by a target sparsity).
* **Cost**: RigL needs the dense gradient at update steps only. The harness's dense kernels compute the gradient of
  every weight at every step anyway, so it costs nothing extra here; the record counts the update steps
  (``dense_gradient_steps``) that a sparse implementation would pay for. Gradient clipping, done by the trainer before
  the session reads the gradient, scales all of it by one factor and changes no ranking.

``delta_t`` defaults to 20 steps, not RigL's 100. RigL's ImageNet runs (batch 4096, about 313 steps an epoch) and
CIFAR-10 runs (batch 128, 391 steps an epoch) update every 100 steps, a quarter to a third of an epoch. The default
grid (``mnist5k-lenet300``: 4000 training images in batches of 64, 63 steps an epoch, 1260 over 20 epochs) keeps
that rate with 20 steps: 48 updates before ``T_end`` = 945, where 100 would give 10. Under a preset of the paper's
scale, ``--set rigl.delta_t=100`` is the paper's setting. What the official code does that the suite does not (SNFS,
other drop-fraction schedules, grow initialisations, the ImageNet runs' dense first layer) is in
``docs/dynamic-sparse.md``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import torch
from torch import nn

from prunebench.core.errors import UsageError
from prunebench.core.hashing import stable_hash
from prunebench.methods.base import (
    FinalMasks,
    Masks,
    TrainingContext,
    TrainingMethod,
    TrainingSession,
    Weights,
)
from prunebench.methods.method_registry import register
from prunebench.pruning.allocation import masks_from_scores, top_mask

if TYPE_CHECKING:
    from prunebench.run.trainer import Trainer

SCOPES = ("global", "uniform", "uniform_plus", "erk")
DENSITY_DIGITS = 5
"""Decimals of the per-layer densities the record keeps at each update."""


@dataclass(frozen=True)
class UpdateSchedule:
    """When the mask changes and by how much: every ``delta_t`` steps before ``end`` (``T_end``), the drop fraction
    following the paper's cosine decay from ``alpha`` to 0."""

    delta_t: int
    alpha: float
    end: int

    def drop_fraction(self, step: int) -> float | None:
        """``f(t) = alpha / 2 (1 + cos(pi t / T_end))`` at an update step ``t`` (0-based), ``None`` at any other."""
        if step % self.delta_t != 0 or step >= self.end:
            return None
        return self.alpha / 2.0 * (1.0 + math.cos(math.pi * step / self.end))


def _top_over(scores: Mapping[str, torch.Tensor], count: int) -> Masks:
    """The ``count`` highest scores over all of ``scores`` at once (one ``top_mask`` over their concatenation)."""
    flat = torch.cat([score.reshape(-1) for score in scores.values()])
    chosen = top_mask(flat, count).split([score.numel() for score in scores.values()])
    return {name: part.view_as(score) for (name, score), part in zip(scores.items(), chosen, strict=True)}


def drop_and_grow(
    masks: Masks,
    drop_scores: Mapping[str, torch.Tensor],
    grow_scores: Mapping[str, torch.Tensor],
    fraction: float,
    scope: str,
) -> Masks:
    """One update: drop the ``floor(fraction * n)`` active weights of lowest ``drop_scores`` and grow as many of the
    highest ``grow_scores`` among those not kept (just-dropped included), per layer, or over all layers at once in
    ``global`` scope (``n``: the active weights of the layer, or of all layers). Each layer (``global``: the whole)
    keeps its count exactly."""
    groups = [list(masks)] if scope == "global" else [[name] for name in masks]
    updated: Masks = {}
    for group in groups:
        active = sum(int(masks[name].sum()) for name in group)
        dropped = math.floor(fraction * active)
        kept = _top_over(
            {n: drop_scores[n].masked_fill(~masks[n], -math.inf) for n in group}, active - dropped
        )
        grown = _top_over({n: grow_scores[n].masked_fill(kept[n], -math.inf) for n in group}, dropped)
        updated.update({name: kept[name] | grown[name] for name in group})
    return updated


def _uniform(shape: torch.Size, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """I.i.d. uniform scores drawn on the CPU from ``generator`` (the same draws on any device), on ``device``."""
    return torch.rand(shape, generator=generator).to(device)


class DynamicSparseSession(TrainingSession):
    """The mask of one SET or RigL run, its random generator and its record, while the weights train sparse."""

    def __init__(
        self, method: DynamicSparse, weights: Weights, sparsity: float, scope: str, context: TrainingContext
    ) -> None:
        self.method = method
        self.weights = dict(weights)
        self.sparsity = sparsity
        self.scope = scope
        self.generator = torch.Generator().manual_seed(
            int(stable_hash({"method": "dynamic_sparse", "seed": context.seed}), 16) >> 1
        )
        if method.init_mask == "random":
            scores = {n: _uniform(w.shape, self.generator, w.device) for n, w in self.weights.items()}
        else:
            scores = {n: w.detach().abs() for n, w in self.weights.items()}
        self.masks = masks_from_scores(scores, sparsity, scope)
        self.factors = [
            m.to(w.dtype) for m, w in zip(self.masks.values(), self.weights.values(), strict=True)
        ]
        """The masks as multipliers of the weights' dtype, for the fused re-zeroing after each step."""
        self.initial = {name: w.detach().to("cpu", copy=True) for name, w in self.weights.items()}
        """The seed's initial values of the prunable weights, for :meth:`on_train_end`."""
        self.schedule: UpdateSchedule | None = None
        self.history: dict[str, Any] = {
            "steps": [],
            "regrown": [],
            "density": {name: [] for name in weights},
            "revived": 0,
        }

    @torch.no_grad()
    def on_train_start(self, trainer: Trainer) -> None:
        method = self.method
        self.schedule = UpdateSchedule(
            method.delta_t, method.alpha, math.floor(method.t_end * trainer.total_steps)
        )
        torch._foreach_mul_(list(self.weights.values()), self.factors)

    def grow_scores(self) -> dict[str, torch.Tensor]:
        """The regrowth criterion of every prunable weight (higher grows first)."""
        raise NotImplementedError

    @torch.no_grad()
    def after_step(self, trainer: Trainer) -> None:
        torch._foreach_mul_(list(self.weights.values()), self.factors)

    @torch.no_grad()
    def on_train_end(self, trainer: Trainer) -> None:
        """Give every kept weight that is still exactly zero its initial value (see the module docstring: a
        connection grown into a unit no gradient reached never left its regrowth value 0, and the harness counts the
        non-zero weights). Runs again, doing nothing, when a finished phase is resumed."""
        for name, weight in self.weights.items():
            stuck = self.masks[name] & (weight == 0)
            count = int(stuck.sum())
            if count:
                weight[stuck] = self.initial[name].to(weight.device)[stuck]
                self.history["revived"] += count

    @torch.no_grad()
    def update(self, trainer: Trainer, fraction: float, step: int) -> None:
        """Drop and grow at drop fraction ``fraction`` (update step ``step``); install the new masks: dropped weights
        zeroed, dropped and newly grown weights' optimizer state zeroed (kept weights keep theirs)."""
        magnitudes = {name: w.detach().abs() for name, w in self.weights.items()}
        masks = drop_and_grow(self.masks, magnitudes, self.grow_scores(), fraction, self.scope)
        regrown = 0
        for factor, (name, weight) in zip(self.factors, self.weights.items(), strict=True):
            still = (masks[name] & self.masks[name]).to(weight.dtype)
            regrown += int((masks[name] & ~self.masks[name]).sum())
            for value in trainer.optimizer.state.get(weight, {}).values():
                if torch.is_tensor(value) and value.shape == weight.shape:
                    value.mul_(still)
            factor.copy_(masks[name])
            weight.mul_(factor)
        self.masks = masks
        self._note(step, regrown)

    def _note(self, step: int, regrown: int) -> None:
        """Record an update: its step, the weights newly grown, and every layer's density after it."""
        self.history["steps"].append(step)
        self.history["regrown"].append(regrown)
        for name, mask in self.masks.items():
            density = int(mask.sum()) / mask.numel()
            self.history["density"][name].append(round(density, DENSITY_DIGITS))

    # Checkpointed state (prunebench.run.run_checkpoint): the weights and momentum are the model's and optimizer's.
    def state_dict(self) -> dict[str, Any]:
        return {
            "masks": {name: mask.clone() for name, mask in self.masks.items()},
            "generator": self.generator.get_state(),
            "history": copy.deepcopy(self.history),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.masks = {name: state["masks"][name].to(w.device) for name, w in self.weights.items()}
        for factor, mask in zip(self.factors, self.masks.values(), strict=True):
            factor.copy_(mask)
        self.generator.set_state(state["generator"])
        self.history = copy.deepcopy(state["history"])

    def finish(self, trainer: Trainer) -> FinalMasks:
        """The current masks, at exactly the scope's counts as at every step; ``method_sparsity`` counts the
        non-zero weights before :meth:`on_train_end` gave the stuck ones their initial values."""
        kept = sum(int(mask.sum()) for mask in self.masks.values())
        total = sum(mask.numel() for mask in self.masks.values())
        updates = len(self.history["steps"]) if self.method.dense_gradient else 0
        revived = self.history["revived"]
        return FinalMasks(
            masks={name: mask.clone() for name, mask in self.masks.items()},
            method_sparsity=1.0 - (kept - revived) / total,
            enforcement=(
                f"{revived} kept weights still at their regrowth value 0 (no gradient reached them) set to their "
                "initial values"
                if revived
                else None
            ),
            details={
                "update_steps": list(self.history["steps"]),
                "regrown": list(self.history["regrown"]),
                "layer_density": copy.deepcopy(self.history["density"]),
                "dense_gradient_steps": updates,
                "weight_steps_skipped": updates,
                "revived": revived,
            },
        )


class SETSession(DynamicSparseSession):
    """SET: the weight step, then (at an update step) drop the smallest |w| and grow at random."""

    def grow_scores(self) -> dict[str, torch.Tensor]:
        return {name: _uniform(w.shape, self.generator, w.device) for name, w in self.weights.items()}

    @torch.no_grad()
    def after_step(self, trainer: Trainer) -> None:
        super().after_step(trainer)
        step = trainer.step - 1  # the step just taken
        fraction = self.schedule.drop_fraction(step)
        if fraction is not None:
            self.update(trainer, fraction, step)


class RigLSession(DynamicSparseSession):
    """RigL: at an update step, drop the smallest |w| and grow the largest |dL/dW| instead of the weight step."""

    def grow_scores(self) -> dict[str, torch.Tensor]:
        return {
            name: torch.zeros_like(w) if w.grad is None else w.grad.detach().abs()
            for name, w in self.weights.items()
        }

    @torch.no_grad()
    def before_step(self, trainer: Trainer) -> None:
        fraction = self.schedule.drop_fraction(trainer.step)
        if fraction is None:
            return
        self.update(trainer, fraction, trainer.step)
        for group in trainer.optimizer.param_groups:  # no weight step at an update step (Algorithm 1)
            for parameter in group["params"]:
                parameter.grad = None


class DynamicSparse(TrainingMethod):
    """Shared hyperparameters of SET and RigL (see the module docstring)."""

    session: ClassVar[type[DynamicSparseSession]]
    dense_gradient: ClassVar[bool]
    """Whether an update step reads the dense gradient (and takes no weight step)."""

    def __init__(
        self,
        delta_t: Annotated[
            int, "steps between mask updates (RigL: 100; 20 keeps its rate on the default grid)"
        ] = 20,
        alpha: Annotated[float, "initial drop fraction, annealed by a cosine to 0 at t_end"] = 0.3,
        t_end: Annotated[float, "fraction of training after which the mask stays fixed"] = 0.75,
        init_mask: Annotated[
            Literal["random", "magnitude"],
            "initial mask at the scope's counts: random (the papers) or the largest |w| at initialization",
        ] = "random",
    ) -> None:
        if delta_t < 1:
            raise UsageError(f"delta_t is a number of steps, at least 1, got {delta_t}")
        if not 0.0 < alpha <= 1.0:
            raise UsageError(f"alpha is a drop fraction in (0, 1], got {alpha}")
        if not 0.0 < t_end <= 1.0:
            raise UsageError(f"t_end is a fraction of training in (0, 1], got {t_end}")
        self.delta_t = delta_t
        self.alpha = alpha
        self.t_end = t_end
        self.init_mask = init_mask

    def attach(
        self, model: nn.Module, weights: Weights, sparsity: float, scope: str, context: TrainingContext
    ) -> DynamicSparseSession:
        return self.session(self, weights, sparsity, scope, context)


@register(
    "set",
    schedule="during_training",
    scopes=SCOPES,
    paper="Mocanu et al., Nature Communications 2018, 'Scalable training of artificial neural networks with "
    "adaptive sparse connectivity inspired by network science'",
)
class SET(DynamicSparse):
    """Sparse evolutionary training: a random sparse mask that drops the smallest |w| and regrows at random."""

    session = SETSession
    dense_gradient = False


@register(
    "rigl",
    schedule="during_training",
    scopes=SCOPES,
    paper="Evci et al., ICML 2020, 'Rigging the Lottery: Making All Tickets Winners'",
)
class RigL(DynamicSparse):
    """RigL: a random sparse mask that drops the smallest |w| and regrows the largest dense gradients."""

    session = RigLSession
    dense_gradient = True
