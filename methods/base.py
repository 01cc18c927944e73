"""What a method implements, by schedule.

* :class:`ScoringMethod` (a criterion: schedules ``at_init``, ``after_training``, ``gradual``, ``iterative``, see
  :mod:`prunebench.run.criterion_schedules`): scores the prunable weights; the harness turns the scores into masks with the
  requested scope (:func:`prunebench.pruning.allocation.masks_from_scores`), once or, under ``gradual`` and ``iterative``,
  at every pruning step. A criterion that prunes in rounds of its own (SynFlow) overrides
  :meth:`ScoringMethod.masks` instead.
* :class:`TrainingMethod` (schedule ``during_training``): attaches a :class:`TrainingSession` to the model; the
  session is a :class:`~prunebench.run.trainer.TrainHook` that shapes the mask while the weights train, and at the end
  returns masks at exactly the target sparsity (:class:`FinalMasks`). The session declares the parameters it learns
  (:class:`~prunebench.run.trainer.ParamGroup`) and the trainer optimizes them; the share of the budget fine-tuned
  afterwards is one rule for all methods (:meth:`TrainingMethod.finetune_epochs`).
* :class:`DenseMethod`: the unpruned baseline.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from prunebench.core.errors import UsageError
from prunebench.pruning.allocation import masks_from_scores
from prunebench.run.recipe import OptimConfig
from prunebench.run.trainer import TrainHook

if TYPE_CHECKING:
    from prunebench.pruning.calibration import LayerInputs
    from prunebench.run.recipe import Recipe
    from prunebench.run.trainer import Trainer

Masks = dict[str, torch.Tensor]
"""Boolean keep masks keyed by parameter name, as in ``model.named_parameters()``."""
Weights = dict[str, nn.Parameter]
"""The prunable weights of a model, keyed by parameter name, in module order."""


class Method:
    """A registered pruning method; the registry sets ``name``.

    Hyperparameters are the keyword arguments of the subclass's ``__init__``, with the paper's values as defaults;
    :meth:`hyperparameters` reports them for the run record.
    """

    name: ClassVar[str] = ""

    def hyperparameters(self) -> dict[str, Any]:
        """The method's hyperparameters (its public attributes set in ``__init__``), recorded with each run."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


class DenseMethod(Method):
    """Marker base class of the dense baseline: nothing is pruned."""


class ScoringData:
    """Training batches offered to a method that scores with data (SNIP, GraSP).

    Wraps any iterable of ``(inputs, targets)`` batches (a DataLoader, a list) and draws from it on request, so a
    method asks for exactly what its paper uses: one batch, or ``k`` examples per class.
    """

    def __init__(
        self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], num_classes: int | None = None
    ) -> None:
        self._batches = batches
        self.num_classes = num_classes

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        yield from self._batches

    def first_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The first batch of the data."""
        for batch in self._batches:
            return batch
        raise ValueError("the scoring data is empty")

    def per_class(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``k`` examples of each class, in the order they come (as GraSP's ``samples_per_class``).

        Stops early with fewer when the data runs out; classes are those seen if ``num_classes`` is unknown.
        """
        taken_x: list[torch.Tensor] = []
        taken_y: list[torch.Tensor] = []
        counts: dict[int, int] = {}
        for inputs, targets in self._batches:
            if targets.dim() != 1:
                raise UsageError(
                    "this criterion draws training examples per class, but the targets are sequences (a language "
                    "model); use one that needs no classes (magnitude, wanda, sparsegpt, movement)"
                )
            for x, y, label in zip(inputs, targets, targets.tolist(), strict=True):
                if counts.get(label, 0) < k:
                    counts[label] = counts.get(label, 0) + 1
                    taken_x.append(x)
                    taken_y.append(y)
            if self.num_classes is not None and len(counts) == self.num_classes and min(counts.values()) >= k:
                break
        if not taken_x:
            raise ValueError("the scoring data is empty")
        return torch.stack(taken_x), torch.stack(taken_y)


class ScoringMethod(Method):
    """A method that scores the weights once (or in rounds) and keeps the highest scores."""

    def scores(self, model: nn.Module, weights: Weights, data: ScoringData | None) -> dict[str, torch.Tensor]:
        """A score per prunable weight (same keys and shapes as ``weights``); higher scores are kept.

        ``weights`` are the prunable weights of ``model`` (the run's prunable set), keyed by parameter name, in module
        order. Called on a private copy of the model: it may change it freely.
        """
        raise NotImplementedError

    def masks(
        self,
        model: nn.Module,
        weights: Weights,
        sparsity: float,
        scope: str,
        data: ScoringData | None,
        alive: Masks | None = None,
        group: str = "per_layer",
    ) -> Masks:
        """Keep masks at exactly ``sparsity`` over ``weights``, allocated across layers by ``scope`` and inside each
        layer by the comparison ``group`` (:mod:`prunebench.pruning.comparison_groups`).

        ``alive``: the weights still in the network, given only under the ``gradual`` and ``iterative`` schedules
        (an override for a criterion that declares neither may leave it out); a weight outside it stays pruned (it
        scores below every live one). ``group`` is given only when it is not ``per_layer``, and only to a criterion
        that does not override this method (:attr:`~prunebench.methods.method_registry.MethodSpec.supports_groups`).
        """
        scores = self.scores(model, weights, data)
        if alive is not None:
            scores = _pruned_last(scores, alive)
        return _within_alive(masks_from_scores(scores, sparsity, scope, group), alive)


def _pruned_last(scores: dict[str, torch.Tensor], alive: Masks) -> dict[str, torch.Tensor]:
    """``scores`` with every weight outside ``alive`` at ``-inf``, below every live weight."""
    return {name: score.masked_fill(~alive[name], -math.inf) for name, score in scores.items()}


