"""When a scoring criterion prunes: the schedules the harness runs any criterion under, with their hyperparameters.

A scoring criterion (magnitude, LAMP, SNIP, ...) is written once; the harness runs it under every schedule it
declares:

* ``at_init``: score the initial weights once, train sparse for the whole budget.
* ``after_training``: score the shared dense pre-training once (one shot), fine-tune with the mask fixed.
* ``gradual``: prune along Zhu & Gupta's cubic schedule while the weights train from initialization.
* ``iterative``: iterative pruning with weight rewinding (IMP, Frankle et al.), several rounds of train / prune /
  rewind; it trains a multiple of the budget, so ``--methods all`` runs it only when named.
* ``one_shot``: post-training pruning from calibration data (SparseGPT, Wanda): prune the shared dense pre-training
  once, layer by layer, from ``calibration`` training examples (:mod:`prunebench.run.one_shot`), fine-tune only when
  asked; ``--methods all`` runs it only when named.

Learned-mask methods (ProbMask, STR, movement) have their own ``during_training`` schedule, and the baseline is
``dense``. Each schedule declares its hyperparameters like a method (keyword arguments of ``__init__``, see
:mod:`prunebench.catalog.hparams`) and has a ``version``, bumped when what it computes changes; both enter a run's id.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

SCHEDULES = ("dense", "at_init", "after_training", "gradual", "iterative", "during_training", "one_shot")
"""Every schedule a registered method can have."""

SCORING_SCHEDULES = ("at_init", "after_training", "gradual", "iterative", "one_shot")
"""The schedules the harness runs a scoring criterion under."""


class Schedule:
    """The hyperparameters of one schedule (none by default)."""

    name: ClassVar[str]
    version: ClassVar[int] = 1


class AtInit(Schedule):
    """Score once at initialization, then train sparse for the whole budget."""

    name = "at_init"


class AfterTraining(Schedule):
    """Score the dense pre-training once, then fine-tune with the mask fixed."""

    name = "after_training"


class Gradual(Schedule):
    """Prune along Zhu & Gupta's cubic schedule while training from initialization.

    The criterion prunes every ``frequency`` of training between ``start`` and ``end``, from ``initial_sparsity`` to
    the target. The defaults are those of Zhu & Gupta's uses in RigL and STR, as fractions of training (see
    :mod:`prunebench.run.gradual_schedule`).
    """

    name = "gradual"

    def __init__(
        self,
        start: Annotated[float, "start of the pruning window, as a fraction of training"] = 0.2,
        end: Annotated[
            float, "end of the pruning window (the target is reached here), fraction of training"
        ] = 0.8,
        frequency: Annotated[float, "fraction of training between two pruning steps"] = 0.01,
        initial_sparsity: Annotated[float, "sparsity s_i at the start of the window"] = 0.0,
    ) -> None:
        if not 0.0 <= start < end <= 1.0:
            raise ValueError(f"the pruning window must satisfy 0 <= start < end <= 1, got {start}, {end}")
        if not 0.0 < frequency <= 1.0:
            raise ValueError(f"frequency is a fraction of training in (0, 1], got {frequency}")
        if not 0.0 <= initial_sparsity < 1.0:
            raise ValueError(f"initial_sparsity must lie in [0, 1), got {initial_sparsity}")
        self.start = start
        self.end = end
        self.frequency = frequency
        self.initial_sparsity = initial_sparsity


class Iterative(Schedule):
    """Rounds of train, prune, rewind, retrain: iterative pruning with rewinding (IMP).

    As :mod:`prunebench.run.iterative_schedule` runs it, each of ``rounds`` rounds keeps ``(1 - s)^(1/k)`` of the weights left
    and rewinds the survivors to step ``rewind * T`` of the recipe's ``T`` steps; the whole schedule trains
    ``rounds + 1`` times the recipe, less the rewound part.

    Defaults:

    * ``rounds = 10``. open_lth prunes 20% of the remaining weights per level (``sparse_global``'s
      ``pruning_fraction``), as Frankle & Carbin 2019 prune LeNet-300-100: reaching a target at that rate takes 10
      levels at sparsity 0.9, 13 at 0.95 and 21 at 0.99. Ten rounds remove 20.6%, 25.9% and 36.9% per round at those
      targets: the open_lth rate at 0.9 and within a factor of two of it at 0.99, at 11 times the recipe. On the
      embedded default, whose 20-epoch recipe trains in about 3 s on one idle CPU core, that is about half a minute
      per run, so the faithful rate costs little; fewer rounds prune faster, and Frankle & Carbin find that one-shot
      pruning yields winning tickets only at lower sparsities than iterative pruning at 20% per round.
    * ``rewind = 0``: the initial weights, open_lth's default (no ``--rewinding_steps``) and Frankle & Carbin's
      setting. Frankle et al. 2020 find matching subnetworks at initialization on MNIST (the embedded default's
      data) but, for larger networks, only by rewinding to an early iteration: set ``rewind`` to a small fraction
      (e.g. 0.01) there.
    """

    name = "iterative"

    def __init__(
        self,
        rounds: Annotated[
            int, "pruning rounds k; each keeps (1-s)^(1/k) of the weights left, then retrains"
        ] = 10,
        rewind: Annotated[
            float,
            "rewind point as a fraction of the recipe's steps: survivors restart from their weights there "
            "(0: the initial weights)",
        ] = 0.0,
    ) -> None:
        if rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {rounds}")
        if not 0.0 <= rewind < 1.0:
            raise ValueError(f"rewind is a fraction of training in [0, 1), got {rewind}")
        self.rounds = rounds
        self.rewind = rewind


class OneShot(Schedule):
    """Prune the dense pre-training once from calibration data, layer by layer; fine-tune only when asked.

    ``calibration``: examples of the training split the one-shot pass feeds the model (128, the calibration
    sequences of the SparseGPT and Wanda papers; :mod:`prunebench.run.one_shot` says which). ``finetune``: fine-tune
    the recipe's ``finetune_epochs`` with the masks fixed, as ``after_training`` does (off by default, as the papers
    prune without retraining; the run then spends only the dense pre-training's epochs of the budget).
    """

    name = "one_shot"

    def __init__(
        self,
        calibration: Annotated[int, "calibration examples from the training split"] = 128,
        finetune: Annotated[bool, "fine-tune the recipe's finetune_epochs with the masks fixed"] = False,
    ) -> None:
        if calibration < 1:
            raise ValueError(f"calibration takes at least 1 example, got {calibration}")
        self.calibration = calibration
        self.finetune = finetune


SCHEDULE_CLASSES: dict[str, type[Schedule]] = {
    cls.name: cls for cls in (AtInit, AfterTraining, Gradual, Iterative, OneShot)
}
"""The schedules of scoring criteria, by name."""
