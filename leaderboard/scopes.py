"""Which allocation wins: for each criterion run in several scopes or comparison groups, the paired difference
between them.

A criterion is (method, variant). For each pair of its scopes (``global - uniform``, ``owl - uniform``,
``global - erk``, ...) within one comparison group, each pair of its comparison groups within one scope
(``per_output - per_layer``, ``2:4 - per_layer``: the within-layer choice), and each sparsity both ran at, the
difference of the section's primary metric (:mod:`prunebench.leaderboard.metrics`: top-1, or perplexity, where a
negative difference favours the first) is compared seed by seed (:func:`prunebench.leaderboard.stats.compare`: a
paired t-test and interval, Welch where the seeds differ). The p-values of one (dataset, model, column) are adjusted
together by Holm's method; a difference is significant when its adjusted p-value is below alpha.

Where every finished run of both cells has a per-example outcome file (:mod:`prunebench.run.example_outcomes`), the
difference is also compared over seeds and test examples (:func:`prunebench.leaderboard.uncertainty.two_level_comparison`)
in the columns of :data:`TWO_LEVEL_COLUMNS`, Holm-adjusted over the same family (top-1 only: perplexity has no
per-example Bernoulli outcomes); without outcome files and comparison groups the table has exactly the columns of
:data:`COLUMNS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prunebench.leaderboard.metrics import TOP1, Metric
from prunebench.leaderboard.record_reader import DENSE, PER_LAYER, is_pattern
from prunebench.leaderboard.stats import ALPHA, compare, holm
from prunebench.leaderboard.tidy_table import cells, pattern_of, section_metrics, seed_values
from prunebench.leaderboard.uncertainty import two_level_comparison
from prunebench.pruning.saved_masks import RUN_ID
from prunebench.run.example_outcomes import read_outcomes

SCOPE_ORDER = ("global", "erk", "owl", "uniform_plus", "uniform", "learned")
"""Scopes in the order their differences are taken: each minus every one after it (unknown scopes last)."""

COLUMNS = [
    "dataset",
    "model",
    "method",
    "variant",
    "scope_a",
    "scope_b",
    "sparsity",
    "test",
    "n",
    "difference",
    "ci_low",
    "ci_high",
    "p",
    "p_holm",
    "significant",
]
"""Columns of the tidy comparison table: ``difference`` is top-1 of ``scope_a`` minus ``scope_b``, in points
(perplexity in a section that uses it)."""
GROUP_COLUMNS = ["group_a", "group_b"]
"""Columns added after ``scope_b`` where some run is not ``per_layer``: the comparison groups of the two sides (equal
for a difference of scopes; the scopes are equal for a difference of groups)."""

TWO_LEVEL_COLUMNS = [
    "examples",
    "two_level_low",
    "two_level_high",
    "two_level_p",
    "two_level_p_holm",
    "two_level_significant",
]
"""Columns added where some comparison has per-example outcomes: the test set's size, the percentile interval of the
difference over seeds and test examples, its two-level p, Holm-adjusted, and whether that is below alpha (NaN and
``False`` where a comparison has no outcomes)."""


def ordered(scopes: set[str]) -> list[str]:
    """``scopes`` in :data:`SCOPE_ORDER`, unknown ones after them in alphabetical order."""
    known = [s for s in SCOPE_ORDER if s in scopes]
    return known + sorted(scopes - set(SCOPE_ORDER))


def pairs(scopes: set[str]) -> list[tuple[str, str]]:
    """Every pair of ``scopes``, the earlier in :func:`ordered` first: ``(global, erk), (global, uniform), ...``."""
    order = ordered(scopes)
    return [(a, b) for i, a in enumerate(order) for b in order[i + 1 :]]


def ordered_groups(groups: set[str]) -> list[str]:
    """Comparison groups with N:M patterns first (densest last), then ``per_output``, others, ``per_layer`` last: the
    order their differences are taken in (``2:4 - per_layer``, ``per_output - per_layer``)."""
    patterns = sorted((g for g in groups if is_pattern(g)), key=lambda g: tuple(map(int, g.split(":"))))
    others = sorted(g for g in groups if not is_pattern(g) and g != PER_LAYER)
    return patterns + others + ([PER_LAYER] if PER_LAYER in groups else [])


def group_pairs(groups: set[str]) -> list[tuple[str, str]]:
    """Every pair of ``groups``, the earlier in :func:`ordered_groups` first."""
    order = ordered_groups(groups)
    return [(a, b) for i, a in enumerate(order) for b in order[i + 1 :]]


@dataclass(frozen=True)
class ScopePair:
    """Two scopes of one criterion at one sparsity, and the records of both cells."""

    dataset: str
    model: str
    method: str
    variant: str
    scope_a: str
    scope_b: str
    sparsity: float
    runs_a: list[dict[str, Any]]
    runs_b: list[dict[str, Any]]
    group_a: str = PER_LAYER
    group_b: str = PER_LAYER
    metric: Metric = TOP1

    @property
    def pattern(self) -> str:
        """The N:M column the difference belongs to (both sides of one pattern), ``""`` for a sparsity column."""
        return pattern_of(self.group_a) if self.group_a == self.group_b else ""


Found = dict[str, dict[str, dict[float, list[dict[str, Any]]]]]
"""One criterion's finished cells: group, then scope, then sparsity."""


