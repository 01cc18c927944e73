"""The leaderboard's tables of one (dataset, model) as table models: scope and group differences, learned
allocations, the primary metric (top-1, or perplexity for a language model; :mod:`prunebench.leaderboard.metrics`),
top-5, compression and speedup. Markdown, LaTeX and CSV all render these.

A row is (method, variant, scope) and, for a run of another comparison group than ``per_layer``, its group
(``wanda · per_output (uniform)``); columns are the target sparsities, then the N:M patterns (``2:4``), a column
family of their own in the plain row of their method.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

import prunebench.leaderboard.layer_densities as allocations
from prunebench.leaderboard.metrics import PERPLEXITY, TOP1, Metric, cells_metric
from prunebench.leaderboard.record_reader import (
    DENSE,
    PER_LAYER,
    criterion_label,
    enforcement,
    enforcement_change,
    group,
    row_group,
    row_label,
    variant,
)
from prunebench.leaderboard.render import Cell, Table
from prunebench.leaderboard.stats import ALPHA, FEW_SEEDS, UNPAIRED, smallest_p, without_spread
from prunebench.leaderboard.tidy_table import pattern_of, with_groups
from prunebench.leaderboard.uncertainty import SEED_LEVEL, TWO_LEVEL

NOT_DIFFERENT = "†"
COLLAPSED = "‡"
ENFORCED = "§"
FEW = "¶"
LEVELS_DIFFER = "◊"
"""A scope difference whose two levels of uncertainty (seeds; seeds and test examples) disagree on significance."""
INTERVAL_NAMES = {"t": "Student-t", "bootstrap": "percentile-bootstrap (9,999 resamples, seed 0)"}
SCOPE_NAMES = {
    "global": "global",
    "erk": "ERK",
    "owl": "OWL",
    "uniform_plus": "uniform+",
    "uniform": "uniform",
}
"""How a scope is written in a difference (``global − ERK``); others as they are."""


def sparsity_label(sparsity: float) -> str:
    """Column header of a target sparsity with its compression of the prunable weights, e.g. ``0.9 (10×)``."""
    return f"{sparsity:g} ({1 / (1 - sparsity):.3g}×)"


Column = tuple[int, float, str]
"""A column of the tables: (0, sparsity, "") for a sparsity, (1, sparsity, pattern) for an N:M pattern, so that the
patterns come after the sparsities."""


def column_of(sparsity: float, pattern: str) -> Column:
    return (1, sparsity, pattern) if pattern else (0, sparsity, "")


def column_label(column: Column) -> str:
    """``0.9 (10×)`` for a sparsity, the pattern itself (``2:4``) for an N:M column."""
    return column[2] or sparsity_label(column[1])


def _columns(frame: pd.DataFrame, groups: str = "group") -> list[Column]:
    """The columns of a frame of cells (``group``) or of comparisons (``group_a`` and ``group_b``), in order."""
    if groups == "group":
        patterns = with_groups(frame)["group"].map(pattern_of)
    elif "group_a" in frame:
        same = frame["group_a"] == frame["group_b"]
        patterns = frame["group_a"].map(pattern_of).where(same, "")
    else:
        patterns = pd.Series("", index=frame.index)
    return sorted({column_of(s, p) for s, p in zip(frame["sparsity"], patterns, strict=True)})


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


def accuracy_cell(
    row: Mapping[str, Any], usual_n: int, metric: str = "top1", primary: bool | None = None
) -> Cell:
    """Mean and interval of ``metric``, the seed count where it is not the usual one, failures, and the markers;
    the best and not-different marks only for the section's ``primary`` metric (by default top-1)."""
    n, failed = int(row["n"]), int(row["n_failed"])
    if n == 0:
        return Cell(f"failed ({failed})")
    mean = row[f"{metric}_mean"]
    text = f"{mean:.2f}" if n == 1 else interval_text(mean, row[f"{metric}_ci_low"], row[f"{metric}_ci_high"])
    notes = [f"n={n}"] if n != usual_n or n == 1 else []
    if failed:
        notes.append(f"{failed} failed")
    marks = []
    primary = metric == "top1" if primary is None else primary
    if primary:
        if row.get("test_vs_best") == UNPAIRED:
            notes.append("unpaired")
        if bool(row.get("not_different_from_best", False)):
            marks.append(NOT_DIFFERENT)
    if n < FEW_SEEDS:
        marks.append(FEW)
    return Cell(
        _with_notes(text, notes),
        bold=primary and bool(row.get("best", False)),
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
    """Per (method, variant, row group, scope), its label and cells by column; and where each method's rows begin."""
    pruned = with_groups(pruned)
    pruned = pruned.assign(
        _row_group=pruned["group"].map(row_group), _pattern=pruned["group"].map(pattern_of)
    )
    columns = _columns(pruned)
    rows, groups, previous = [], [], None
    keys = ["method", "variant", "_row_group", "scope"]
    for (method, var, group_name, scope), runs in grouped_records(pruned, keys, sort=True):
        if method != previous:
            groups.append(len(rows))
            previous = method
        by_column = {column_of(r["sparsity"], r["_pattern"]): cell(r) for r in runs}
        label = Cell(row_label(method, var, scope, group_name))
        rows.append([label, *(by_column.get(c, Cell()) for c in columns)])
    return rows, groups


def _header(pruned: pd.DataFrame, *labels: str) -> list[str]:
    return [*labels, *map(column_label, _columns(pruned))]


def dense_text(group: pd.DataFrame) -> str | None:
    """The dense baseline of one (dataset, model), always with its seed count; ``None`` when it was not run.

    Where the runs differ in their setup (:mod:`prunebench.leaderboard.setups`), each setup's baseline, labelled:
    ``dense[epochs=3]: 97.10 ± 0.40 (n=2); dense[epochs=4]: ...``.
    """
    dense = group[group["method"] == DENSE]
    metric = cells_metric(group)
    texts = []
    for row in dense.to_dict("records"):
        cell = accuracy_cell({**row, "best": False}, -1, metric.field, primary=True)
        text = f"**{cell.text} {cell.marks}**" if cell.marks else f"**{cell.text}**"
        texts.append(f"{criterion_label(DENSE, row['variant'])}: {text}" if len(dense) > 1 else text)
    return "; ".join(texts) or None


def dense_line(group: pd.DataFrame) -> str:
    baseline = dense_text(group)
    unit = cells_metric(group).unit
    return "Dense baseline: not run." if baseline is None else f"Dense baseline ({unit}): {baseline}"


def accuracy_table(group: pd.DataFrame, kind: str) -> Table:
    """The primary metric (top-1, or perplexity) of every row at every column, the best bold, † where not different
    from it."""
    metric = cells_metric(group)
    usual = typical_n(group)
    pruned = group[group["method"] != DENSE]
    rows, groups = _rows(pruned, lambda r: accuracy_cell(r, usual, metric.field, primary=True))
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
    if metric is PERPLEXITY:
        notes = _perplexity_notes(usual, kind)
    notes += _group_notes(pruned)
    return Table(
        "accuracy",
        metric.title,
        _header(pruned, "method (scope)"),
        rows,
        notes=notes,
        groups=groups,
        caption=dense_line(group).replace("**", ""),
    )


def _perplexity_notes(usual: int, kind: str) -> str:
    """The primary table's notes in a section whose metric is perplexity."""
    return (
        "Columns: target sparsity s of the prunable weights (their compression 1/(1-s)). Perplexity on the test "
        "text, exp of the mean next-token negative log-likelihood, **lower is better**: mean ± half-width of the 95% "
        f"{INTERVAL_NAMES[kind]} interval over the seeds' perplexities (perplexity has no per-example Bernoulli "
        "outcomes: the interval and the tests use one value per seed), [low, high] where it is clipped at 1 or "
        f"skewed; n = {usual} seeds per cell unless shown. n=1: a single seed, shown without an interval. {FEW}: "
        f"fewer than {FEW_SEEDS} seeds. **Bold**: the lowest mean of the column. {NOT_DIFFERENT}: not "
        f"significantly different from the lowest (paired t, Holm, α={ALPHA:g}, within the column; `unpaired`: "
        "Welch's test). Failed and diverged runs are counted (`failed`), never averaged."
    )


def _group_notes(pruned: pd.DataFrame) -> str:
    """What the comparison groups of the rows and the N:M columns mean, where the table has them."""
    groups = set(with_groups(pruned)["group"])
    notes = ""
    if any(row_group(g) for g in groups):
        notes += (
            " `· per_output`: each output row keeps its share of the layer's weights (the comparison group of "
            "Wanda's default); rows without it compare the whole layer (`per_layer`). The scope decides each "
            "layer's count, the group where it goes inside the layer."
        )
    if any(pattern_of(g) for g in groups):
        notes += (
            " N:M columns (`2:4`): at most N of every M consecutive input weights of each output row kept, "
            "exactly N (sparsity 1 − N/M, in the uniform scope), best and † within the N:M column."
        )
    return notes


def next_token_table(group: pd.DataFrame, kind: str) -> Table | None:
    """A language model's next-token top-1 accuracy (%) of every row at every column, beside its perplexity."""
    if cells_metric(group) is not PERPLEXITY:
        return None
    usual = typical_n(group)
    pruned = group[group["method"] != DENSE]
    rows, groups = _rows(pruned, lambda r: accuracy_cell(r, usual, "top1", primary=False))
    notes = (
        f"Next-token top-1 accuracy (%) over the test text's tokens: mean ± half-width of the 95% "
        f"{INTERVAL_NAMES[kind]} interval over seeds (no test; the ranking is the perplexity table's)."
    )
    title = "Next-token top-1 accuracy (%)"
    return Table("top1", title, _header(pruned, "method (scope)"), rows, notes=notes, groups=groups)


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
    runs: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        if r["status"] == "ok" and r["method"] != DENSE:
            runs.setdefault((r["method"], variant(r), row_group(group(r)), r["scope"]), []).append(r)
    lines = []
    for (method, var, group_name, scope), found in sorted(runs.items()):
        enforced = [r for r in found if enforcement(r)]
        if not enforced:
            continue
        line = f"{row_label(method, var, scope, group_name)}: {len(enforced)} of {len(found)} runs"
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


def comparison_label(row: Mapping[str, Any]) -> str:
    """``global − ERK`` for two scopes of ``per_layer``; ``OWL − uniform (per_output)`` for two scopes of another
    group; ``per_output − per_layer (uniform)`` for two groups of one scope."""
    group_a, group_b = row.get("group_a", PER_LAYER), row.get("group_b", PER_LAYER)
    if group_a != group_b:
        return f"{group_a} − {group_b} ({scope_label(row['scope_a'])})"
    label = f"{scope_label(row['scope_a'])} − {scope_label(row['scope_b'])}"
    return label if group_a == PER_LAYER else f"{label} ({group_a})"


def scope_table(comparisons: pd.DataFrame, metric: Metric = TOP1) -> Table | None:
    """The headline: per criterion, the paired difference between each two of its scopes (and of its comparison
    groups) at every column, in the section's ``metric``."""
    if comparisons.empty:
        return None
    columns = _columns(comparisons, "group_a")
    counts = comparisons["n"]
    usual = int(counts.mode().min()) if len(counts) else 0
    rows, groups, previous = [], [], None
    records = comparisons.to_dict("records")
    by_row: dict[tuple, dict[Column, Cell]] = {}
    for r in records:
        group_a, group_b = r.get("group_a", PER_LAYER), r.get("group_b", PER_LAYER)
        pattern = pattern_of(group_a) if group_a == group_b else ""
        key = (r["method"], r["variant"], comparison_label(r))
        by_row.setdefault(key, {})[column_of(r["sparsity"], pattern)] = difference_cell(r, usual)
    for (method, var, label), cells in by_row.items():
        if (method, var) != previous:
            groups.append(len(rows))
            previous = (method, var)
        rows.append(
            [Cell(criterion_label(method, var)), Cell(label), *(cells.get(c, Cell()) for c in columns)]
        )
    header = ["criterion", "difference", *map(column_label, columns)]
    new = metric is not TOP1 or "group_a" in comparisons or comparisons["scope_a"].eq("owl").any()
    title = "Global versus layer-wise allocation: top-1 difference between scopes"
    if new:
        title = (
            f"Which allocation wins: {'top-1' if metric is TOP1 else 'perplexity'} difference between scopes"
        )
        title += " and comparison groups" if "group_a" in comparisons else ""
    notes = _scope_notes(usual, metric, new) + _scope_extra_notes(comparisons, usual)
    items = verdicts(comparisons, metric) if new else []
    return Table("scopes", title, header, rows, labels=2, notes=notes, items=items, groups=groups)


def _scope_notes(usual: int, metric: Metric, new: bool) -> str:
    """The scope table's notes: what a difference is, in ``metric``; with ``new``, what OWL and a difference of
    groups are."""
    first = "Top-1 of the first scope minus the second, in percentage points"
    if metric is not TOP1:
        first = (
            "Perplexity of the first scope (or group) minus the second's, lower is better, so a negative "
            "difference favours the first (one value per seed: perplexity has no per-example outcomes)"
        )
    return (
        f"{first}, for every criterion (method and "
        "hyperparameter variant) run in more than one scope: the mean of the differences seed by seed ± the "
        f"half-width of their paired 95% t interval; n = {usual} pairs unless shown (`unpaired`: the seeds differ, "
        f"Welch's test and interval). **Bold**: significantly different from 0 (paired t, Holm, α={ALPHA:g}: "
        "Holm's correction over every difference of the column, so an interval that excludes 0 may stay plain). "
        "ERK: Erdős-Rényi-Kernel; uniform+: uniform with the first convolution dense and the last layer at "
        "least 20% dense."
    ) + (
        " OWL: outlier-weighted layer-wise densities (Yin et al. 2024). A difference of two groups in one scope "
        "(`per_output − per_layer`, `2:4 − per_layer` at the pattern's sparsity) is the within-layer choice."
        if new
        else ""
    )


def verdicts(comparisons: pd.DataFrame, metric: Metric) -> list[str]:
    """Per comparison (``OWL − uniform``, ``per_output − per_layer (uniform)``), over every criterion and column:
    how often each side was significantly better after Holm, and how often neither."""
    tally: dict[str, tuple[str, str, list[int]]] = {}
    for r in comparisons.to_dict("records"):
        first, second = _sides(r)
        _, _, counts = tally.setdefault(comparison_label(r), (first, second, [0, 0, 0]))
        winner = 2 if not r["significant"] else (0 if metric.better(r["difference"], 0.0) else 1)
        counts[winner] += 1
    return [
        f"{label}: {first} significantly better in {wins_a} of {sum(counts)} (criterion, column) pairs, "
        f"{second} in {wins_b}, neither (no significant difference, or not tested) in {neither}"
        for label, (first, second, counts) in tally.items()
        for wins_a, wins_b, neither in [counts]
    ]


def _sides(row: Mapping[str, Any]) -> tuple[str, str]:
    """The two sides of a comparison as its label names them: two groups, or two scopes."""
    if row.get("group_a", PER_LAYER) != row.get("group_b", PER_LAYER):
        return str(row["group_a"]), str(row["group_b"])
    return scope_label(row["scope_a"]), scope_label(row["scope_b"])


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
