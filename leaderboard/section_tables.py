"""The leaderboard's tables of one (dataset, model) as table models: scope differences, learned allocations,
top-1 (and top-5) accuracy, compression and speedup. Markdown, LaTeX and CSV all render these.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

import prunebench.leaderboard.layer_densities as allocations
from prunebench.leaderboard.record_reader import (
    DENSE,
    criterion_label,
    enforcement,
    enforcement_change,
    row_label,
    variant,
)
from prunebench.leaderboard.render import Cell, Table
from prunebench.leaderboard.stats import ALPHA, FEW_SEEDS, UNPAIRED, smallest_p, without_spread
from prunebench.leaderboard.uncertainty import SEED_LEVEL, TWO_LEVEL

NOT_DIFFERENT = "†"
COLLAPSED = "‡"
ENFORCED = "§"
FEW = "¶"
LEVELS_DIFFER = "◊"
"""A scope difference whose two levels of uncertainty (seeds; seeds and test examples) disagree on significance."""
INTERVAL_NAMES = {"t": "Student-t", "bootstrap": "percentile-bootstrap (9,999 resamples, seed 0)"}
SCOPE_NAMES = {"global": "global", "erk": "ERK", "uniform_plus": "uniform+", "uniform": "uniform"}
"""How a scope is written in a difference (``global − ERK``); others as they are."""


def sparsity_label(sparsity: float) -> str:
    """Column header of a target sparsity with its compression of the prunable weights, e.g. ``0.9 (10×)``."""
    return f"{sparsity:g} ({1 / (1 - sparsity):.3g}×)"


def typical_n(group: pd.DataFrame) -> int:
    """The most common seed count among the cells that have a finished run (the smallest on a draw)."""
    counts = group.loc[group["n"] > 0, "n"]
    return int(counts.mode().min()) if len(counts) else 0


def interval_text(mean: float, low: float, high: float) -> str:
    """``mean ± half-width`` for a symmetric interval, ``mean [low, high]`` for one clipped or skewed."""
    if abs((high - mean) - (mean - low)) <= 1e-7:
        return f"{mean:.2f} ± {(high - low) / 2:.2f}"
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def _with_notes(text: str, notes: list[str]) -> str:
    return f"{text} ({', '.join(notes)})" if notes else text


def accuracy_cell(row: Mapping[str, Any], usual_n: int, metric: str = "top1") -> Cell:
    """Mean and interval, the seed count where it is not the usual one, failures, and the markers."""
    n, failed = int(row["n"]), int(row["n_failed"])
    if n == 0:
        return Cell(f"failed ({failed})")
    mean = row[f"{metric}_mean"]
    text = f"{mean:.2f}" if n == 1 else interval_text(mean, row[f"{metric}_ci_low"], row[f"{metric}_ci_high"])
    notes = [f"n={n}"] if n != usual_n or n == 1 else []
    if failed:
        notes.append(f"{failed} failed")
    marks = []
    if metric == "top1":
        if row.get("test_vs_best") == UNPAIRED:
            notes.append("unpaired")
        if bool(row.get("not_different_from_best", False)):
            marks.append(NOT_DIFFERENT)
    if n < FEW_SEEDS:
        marks.append(FEW)
    return Cell(
        _with_notes(text, notes),
        bold=metric == "top1" and bool(row.get("best", False)),
        marks=" ".join(marks),
    )


def cost_cell(row: Mapping[str, Any]) -> Cell:
    """``compression× / speedup×`` of one cell, with the collapsed-layer and enforcement markers."""
    if int(row["n"]) == 0:
        return Cell(f"failed ({int(row['n_failed'])})")
    marks = [COLLAPSED] if bool(row.get("collapsed", False)) else []
    if isinstance(row.get("enforcement"), str):
        marks.append(ENFORCED)
    return Cell(f"{row['compression_ratio']:.1f}× / {row['speedup']:.2f}×", marks=" ".join(marks))


def grouped_records(
    frame: pd.DataFrame, keys: list[str], sort: bool
) -> list[tuple[tuple, list[dict[str, Any]]]]:
    """The rows of ``frame`` as dicts, grouped by the values of ``keys``: the groups sorted, or in order of first
    appearance (as ``DataFrame.groupby(keys, sort=sort)``). One conversion for the whole frame: ``to_dict`` per group
    costs a few milliseconds each."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for record in frame.to_dict("records"):
        groups.setdefault(tuple(record[k] for k in keys), []).append(record)
    return sorted(groups.items(), key=lambda item: item[0]) if sort else list(groups.items())