def _criterion_pairs(criterion: tuple, found: Found, metric: Metric) -> list[ScopePair]:
    """The scope pairs of one criterion within each of its groups (``per_layer`` first), then its group pairs within
    each of its scopes."""
    result = []
    for group_name in sorted(found, key=lambda g: (g != PER_LAYER, ordered_groups(set(found)).index(g))):
        by_scope = found[group_name]
        for a, b in pairs(set(by_scope)):
            for sparsity in sorted(set(by_scope[a]) & set(by_scope[b])):
                runs = by_scope[a][sparsity], by_scope[b][sparsity]
                result.append(ScopePair(*criterion, a, b, sparsity, *runs, group_name, group_name, metric))
    for scope in ordered({s for by_scope in found.values() for s in by_scope}):
        by_group = {g: found[g][scope] for g in found if scope in found[g]}
        for a, b in group_pairs(set(by_group)):
            for sparsity in sorted(set(by_group[a]) & set(by_group[b])):
                runs = by_group[a][sparsity], by_group[b][sparsity]
                result.append(ScopePair(*criterion, scope, scope, sparsity, *runs, a, b, metric))
    return result


def scope_pairs(records: list[dict[str, Any]]) -> list[ScopePair]:
    """Every (criterion, pair of its scopes or of its groups, sparsity both ran at) with a finished run in both
    cells, in the order of the table."""
    found: dict[tuple, Found] = {}
    for (dataset, model, method, variant, scope, group_name, sparsity), runs in cells(records).items():
        if method != DENSE and seed_values(runs):
            criterion = found.setdefault((dataset, model, method, variant), {})
            criterion.setdefault(group_name, {}).setdefault(scope, {})[sparsity] = runs
    metrics = section_metrics(records)
    return [
        pair
        for criterion, by_group in found.items()
        for pair in _criterion_pairs(criterion, by_group, metrics[criterion[:2]])
    ]


def _outcomes(runs: list[dict[str, Any]], cache: dict[str, Any]) -> dict[Any, np.ndarray] | None:
    """The per-example top-1 correctness of each finished run of a cell keyed by seed, or ``None`` unless every one
    has an outcome file (beside its record, ``<results>/runs/<run_id>.json``; a record whose run id is not a plain
    name, one written by hand, has none)."""
    found = {}
    for run in runs:
        if run["status"] != "ok":
            continue
        if run["run_id"] not in cache:
            path, plain = run.get("_path"), RUN_ID.fullmatch(str(run["run_id"]))
            cache[run["run_id"]] = (
                read_outcomes(Path(path).parent.parent, run["run_id"]) if path and plain else None
            )
        outcomes = cache[run["run_id"]]
        if outcomes is None:
            return None
        found[run["seed"]] = outcomes["top1"]
    return found


def _row(pair: ScopePair, cache: dict[str, Any]) -> dict[str, Any]:
    """One row of the table: the seed-level comparison, and the two-level one where both cells have outcomes."""
    result = compare(seed_values(pair.runs_a, pair.metric), seed_values(pair.runs_b, pair.metric))
    row = {
        "dataset": pair.dataset,
        "model": pair.model,
        "method": pair.method,
        "variant": pair.variant,
        "scope_a": pair.scope_a,
        "scope_b": pair.scope_b,
        "group_a": pair.group_a,
        "group_b": pair.group_b,
        "_pattern": pair.pattern,
        "sparsity": pair.sparsity,
        "test": result.test or None,
        "n": result.n,
        "difference": result.difference,
        "ci_low": result.low,
        "ci_high": result.high,
        "p": result.pvalue,
    }
    if pair.metric is not TOP1:
        return row
    a, b = _outcomes(pair.runs_a, cache), _outcomes(pair.runs_b, cache)
    two_level = two_level_comparison(a, b) if a is not None and b is not None and result.test else None
    if two_level is not None:
        row.update(
            examples=two_level.examples,
            two_level_low=two_level.low,
            two_level_high=two_level.high,
            two_level_p=two_level.pvalue,
        )
    return row


def _adjust_two_level(table: pd.DataFrame, column: pd.DataFrame) -> None:
    """Holm over the tested comparisons of one column, those without outcomes counted in the family with p = 1."""
    tested = column[column["test"].notna()]
    family = tested["two_level_p"].astype(float).fillna(1.0).tolist()
    adjusted = pd.Series(holm(family), index=tested.index)
    table.loc[tested.index, "two_level_p_holm"] = adjusted.where(tested["two_level_p"].notna(), math.nan)


def scope_comparisons(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The tidy table of differences between the scopes and the groups of every criterion, Holm-adjusted per column
    (a sparsity, or an N:M pattern); the ``group_*`` columns only where some run is not ``per_layer``."""
    cache: dict[str, Any] = {}
    rows = [_row(pair, cache) for pair in scope_pairs(records)]
    two_level = any("two_level_p" in row for row in rows)
    grouped = any(row[g] != PER_LAYER for row in rows for g in GROUP_COLUMNS)
    names = list(COLUMNS)
    if grouped:
        names[names.index("scope_b") + 1 : names.index("scope_b") + 1] = GROUP_COLUMNS
    table = pd.DataFrame(rows, columns=[*names, "_pattern", *(TWO_LEVEL_COLUMNS if two_level else [])])
    for _, column in table.groupby(["dataset", "model", "sparsity", "_pattern"], sort=False):
        table.loc[column.index, "p_holm"] = holm(column["p"].tolist())
        if two_level:
            _adjust_two_level(table, column)
    table["significant"] = table["p_holm"].astype(float) < ALPHA
    if two_level:
        table["two_level_significant"] = table["two_level_p_holm"].astype(float) < ALPHA
    return table.drop(columns="_pattern")
