"""The allocation-controls table: how much of a method's gain over random pruning its layer-wise allocation explains.

Control runs (``bench run --controls shuffle,reinit``, :mod:`prunebench.run.allocation_controls`) are kept out of every other table
and summarised here, per method, scope and sparsity: the method's top-1, its ``shuffle`` and ``reinit`` controls',
random pruning's (the baseline :func:`prunebench.run.allocation_controls.baseline_cell` names), the method's gain over random
pruning ``M - R`` and the fraction of it that the allocation alone explains::

    f = (S - R) / (M - R)

with ``M``, ``S``, ``R`` the mean top-1 of the method, its shuffle control and random pruning over the seeds all
three share. ``f`` near 1: the shuffled mask, which keeps only the method's per-layer counts, does as well as the
method (Frankle et al. 2021's finding for pruning at initialization); near 0: the allocation does no better than
random pruning's, the choice of weights within layers is what counts. In a fixed layer-wise scope (uniform, ERK) the
allocation is the scope's, the same as random pruning's, so ``f`` is near 0 by construction; it says something for
the global scope and learned allocations.

The interval of ``f`` is Fieller's 95% interval for a ratio of means of paired differences (seeds are the pairs):
the set of ``f`` for which a paired t-test does not reject ``mean((S - R) - f (M - R)) = 0``. It is bounded exactly
when the gain ``M - R`` itself is significant by the paired t-test at the same level; otherwise the gain is not
significant, the fraction is not estimable, and the table says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from prunebench.leaderboard.record_reader import DENSE, variant
from prunebench.leaderboard.render import Cell, Table
from prunebench.leaderboard.section_tables import interval_text
from prunebench.leaderboard.setups import row_setups
from prunebench.leaderboard.stats import CONFIDENCE, compare, interval, t_quantile
from prunebench.leaderboard.tidy_table import seed_values
from prunebench.run.allocation_controls import RANDOM, baseline_cell

CONTROLS = ("shuffle", "reinit")


def control_of(record: dict[str, Any]) -> str:
    """``shuffle`` / ``reinit`` for a control run, ``""`` otherwise."""
    return str(record.get("control") or (record.get("config") or {}).get("control") or "")


def split_controls(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ordinary records and the control records."""
    return [r for r in records if not control_of(r)], [r for r in records if control_of(r)]


@dataclass(frozen=True)
class Fraction:
    """``estimate = a / b`` and Fieller's interval ``[low, high]`` (NaN where unbounded or untested); ``bounded``
    is ``False`` where the denominator is not significantly different from 0."""

    estimate: float
    low: float
    high: float
    bounded: bool
    n: int


def fraction_explained(
    method: dict[Any, float],
    shuffle: dict[Any, float],
    random: dict[Any, float],
    confidence: float = CONFIDENCE,
) -> Fraction:
    """``(S - R) / (M - R)`` over the seeds the three cells share, with Fieller's paired interval."""
    seeds = sorted(set(method) & set(shuffle) & set(random))
    n = len(seeds)
    if n == 0:
        return Fraction(math.nan, math.nan, math.nan, False, 0)
    top = np.array([shuffle[s] - random[s] for s in seeds])
    bottom = np.array([method[s] - random[s] for s in seeds])
    a, b = float(top.mean()), float(bottom.mean())
    estimate = a / b if b != 0 else math.nan
    if n < 2:
        return Fraction(estimate, math.nan, math.nan, False, n)
    covariance = np.cov(top, bottom, ddof=1) / n  # of the two means
    t = t_quantile(confidence, n - 1)
    quad = b * b - t * t * covariance[1, 1]
    half = a * b - t * t * covariance[0, 1]
    const = a * a - t * t * covariance[0, 0]
    if quad <= 0:  # the gain is not significant: the set is unbounded
        return Fraction(estimate, math.nan, math.nan, False, n)
    root = math.sqrt(max(half * half - quad * const, 0.0))
    return Fraction(estimate, (half - root) / quad, (half + root) / quad, True, n)


def _accuracy(values: dict[Any, float]) -> Cell:
    if not values:
        return Cell("—")
    summary = interval(list(values.values()))
    if len(values) == 1:
        return Cell(f"{summary.mean:.2f} (n=1)")
    return Cell(interval_text(summary.mean, summary.low, summary.high))


def _gain(method: dict[Any, float], random: dict[Any, float]) -> tuple[Cell, bool]:
    """``M - R`` with its paired interval, and whether it is significant."""
    if not method or not random:
        return Cell("—"), False
    result = compare(method, random)
    text = f"{result.difference:+.2f}".replace("-", "−")
    if not result.test:
        return Cell(f"{text} (not tested)"), False
    significant = result.pvalue < 1 - CONFIDENCE
    text += f" ± {(result.high - result.low) / 2:.2f}"
    return Cell(text if significant else f"{text} (n.s.)", bold=significant), significant


def _fraction_cell(fraction: Fraction, gain: float, significant: bool) -> Cell:
    if fraction.n == 0 or not math.isfinite(fraction.estimate):
        return Cell("—")
    if gain <= 0:
        return Cell(f"{fraction.estimate:.2f} (no gain over random)")
    if fraction.bounded:
        text = f"{fraction.estimate:.2f} [{fraction.low:.2f}, {fraction.high:.2f}]"
        return Cell(text.replace("-", "−"))
    return Cell(
        f"{fraction.estimate:.2f} (gain n.s.)" if fraction.n >= 2 else f"{fraction.estimate:.2f} (n=1)"
    )


