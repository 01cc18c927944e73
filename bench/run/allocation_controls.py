"""Allocation controls: how much of a method's result its layer-wise allocation alone explains.

The sanity checks of Frankle et al., ICLR 2021, "Pruning Neural Networks at Initialization: Why Are We Missing the
Mark?" (section 5: "randomly shuffle" the pruned positions within each layer, "reinitialize" the kept weights) and Su
et al., NeurIPS 2020, "Sanity-Checking Pruning Methods: Random Tickets can Win the Jackpot" (random tickets: random
masks with a method's layer-wise keep ratios). For a run of a method (its *source*), ``--controls shuffle,reinit``
adds two runs:

* ``shuffle``: the source's final mask with the kept positions re-drawn uniformly at random within each layer,
  exactly as many per layer (the source's layer-wise allocation, nothing of its choice of weights), on the source's
  weights at the point below;
* ``reinit``: the source's final mask exactly, on weights re-drawn from the model's initialization with a generator
  of its own (seed-derived, different from the run's), at the point below.

Both then train exactly as the source trains after that point, under the same recipe, seed and data order. Controls
are ordinary runs: their id is the source's identity plus ``control`` (:class:`~prunebench.run.run_config.RunConfig`), they
are resumed and recorded like any other, and their masks are saved. A control reads its source's saved mask
(:mod:`prunebench.pruning.saved_masks`), so it runs after its source (:func:`controls_last`; a scheduler uses :func:`source_config`
to treat the source as a prerequisite). If the source failed or has not run, the control fails with a one-line
reason, and is retried by the next ``bench run``, as failed runs are.

Where the mask is applied, per the source's schedule (``control point``):

* ``at_init`` (SNIP, GraSP, SynFlow, magnitude at init, random): at initialization, then the whole budget sparse, as
  the source and as Frankle et al. section 5. ``shuffle`` keeps the seed's initial weights.
* ``after_training`` (magnitude, LAMP): the source pruned the shared dense pre-training and fine-tuned it. The control
  applies its mask to the same point: ``shuffle`` to the same dense pre-training, ``reinit`` to weights re-drawn at
  that point (the pre-trained values, biases and normalization statistics replaced by a fresh initialization; Frankle
  et al.'s "reinitialize" of a method that prunes after training), then both fine-tune as the source did. The dense
  pre-training is spent either way, so the budget is the source's.
* ``iterative`` (IMP): the final mask is applied at the rewind point (the initial weights at the default
  ``rewind=0``; otherwise the state that training from initialization reaches at the rewind step, trained again
  here), then trained from the rewind step to the end once: the last round of IMP with the control's mask (Frankle &
  Carbin's reinitialized ticket; Frankle et al.'s ablations of lottery ticket rewinding). A control spends the
  recipe's budget, not IMP's rounds.
* ``gradual`` and ``during_training`` (GMP, movement, soft movement, ProbMask, STR): the mask is learned together with
  the weights, so no point of the schedule holds weights that did not shape it; neither paper defines an ablation for
  such methods. Their final mask is treated as a ticket (Su et al.'s random tickets with the method's layer-wise
  ratios; Frankle & Carbin's reinitialized tickets): applied at initialization and trained sparse for the whole
  budget with the recipe's optimizer. The control then answers "would the learned allocation (``shuffle``) or the
  learned mask (``reinit``), trained from the start, have done as well?"; it does not re-run the method's learning.

A control's run is planned from the harness's phases by :func:`prunebench.run.control_plans.control_plan`; this
module plans the grid's controls and needs no torch.

Random pruning is the baseline of the report's fraction explained (:mod:`prunebench.leaderboard.controls_table`), so
``--controls`` also adds, for every controlled cell, the random-pruning run that matches it when the grid lacks it:
``random@after_training`` for after-training sources (same point: the dense pre-training), ``random`` (at
initialization) for every other; in the source's scope, ``uniform`` for learned allocations. Random pruning itself
and the dense baseline get no controls.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from prunebench.core.errors import UsageError
from prunebench.core.hashing import stable_hash
from prunebench.run.run_config import RunConfig

if TYPE_CHECKING:
    from prunebench.methods.method_registry import MethodSpec

CONTROLS = ("shuffle", "reinit")
RANDOM = "random"
"""The criterion of the random-pruning baseline (never controlled itself)."""
POINTS = {"at_init": "init", "after_training": "dense pre-training", "iterative": "rewind point"}
"""Where each schedule's control applies its mask; every other schedule: at initialization (see the module)."""


