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
significant, the fraction is not estimable, and the table says so. The table shows a share only where the gain is
significant after Holm's correction over the rows of its sparsity (one family of tests, as in the other tables), and
never against a random-pruning baseline that collapsed (:data:`COLLAPSE_FRACTION`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from prunebench.leaderboard.record_reader import DENSE, group, variant
from prunebench.leaderboard.render import Cell, Table
from prunebench.leaderboard.section_tables import interval_text
from prunebench.leaderboard.setups import row_setups
from prunebench.leaderboard.stats import (
    ALPHA,
    CONFIDENCE,
    Comparison,
    compare,
    holm,
    interval,
    t_quantile,
    without_spread,
)
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


COLLAPSE_FRACTION = 0.5
"""A random-pruning baseline whose mean top-1 is below this fraction of the dense baseline's has collapsed (a layer
left with almost no weights; in the default grid, random pruning after training in the global scope at sparsity 0.95
averages 35.8 against a dense 95.3). The gain over it is mostly that collapse, and the share of the gain that the
allocation explains then says little about the method: the table flags the baseline and withholds the share."""


@dataclass
class _Row:
    """One row of the controls table before it is rendered: the top-1 of the method, its controls and random pruning
    by seed, the gain's comparison and whether random pruning collapsed."""

    label: str
    sparsity: float
    method: dict[Any, float]
    controls: dict[str, dict[Any, float]]
    random: dict[Any, float]
    collapsed: bool
    gain: Comparison | None = None
    p_holm: float = math.nan


def _gain(row: _Row) -> Cell:
    """``M - R`` with its paired interval, bold where significant after Holm over the rows of the sparsity."""
    if row.gain is None:
        return Cell("—")
    text = f"{row.gain.difference:+.2f}".replace("-", "−")
    if not row.gain.test:
        return Cell(f"{text} (not tested)")
    significant = row.p_holm < ALPHA
    if without_spread(row.gain.low, row.gain.high):
        text += " (no spread)"
    else:
        text += f" ± {(row.gain.high - row.gain.low) / 2:.2f}"
    return Cell(text if significant else f"{text} (n.s.)", bold=significant)


def _fraction_cell(row: _Row) -> Cell:
    """The share of the gain the allocation explains, shown only where that gain is significant after Holm and
    random pruning did not collapse."""
    fraction = fraction_explained(row.method, row.controls["shuffle"], row.random)
    if fraction.n == 0 or not math.isfinite(fraction.estimate) or row.gain is None:
        return Cell("—")
    if row.gain.difference <= 0:
        return Cell(f"{fraction.estimate:.2f} (no gain over random)")
    if row.collapsed:
        return Cell(f"{fraction.estimate:.2f} (withheld: random collapsed)")
    if fraction.n < 2:
        return Cell(f"{fraction.estimate:.2f} (n=1)")
    if not (row.p_holm < ALPHA and fraction.bounded):
        return Cell(f"{fraction.estimate:.2f} (gain n.s.)")
    text = f"{fraction.estimate:.2f} [{fraction.low:.2f}, {fraction.high:.2f}]"
    return Cell(text.replace("-", "−"))


def _random_cell(row: _Row) -> Cell:
    cell = _accuracy(row.random)
    return Cell(f"{cell.text} (collapsed)") if row.collapsed else cell


def _cells(records: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """The records by (method, variant, scope, sparsity, control); the controls compare allocations of whole layers,
    so runs in another comparison group than ``per_layer`` (``per_output``, N:M) are left out, never pooled."""
    found: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        if group(r) != "per_layer":
            continue
        key = (r["method"], variant(r), r["scope"], float(r["sparsity"] or 0.0), control_of(r))
        found.setdefault(key, []).append(r)
    return found


def _dense_means(records: list[dict[str, Any]]) -> dict[str, float]:
    """The dense baseline's mean top-1 of each setup (the variant of its dense rows)."""
    found: dict[str, list[float]] = {}
    for r in records:
        if r["method"] == DENSE and r["status"] == "ok":
            found.setdefault(variant(r), []).append(float(r["top1"]))
    return {setup: float(np.mean(values)) for setup, values in found.items()}


def _randoms(records: list[dict[str, Any]], cells: dict[tuple, list], setups: dict) -> dict[tuple, dict]:
    """Random pruning's top-1 by seed of each (schedule, scope, sparsity, setup)."""
    randoms: dict[tuple[str, str, float, str], dict[Any, float]] = {}
    for r in records:
        if r["method"] != DENSE and r.get("criterion") == RANDOM:
            key = (r["schedule"], r["scope"], float(r["sparsity"]), setups[(r["method"], variant(r))])
            randoms[key] = seed_values(cells[(r["method"], variant(r), r["scope"], float(r["sparsity"]), "")])
    return randoms


def _rows(records: list[dict[str, Any]], controls: list[dict[str, Any]]) -> tuple[list[_Row], list[int]]:
    """The rows of the table, each over the seeds its controls were run with, and where each method's rows begin."""
    cells = _cells(records + controls)
    setups = row_setups(records + controls)
    randoms, dense = _randoms(records, cells, setups), _dense_means(records)
    schedules: dict[tuple[str, str, str, float], str] = {}
    for r in records + controls:
        if r["method"] != DENSE:
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
        values = seed_values(cells.get((method, var, scope, sparsity, ""), []))
        setup = setups[(method, var)]
        random = randoms.get((*baseline_cell(schedule, scope), sparsity, setup), {})
        random = {s: v for s, v in random.items() if s in seeds}
        collapsed = bool(random) and setup in dense
        collapsed = collapsed and float(np.mean(list(random.values()))) < COLLAPSE_FRACTION * dense[setup]
        label = f"{method}[{var}] ({scope})" if var else f"{method} ({scope})"
        row = _Row(
            label, sparsity, {s: v for s, v in values.items() if s in seeds}, by_control, random, collapsed
        )
        row.gain = compare(row.method, row.random) if row.method and row.random else None
        rows.append(row)
    _adjust(rows)
    return rows, groups


def _adjust(rows: list[_Row]) -> None:
    """Holm's correction of the gains' p-values over the rows of each sparsity."""
    for sparsity in {row.sparsity for row in rows}:
        family = [row for row in rows if row.sparsity == sparsity]
        adjusted = holm([row.gain.pvalue if row.gain is not None else math.nan for row in family])
        for row, p in zip(family, adjusted, strict=True):
            row.p_holm = p


NOTES = (
    "Top-1 (%) of each method, of its controls and of random pruning: mean ± half-width of the 95% t interval "
    "over the seeds the row's controls were run with ([low, high] where clipped to 0-100). shuffle: the method's "
    "final mask with the kept positions re-drawn at random within each layer (its per-layer counts exactly); reinit: "
    "the method's mask exactly, on re-drawn weights. Both are applied where the method's mask takes effect "
    "(initialization for pruning at initialization; the dense pre-training for pruning after training, then the same "
    "fine-tuning; IMP's rewind point) or, for masks learned during training, at initialization with the whole "
    "budget; then trained like the method (Frankle et al., ICLR 2021; Su et al., NeurIPS 2020). random: random "
    "pruning at the method's point (after training for after-training methods, at initialization otherwise), in its "
    "scope (uniform for a learned allocation); collapsed: its mean top-1 is below "
    f"{COLLAPSE_FRACTION:.0%} of the dense baseline's, so the gain over it is mostly that collapse. gain: M − R, the "
    "method's top-1 minus random pruning's, seed by seed, ± its paired 95% interval; **bold** where significant "
    f"(paired t, Holm over the rows of the sparsity, α={ALPHA:g}), n.s. where not; no spread: the same on every "
    "seed, tested by the exact sign-flip test. allocation explains: (S − R) / (M − R), the share of the gain that "
    "the shuffled mask (the method's layer-wise allocation alone) keeps, with Fieller's paired 95% interval, shown "
    "only where the gain is significant after Holm and random pruning did not collapse; gain n.s.: the gain is not "
    "significant, so the share is not estimable (more seeds); withheld: random pruning collapsed. In a fixed "
    "layer-wise scope the allocation is the scope's, as for random pruning, so the share is near 0 by construction: "
    "it speaks for global and learned allocations."
)


def controls_table(records: list[dict[str, Any]], controls: list[dict[str, Any]]) -> Table | None:
    """The controls table of one (dataset, model): ``records`` its ordinary runs, ``controls`` its control runs."""
    if not controls:
        return None
    rows, groups = _rows(records, controls)
    if not rows:
        return None
    cells = [
        [
            Cell(row.label),
            Cell(f"{row.sparsity:g}"),
            _accuracy(row.method),
            _accuracy(row.controls["shuffle"]),
            _accuracy(row.controls["reinit"]),
            _random_cell(row),
            _gain(row),
            _fraction_cell(row),
        ]
        for row in rows
    ]
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
    return Table("controls", title, header, cells, labels=2, notes=NOTES, groups=groups)


def add_control_tables(sections: list[Any], controls: list[dict[str, Any]]) -> None:
    """Insert each section's controls table after its scope and allocation tables (before the accuracy table)."""
    for section in sections:
        found = [r for r in controls if (r["dataset"], r["model"]) == (section.dataset, section.model)]
        table = controls_table(section.records, found)
        if table is None:
            continue
        names = [t.name for t in section.tables]
        section.tables.insert(names.index("accuracy") if "accuracy" in names else len(names), table)