def _cells(records: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    found: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        key = (r["method"], variant(r), r["scope"], float(r["sparsity"] or 0.0), control_of(r))
        found.setdefault(key, []).append(r)
    return found


def controls_table(records: list[dict[str, Any]], controls: list[dict[str, Any]]) -> Table | None:
    """The controls table of one (dataset, model): ``records`` its ordinary runs, ``controls`` its control runs."""
    if not controls:
        return None
    cells = _cells(records + controls)
    randoms: dict[tuple[str, str, float, str], dict[Any, float]] = {}  # of each setup
    schedules: dict[tuple[str, str, str, float], str] = {}
    setups = row_setups(records + controls)
    for r in records:
        if r["method"] != DENSE:
            schedules[(r["method"], variant(r), r["scope"], float(r["sparsity"]))] = r["schedule"]
            if r.get("criterion") == RANDOM:
                key = (r["schedule"], r["scope"], float(r["sparsity"]), setups[(r["method"], variant(r))])
                randoms[key] = seed_values(
                    cells[(r["method"], variant(r), r["scope"], float(r["sparsity"]), "")]
                )
    for r in controls:
        schedules.setdefault((r["method"], variant(r), r["scope"], float(r["sparsity"])), r["schedule"])
    rows, groups, previous = [], [], None
    for (method, var, scope, sparsity), schedule in sorted(schedules.items()):
        by_control = {c: seed_values(cells.get((method, var, scope, sparsity, c), [])) for c in CONTROLS}
        if not any(by_control.values()):
            continue
        if method != previous:
            groups.append(len(rows))
            previous = method
        # Every column of a row over the seeds its controls were run with, so the gain and the share agree.
        seeds = set().union(*(v.keys() for v in by_control.values()))
        values = {
            s: v
            for s, v in seed_values(cells.get((method, var, scope, sparsity, ""), [])).items()
            if s in seeds
        }
        random = {
            s: v
            for s, v in randoms.get(
                (*baseline_cell(schedule, scope), sparsity, setups[(method, var)]), {}
            ).items()
            if s in seeds
        }
        gain, significant = _gain(values, random)
        fraction = fraction_explained(values, by_control["shuffle"], random)
        difference = (
            float(np.mean(list(values.values())) - np.mean(list(random.values())))
            if values and random
            else 0.0
        )
        rows.append(
            [
                Cell(f"{method}[{var}] ({scope})" if var else f"{method} ({scope})"),
                Cell(f"{sparsity:g}"),
                _accuracy(values),
                _accuracy(by_control["shuffle"]),
                _accuracy(by_control["reinit"]),
                _accuracy(random),
                gain,
                _fraction_cell(fraction, difference, significant),
            ]
        )
    if not rows:
        return None
    notes = (
        "Top-1 (%) of each method, of its controls and of random pruning: mean ± half-width of the 95% t interval "
        "over the seeds the row's controls were run with ([low, high] where clipped to 0-100). shuffle: the method's final mask with the kept positions re-drawn at random within each layer "
        "(its per-layer counts exactly); reinit: the method's mask exactly, on re-drawn weights. Both are applied "
        "where the method's mask takes effect (initialization for pruning at initialization; the dense pre-training "
        "for pruning after training, then the same fine-tuning; IMP's rewind point) or, for masks learned during "
        "training, at initialization with the whole budget; then trained like the method (Frankle et al., ICLR "
        "2021; Su et al., NeurIPS 2020). random: random pruning at the method's point (after training for "
        "after-training methods, at initialization otherwise), in its scope (uniform for a learned allocation). "
        "gain: M − R, the method's top-1 minus random pruning's, seed by seed, ± its paired 95% interval; **bold** "
        "where significant (paired t, α=0.05), n.s. where not. allocation explains: (S − R) / (M − R), the share of "
        "the gain that the shuffled mask (the method's layer-wise allocation alone) keeps, with Fieller's paired "
        "95% interval; gain n.s.: the gain is not significant, so the interval is unbounded and the share is not "
        "estimable (more seeds). In a fixed layer-wise scope the allocation is the scope's, as for random pruning, "
        "so the share is near 0 by construction: it speaks for global and learned allocations."
    )
    header = [
        "method (scope)",
        "sparsity",
        "method",
        "shuffle",
        "reinit",
        "random",
        "gain",
        "allocation explains",
    ]
    title = "Allocation controls: what the layer-wise allocation alone explains"
    return Table("controls", title, header, rows, labels=2, notes=notes, groups=groups)


def add_control_tables(sections: list[Any], controls: list[dict[str, Any]]) -> None:
    """Insert each section's controls table after its scope and allocation tables (before the accuracy table)."""
    for section in sections:
        found = [r for r in controls if (r["dataset"], r["model"]) == (section.dataset, section.model)]
        table = controls_table(section.records, found)
        if table is None:
            continue
        names = [t.name for t in section.tables]
        section.tables.insert(names.index("accuracy") if "accuracy" in names else len(names), table)