class ControlError(RuntimeError):
    """A control that cannot run: its source failed, diverged, has not run, or left no mask."""


def parse_controls(value: str | Iterable[str] | None) -> list[str]:
    """``shuffle,reinit`` (a comma-separated string or a list; ``none`` or empty: no control) -> the controls."""
    if value is None:
        return []
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    names = [n for n in names if n and n != "none"]
    for name in names:
        if name not in CONTROLS:
            raise UsageError(f"unknown control {name!r}; controls: {', '.join(CONTROLS)} (comma-separated)")
    return list(dict.fromkeys(names))


def control_point(spec: MethodSpec) -> str:
    """Where a control of a ``spec`` run applies its mask: ``init``, ``dense pre-training`` or ``rewind point``."""
    return POINTS.get(spec.schedule, "init")


def source_config(config: RunConfig) -> RunConfig:
    """The run a control is a control of: the same configuration without ``control`` (the config itself if it is
    not a control). A scheduler treats it as the control's prerequisite."""
    return dataclasses.replace(config, control="") if config.control else config


def source_run_id(config: RunConfig) -> str:
    """The run id of :func:`source_config`."""
    return source_config(config).run_id


def controllable(config: RunConfig) -> bool:
    """Whether ``config`` gets controls: a pruned run of a method other than random pruning, not itself a control."""
    return not config.control and config.method != "dense" and config.spec.criterion != RANDOM


RANDOM_SCOPES = ("global", "uniform", "uniform_plus", "erk")
"""The scopes random pruning runs in (a learned allocation is measured against ``uniform``)."""


def baseline_cell(schedule: str, scope: str) -> tuple[str, str]:
    """The schedule and scope of the random-pruning baseline of a source run of ``schedule`` and ``scope``:
    after training for after-training sources, at initialization otherwise; the source's scope, ``uniform`` for a
    learned one. The leaderboard finds the baseline's records by this same rule."""
    return (
        "after_training" if schedule == "after_training" else "at_init",
        scope if scope in RANDOM_SCOPES else "uniform",
    )


def random_baseline(config: RunConfig) -> RunConfig:
    """The random-pruning run that ``config``'s controls are measured against (see the module docstring)."""
    schedule, scope = baseline_cell(config.spec.schedule, config.scope)
    method = RANDOM if schedule == "at_init" else f"{RANDOM}@{schedule}"
    return dataclasses.replace(config, method=method, scope=scope, settings=(), control="")


def with_controls(configs: Sequence[RunConfig], controls: Sequence[str]) -> list[RunConfig]:
    """``configs``, then the random baselines they lack, then every control of every controllable run."""
    if not controls:
        return list(configs)
    found = {c.run_id: c for c in configs}
    sources = [c for c in configs if controllable(c)]
    for config in sources:
        baseline = random_baseline(config)
        found.setdefault(baseline.run_id, baseline)
    for config in sources:
        for name in controls:
            control = dataclasses.replace(config, control=name)
            found.setdefault(control.run_id, control)
    return list(found.values())


def controls_last(configs: Sequence[RunConfig]) -> list[list[RunConfig]]:
    """``configs`` in the batches a local runner runs one after the other: every other run, then the controls
    (whose sources are then finished); empty batches are left out."""
    batches = [[c for c in configs if not c.control], [c for c in configs if c.control]]
    return [batch for batch in batches if batch]


def derived_seed(kind: str, seed: int) -> int:
    """A 63-bit seed for the ``kind`` draw of a run of ``seed``, different from every run seed in practice."""
    return int(stable_hash({"control": kind, "seed": seed}), 16) >> 1