def _within_alive(masks: Masks, alive: Masks | None) -> Masks:
    """``masks`` within ``alive``: a pruned weight never comes back.

    Only a layer-wise scope's rounding can ask a layer for one weight more than it has left (its count is within one
    weight of its density, which can round up after rounding down); that layer then keeps one weight fewer, within
    the exact-sparsity contract of one weight per layer.
    """
    if alive is None:
        return masks
    return {name: mask & alive[name] for name, mask in masks.items()}


@dataclass
class FinalMasks:
    """What a during-training method ends with.

    ``masks`` are at exactly the target sparsity. ``method_sparsity`` is the sparsity the method reached on its own,
    before ``enforcement`` (a short description of the step that brought it to the target; ``None`` if none was needed).
    """

    masks: Masks
    method_sparsity: float
    enforcement: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingContext:
    """What the harness tells a during-training method about the run it is attached to."""

    epochs: int
    """Epochs of the learning phase (the budget less :meth:`TrainingMethod.finetune_epochs`)."""
    steps_per_epoch: int
    device: torch.device
    seed: int
    num_classes: int
    train_data: ScoringData
    """The training set, for methods that choose among candidate masks on training data (ProbMask)."""


class TrainingSession(TrainHook):
    """A method's state while it trains with the weights (learned scores, thresholds, schedules).

    The parameters it learns are declared by :meth:`~prunebench.run.trainer.TrainHook.param_groups`, each group with
    its optimizer and schedule; the trainer builds, steps and checkpoints those optimizers. A session whose other
    state is not all held by the model (parameters and buffers of its parametrizations are) overrides
    :meth:`~prunebench.run.trainer.TrainHook.state_dict` and ``load_state_dict``: schedule positions, running values,
    parameters the model does not hold. A resumed run must be bit-identical to an uninterrupted one, which the
    checkpoint tests check for every registered learned-mask method.
    """

    def method_parameters(self) -> list[torch.Tensor]:
        """The parameters of :meth:`~prunebench.run.trainer.TrainHook.param_groups`, which the runner passes to the
        trainer's ``exclude`` (the trainer finds them itself)."""
        return [p for group in self.param_groups() for p in group.params]

    def finish(self, trainer: Trainer) -> FinalMasks:
        """End of the learning phase: leave the model as a plain module and return masks at the exact target."""
        raise NotImplementedError

    def release(self) -> None:
        """Leave the model as a plain module without computing masks: a run resumed after its learning phase,
        whose final masks its checkpoint kept."""


class TrainingMethod(Method):
    """A method that shapes the mask while the weights train."""

    starts_from: ClassVar[str] = "init"
    """``init`` (the seed's initial weights) or ``dense`` (the shared dense pre-training, e.g. movement pruning)."""

    finetune_fraction: float = 0.0
    """The share of the budget fine-tuned with the final masks fixed. A method that fine-tunes declares it as its
    hyperparameter ``finetune_fraction`` (an ``__init__`` argument); the others keep this 0 (no fine-tuning)."""

    def finetune_epochs(self, budget_epochs: int) -> int:
        """Epochs of ``budget_epochs`` spent fine-tuning with the final masks fixed, the same rule for every method:
        ``finetune_fraction`` of the budget rounded to the nearest epoch (halves to even, as Python's ``round``), at
        least one and leaving at least one to learn; none when the fraction is 0 or the budget has one epoch."""
        if self.finetune_fraction <= 0 or budget_epochs < 2:
            return 0
        return min(max(1, round(budget_epochs * self.finetune_fraction)), budget_epochs - 1)

    def finetune_optim(self, recipe: Recipe) -> OptimConfig:
        """The optimizer of the fine-tuning epochs (the recipe's fine-tuning optimizer by default)."""
        return recipe.finetune_optim

    def attach(
        self, model: nn.Module, weights: Weights, sparsity: float, scope: str, context: TrainingContext
    ) -> TrainingSession:
        """Prepare ``model`` (whose prunable weights are ``weights``) for training; return the session driving it."""
        raise NotImplementedError


@dataclass
class LayerPruning:
    """What a one-shot method does to one layer: its keep mask and, for a method that reconstructs the layer
    (SparseGPT), the weight's new values."""

    mask: torch.Tensor
    """Boolean keep mask of the weight's shape, exactly the layer's count ``True``."""
    weight: torch.Tensor | None = None
    """The weight's new values (zero outside ``mask``), or ``None`` when the kept weights stay as they were."""


class OneShotMethod(Method):
    """Prunes a trained model layer by layer from calibration inputs (schedule ``one_shot``).

    The harness (:mod:`prunebench.run.one_shot`) decides each layer's keep count by the run's scope, captures each
    layer's inputs on the calibration data (:class:`~prunebench.pruning.calibration.LayerInputs`, on the outputs of the
    already-pruned earlier blocks) and asks the method to prune the layer in the run's comparison group.
    """

    needs_hessian: ClassVar[bool] = False
    """Whether :meth:`prune_layer` needs ``inputs.hessian`` (``2/rows X^T X``; captured only when asked)."""

    def layer_scores(self, weight: torch.Tensor, inputs: LayerInputs) -> torch.Tensor:
        """A score per weight of the layer (``weight``'s shape, higher kept), on the dense model: the ``global``
        scope's allocation across layers."""
        raise NotImplementedError

    def prune_layer(self, weight: torch.Tensor, inputs: LayerInputs, count: int, group: str) -> LayerPruning:
        """Keep exactly ``count`` weights of ``weight`` in the comparison ``group``
        (:mod:`prunebench.pruning.comparison_groups`)."""
        raise NotImplementedError