def _rows(pruned: pd.DataFrame, cell: Callable[[dict[str, Any]], Cell]) -> tuple[list[list[Cell]], list[int]]:
    """Per (method, variant, scope), its label and cells by sparsity; and where each method's rows begin."""
    sparsities = sorted(pruned["sparsity"].unique())
    rows, groups, previous = [], [], None
    for (method, var, scope), runs in grouped_records(pruned, ["method", "variant", "scope"], sort=True):
        if method != previous:
            groups.append(len(rows))
            previous = method
        by_sparsity = {r["sparsity"]: cell(r) for r in runs}
        rows.append([Cell(row_label(method, var, scope)), *(by_sparsity.get(s, Cell()) for s in sparsities)])
    return rows, groups


def _header(pruned: pd.DataFrame, *labels: str) -> list[str]:
    return [*labels, *(sparsity_label(s) for s in sorted(pruned["sparsity"].unique()))]


def dense_text(group: pd.DataFrame) -> str | None:
    """The dense baseline of one (dataset, model), always with its seed count; ``None`` when it was not run.

    Where the runs differ in their setup (:mod:`prunebench.leaderboard.setups`), each setup's baseline, labelled:
    ``dense[epochs=3]: 97.10 ± 0.40 (n=2); dense[epochs=4]: ...``.
    """
    dense = group[group["method"] == DENSE]
    texts = []
    for row in dense.to_dict("records"):
        cell = accuracy_cell({**row, "best": False}, -1)
        text = f"**{cell.text} {cell.marks}**" if cell.marks else f"**{cell.text}**"
        texts.append(f"{criterion_label(DENSE, row['variant'])}: {text}" if len(dense) > 1 else text)
    return "; ".join(texts) or None


def dense_line(group: pd.DataFrame) -> str:
    baseline = dense_text(group)
    return "Dense baseline: not run." if baseline is None else f"Dense baseline (top-1 %): {baseline}"


def accuracy_table(group: pd.DataFrame, kind: str) -> Table:
    """Top-1 of every (method, variant, scope) at every sparsity, the best bold, † where not different from it."""
    usual = typical_n(group)
    pruned = group[group["method"] != DENSE]
    rows, groups = _rows(pruned, lambda r: accuracy_cell(r, usual))
    notes = (
        "Columns: target sparsity s of the prunable weights (their compression 1/(1-s)). "
        f"Top-1 accuracy (%) on the test set: mean ± half-width of the 95% {INTERVAL_NAMES[kind]} interval "
        f"over seeds, [low, high] where it is clipped to 0-100 or skewed; n = {usual} seeds per cell unless shown. "
        f"n=1: a single seed, shown without an interval. {FEW}: fewer than {FEW_SEEDS} seeds, too few for the "
        f"interval or the test to say much. **Bold**: the best mean of the column. {NOT_DIFFERENT}: not "
        f"significantly different from the best (paired t, Holm, α={ALPHA:g}: seeds paired, Holm's correction "
        "within the column; `unpaired`: the seeds differ from the best's, Welch's test instead; cells with fewer "
        "than 2 seeds are not tested). Failed and diverged runs are counted (`failed`), never averaged."
    )
    return Table(
        "accuracy",
        "Top-1 accuracy (%)",
        _header(pruned, "method (scope)"),
        rows,
        notes=notes,
        groups=groups,
        caption=dense_line(group).replace("**", ""),
    )


def top5_table(group: pd.DataFrame, kind: str) -> Table:
    """Top-5 of every (method, variant, scope) at every sparsity, with the same intervals (no test)."""
    usual = typical_n(group)
    pruned = group[group["method"] != DENSE]
    rows, groups = _rows(pruned, lambda r: accuracy_cell(r, usual, "top5"))
    notes = f"Top-5 accuracy (%): mean ± half-width of the 95% {INTERVAL_NAMES[kind]} interval over seeds."
    return Table(
        "top5", "Top-5 accuracy (%)", _header(pruned, "method (scope)"), rows, notes=notes, groups=groups
    )


