"""The iterative schedule: prune, rewind, retrain, in rounds (iterative magnitude pruning with rewinding, IMP).

Frankle & Carbin, ICLR 2019, "The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural Networks"; Frankle et
al., ICML 2020, "Linear Mode Connectivity and the Lottery Ticket Hypothesis" (rewinding to an early iteration), as in
``facebookresearch/open_lth`` (``lottery/runner.py``, ``pruning/sparse_global.py``, ``training/train.py``). Magnitude
under this schedule is ``imp``; any criterion that declares ``iterative`` runs the same way.

With ``T`` the recipe's steps, ``r`` the rewind step (``rewind * T``), ``k`` rounds and target sparsity ``s``:

1. Train the dense network from its initial weights to step ``r`` and keep its whole state there (weights and
   buffers, e.g. BatchNorm statistics): the rewind point. With ``r = 0`` it is the initial state.
2. Round 0 (open_lth's level 0): train the dense network from the rewind point to step ``T``.
3. Round ``j = 1..k``: score the trained network with the criterion under the scope, live weights only, and keep
   the density ``(1 - s)^(j/k)`` of the prunable weights (exactly ``1 - s`` in the last round); rewind every
   surviving weight and buffer to the rewind point; retrain from step ``r`` to ``T`` with the mask fixed.

Every retraining resumes the recipe where the rewind point left it, as open_lth's ``train(start_step=...)``: the
learning rate follows the schedule from step ``r`` and the batches are those of steps ``r..T`` (the same order every
round); the optimizer starts afresh (momentum zero), as open_lth builds a new optimizer for every level and for the
training that ends at the rewind point. The final model is the last round's.

Budget: every step counts, ``r + (k + 1)(T - r)`` steps in all, ``k + 1`` times the recipe at ``r = 0``.

Deviations from open_lth:

* Per-round density: open_lth removes ``pruning_fraction`` (0.2) of the remaining weights per level until the user
  stops; here ``k`` rounds remove ``1 - (1 - s)^(1/k)`` each, so that the last round lands on the target.
* Exact counts: open_lth keeps the weights above the ``ceil(0.2 * remaining)``-th smallest magnitude (ties at the
  threshold are all removed); here each round keeps exactly its scheduled count, allocated by the scope
  (``sparse_global`` is the ``global`` scope; the others are this benchmark's).
* open_lth's training to the rewind point is a separate run with its own optimizer, so its level 0 also restarts
  the momentum at the rewind point; so does this schedule's round 0.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import nn

from prunebench.core.errors import UsageError
from prunebench.methods.base import Masks
from prunebench.pruning.mask_application import MaskEnforcer, apply_masks
from prunebench.run.criterion_schedules import Iterative
from prunebench.run.trainer import Trainer, TrainHook

if TYPE_CHECKING:
    from prunebench.run.run_checkpoint import RunCheckpoint, SkippedPhase

Train = Callable[[int, int, list[TrainHook], str], "Trainer | SkippedPhase"]
"""``(start, stop, hooks, phase) -> trainer``: train the model over steps ``start..stop`` of the recipe's schedule."""
Pruner = Callable[[float, Masks | None], Masks]
"""``(sparsity, alive) -> masks``: the criterion's masks of the trained model at ``sparsity``, within ``alive``."""


@dataclass
class IterativeOutcome:
    masks: Masks
    train_loss: float
    """Mean training loss of the last epoch of the last round."""
    steps: int
    """Optimizer steps of the whole schedule, every round counted."""
    retrain_steps: int
    """Optimizer steps of the rounds after the first pruning."""
    details: dict[str, Any]


def round_density(sparsity: float, round_index: int, rounds: int) -> float:
    """Density kept after round ``round_index`` of ``rounds``: ``(1 - s)^(j/k)``, exactly ``1 - s`` in the last."""
    return 1.0 - sparsity if round_index == rounds else (1.0 - sparsity) ** (round_index / rounds)


def prune_iteratively(
    model: nn.Module,
    sparsity: float,
    schedule: Iterative,
    total_steps: int,
    train: Train,
    prune: Pruner,
    checkpoint: RunCheckpoint | None = None,
) -> IterativeOutcome:
    """Run the schedule on ``model`` (whose recipe has ``total_steps`` steps); it ends with the last round's model.

    ``checkpoint`` keeps the rewind point and the latest round's masks, so that a resumed run continues with the
    round it was in (``train`` skips the rounds completed before).
    """
    rewind_step = round(schedule.rewind * total_steps)
    if rewind_step >= total_steps:
        raise UsageError(
            f"rewind={schedule.rewind} leaves no step to retrain out of {total_steps}; give a smaller rewind"
        )
    if rewind_step > 0:
        train(0, rewind_step, [], "to rewind point")
    values: dict = {} if checkpoint is None else checkpoint.values
    if "rewind" not in values:
        values["rewind"] = copy.deepcopy(model.state_dict())
    rewind_state = values["rewind"]
    trainer = train(rewind_step, total_steps, [], "round 0")
    saved = values.get("iterative")
    masks: Masks | None = saved["masks"] if saved else None
    rounds: list[dict[str, Any]] = list(saved["rounds"]) if saved else []
    for index in range(saved["round"] if saved else 1, schedule.rounds + 1):
        density = round_density(sparsity, index, schedule.rounds)
        if not (saved and index == saved["round"]):
            masks = prune(1.0 - density, masks)
            values["iterative"] = {"round": index, "masks": masks, "rounds": list(rounds)}
        assert masks is not None
        model.load_state_dict(rewind_state)
        apply_masks(model, masks)
        trainer = train(rewind_step, total_steps, [MaskEnforcer(model, masks)], f"round {index}")
        kept = sum(int(m.sum()) for m in masks.values())
        size = sum(m.numel() for m in masks.values())
        rounds.append(
            {
                "round": index,
                "target_density": density,
                "density": kept / size,
                "train_loss": trainer.last_loss,
            }
        )
    assert masks is not None
    return IterativeOutcome(
        masks=masks,
        train_loss=trainer.last_loss,
        steps=rewind_step + (schedule.rounds + 1) * (total_steps - rewind_step),
        retrain_steps=schedule.rounds * (total_steps - rewind_step),
        details={"rewind_step": rewind_step, "steps_per_round": total_steps - rewind_step, "rounds": rounds},
    )