def enforcement_lines(records: list[dict[str, Any]]) -> list[str]:
    """Per (method, variant, scope) whose runs were brought to the target, one line: how often and how much."""
    runs: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        if r["status"] == "ok" and r["method"] != DENSE:
            runs.setdefault((r["method"], variant(r), r["scope"]), []).append(r)
    lines = []
    for (method, var, scope), found in sorted(runs.items()):
        enforced = [r for r in found if enforcement(r)]
        if not enforced:
            continue
        line = f"{row_label(method, var, scope)}: {len(enforced)} of {len(found)} runs"
        changes = [c for c in map(enforcement_change, enforced) if c is not None]
        if changes:
            low, high = 100 * min(changes), 100 * max(changes)
            span = f"{low:.1f}%" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}–{high:.1f}%"
            line += f", the step changed the number of kept weights by {span}"
        steps = {enforcement(r) for r in enforced}
        line += (
            f"; step: {steps.pop()}" if len(steps) == 1 else "; the step of each run: `enforcement`, tidy CSV"
        )
        lines.append(line)
    return lines


def cost_table(group: pd.DataFrame, records: list[dict[str, Any]]) -> Table:
    """Compression ratio and theoretical speedup of every (method, variant, scope) at every sparsity."""
    pruned = group[group["method"] != DENSE]
    rows, groups = _rows(pruned, cost_cell)
    notes = (
        "Compression ratio: all parameters of the dense model / non-zero parameters (ShrinkBench). "
        "Theoretical speedup: dense FLOPs / sparse FLOPs (FLOPs of one example as `torch.utils.flop_counter` counts "
        "them, 2 per multiply-accumulate; each weight's FLOPs times its density)."
    )
    if pruned["collapsed"].eq(True).any():
        notes += f" {COLLAPSED}: at least one seed has a collapsed layer (no weight left in it)."
    enforced = enforcement_lines(records)
    if enforced:
        notes += (
            f" {ENFORCED}: the method's own sparsity was brought to the exact target by an enforcement step; the "
            "change is |own − target| kept weights / target kept weights, per method:"
        )
    title = "Compression ratio / theoretical speedup"
    return Table(
        "cost", title, _header(pruned, "method (scope)"), rows, notes=notes, items=enforced, groups=groups
    )


def _spreadless(row: Mapping[str, Any]) -> bool:
    """Whether a tested difference had no spread over the seeds (its p is the exact permutation test's)."""
    return isinstance(row.get("test"), str) and without_spread(row["ci_low"], row["ci_high"])


def _levels_differ(row: Mapping[str, Any]) -> bool:
    """Whether the comparison over seeds and test examples, where there is one, disagrees with the seed-level one."""
    return pd.notna(row.get("two_level_p")) and bool(row["significant"]) != bool(row["two_level_significant"])


def difference_cell(row: Mapping[str, Any], usual_n: int) -> Cell:
    """``+0.40 ± 0.95`` (top-1 points, paired 95% interval), bold where significant after Holm; ``no spread`` where
    the difference was the same on every seed; :data:`LEVELS_DIFFER` where the two levels of uncertainty disagree."""
    difference = row["difference"]
    text = f"{difference:+.2f}".replace("-", "−")
    notes = [f"n={int(row['n'])}"] if int(row["n"]) != usual_n else []
    if _spreadless(row):
        notes.append("no spread")
    elif isinstance(row.get("test"), str):
        text += f" ± {(row['ci_high'] - row['ci_low']) / 2:.2f}"
    if row.get("test") == UNPAIRED:
        notes.append("unpaired")
    elif not isinstance(row.get("test"), str):
        notes.append("not tested")
    marks = LEVELS_DIFFER if _levels_differ(row) else ""
    return Cell(_with_notes(text, notes), bold=bool(row["significant"]), marks=marks)


def scope_label(scope: str) -> str:
    return SCOPE_NAMES.get(scope, scope)


def scope_table(comparisons: pd.DataFrame) -> Table | None:
    """The headline: per criterion, the paired difference between each two of its scopes at every sparsity."""
    if comparisons.empty:
        return None
    sparsities = sorted(comparisons["sparsity"].unique())
    counts = comparisons["n"]
    usual = int(counts.mode().min()) if len(counts) else 0
    rows, groups, previous = [], [], None
    for (method, var, a, b), found in grouped_records(
        comparisons, ["method", "variant", "scope_a", "scope_b"], sort=False
    ):
        if (method, var) != previous:
            groups.append(len(rows))
            previous = (method, var)
        by_sparsity = {r["sparsity"]: difference_cell(r, usual) for r in found}
        label = Cell(criterion_label(method, var))
        comparison = Cell(f"{scope_label(a)} − {scope_label(b)}")
        rows.append([label, comparison, *(by_sparsity.get(s, Cell()) for s in sparsities)])
    notes = (
        "Top-1 of the first scope minus the second, in percentage points, for every criterion (method and "
        "hyperparameter variant) run in more than one scope: the mean of the differences seed by seed ± the "
        f"half-width of their paired 95% t interval; n = {usual} pairs unless shown (`unpaired`: the seeds differ, "
        f"Welch's test and interval). **Bold**: significantly different from 0 (paired t, Holm, α={ALPHA:g}: "
        "Holm's correction over every difference of the column, so an interval that excludes 0 may stay plain). "
        "ERK: Erdős-Rényi-Kernel; uniform+: uniform with the first convolution dense and the last layer at "
        "least 20% dense."
    )
    notes += _scope_extra_notes(comparisons, usual)
    header = ["criterion", "difference", *(sparsity_label(s) for s in sparsities)]
    title = "Global versus layer-wise allocation: top-1 difference between scopes"
    return Table("scopes", title, header, rows, labels=2, notes=notes, groups=groups)


def _scope_extra_notes(comparisons: pd.DataFrame, usual_n: int) -> str:
    """The notes on differences with no spread and on the second level of uncertainty, where the table has them."""
    rows = comparisons.to_dict("records")
    notes = ""
    if any(_spreadless(r) for r in rows):
        notes += (
            " no spread: the difference was the same on every seed, so the t statistic is undefined; its p is the "
            f"exact sign-flip test's (relabelling, where unpaired), which with n = {usual_n} seeds cannot go below "
            f"2/2^n = {smallest_p(usual_n):.3g}, the smallest p {usual_n} seeds allow; bold only where that is "
            "significant after Holm."
        )
    if "two_level_p" in comparisons and comparisons["two_level_p"].notna().any():
        notes += (
            f" {LEVELS_DIFFER}: the two levels of uncertainty disagree on significance: the seed-level test "
            f"({SEED_LEVEL}) and the comparison over seeds and test examples ({TWO_LEVEL}: a two-level bootstrap of "
            "the runs' per-example outcomes, Holm over the same column); the second's interval and p are in the "
            "tidy CSV (`two_level_*`)."
        )
    return notes


def allocation_table(records: list[dict[str, Any]], sparsity: float) -> Table | None:
    """Per layer, the density of each learned allocation beside the uniform, ERK and global ones of the budget."""
    profiles = allocations.achieved(records, sparsity)
    learned = [key for key in profiles if key[2] == "learned"]
    references = allocations.references(records, sparsity)
    if not learned or not references:
        return None
    reference = allocations.global_reference(profiles)
    columns = {"uniform": references["uniform"], "ERK": references["erk"]}
    if reference is not None:
        columns[f"global ({criterion_label(*reference[:2])})"] = profiles[reference]
    columns.update(
        {criterion_label(method, var): profiles[(method, var, scope)] for method, var, scope in learned}
    )
    sizes = {name: math.prod(shape) for name, shape in allocations.shapes(records, sparsity).items()}
    rows = [
        [
            Cell(allocations.layer_label(name)),
            Cell(f"{size:,}"),
            *(Cell(_density(column.get(name))) for column in columns.values()),
        ]
        for name, size in sizes.items()
    ]
    global_note = (
        f" global ({criterion_label(*reference[:2])}): the layer densities of its global-scope runs."
        if reference
        else ""
    )
    notes = (
        "Density (fraction of the weights kept) of each prunable layer, mean over seeds, of the methods that learn "
        "their allocation, beside the allocations of the same budget by the fixed scopes: uniform and ERK computed "
        f"from the layer shapes (the arithmetic every run's allocation goes through);{global_note}"
    )
    title = f"Learned allocations at sparsity {sparsity:g}: density per layer"
    return Table("allocation", title, ["layer", "weights", *columns], rows, notes=notes)


def _density(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"
