"""Aggregating records over seeds into the tidy table: one row per (dataset, model, method, variant, scope, group,
sparsity).

Each column of a (dataset, model) (one sparsity, or one N:M pattern) has a best cell, the best mean of the section's
primary metric among pruned cells (:mod:`prunebench.leaderboard.metrics`: the highest top-1, or the lowest
perplexity); every other cell with two or more seeds is compared with it by
:func:`prunebench.leaderboard.stats.compare` (paired by seed, Welch where the seeds differ), and the p-values of the
column are adjusted together by Holm's method. The comparison group is part of a cell's identity (a ``per_output``
run never pools with a ``per_layer`` one); the tidy table has its ``group`` column, and the perplexity columns, only
where some record has them, so the table of records without either is what it was before they existed.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from prunebench.core.errors import UsageError
from prunebench.leaderboard.metrics import METRIC_COLUMN, PERPLEXITY, TOP1, Metric, section_metric
from prunebench.leaderboard.record_reader import (
    DENSE,
    PER_LAYER,
    enforcement,
    group,
    is_pattern,
    row_group,
    row_label,
    variant,
)
from prunebench.leaderboard.stats import ALPHA, compare, holm, interval

KEYS = ["dataset", "model", "method", "variant", "scope", "group", "sparsity"]
"""A cell's identity: runs that share all of these differ in their seed only."""

COLUMNS = [
    "dataset",
    "model",
    "method",
    "variant",
    "scope",
    "sparsity",
    "schedule",
    "n",
    "n_failed",
    "n_diverged",
    "top1_mean",
    "top1_std",
    "top1_ci_low",
    "top1_ci_high",
    "top5_mean",
    "top5_std",
    "top5_ci_low",
    "top5_ci_high",
    "loss_mean",
    "achieved_sparsity",
    "params_total",
    "params_nonzero",
    "compression_ratio",
    "flops_dense",
    "flops_sparse",
    "speedup",
    "min_layer_density",
    "collapsed",
    "n_collapsed",
    "enforcement",
    "method_sparsity",
    "wall_time_s",
    "best",
    "not_different_from_best",
    "test_vs_best",
    "p_vs_best",
    "p_holm_vs_best",
    "interval",
]
"""Columns of the tidy table of records without comparison groups or perplexity, in order (the tidy CSV of such
records has exactly these); :func:`columns` adds the others where records have them."""
PERPLEXITY_COLUMNS = ["perplexity_mean", "perplexity_std", "perplexity_ci_low", "perplexity_ci_high"]

MEANS = {
    "loss_mean": "loss",
    "achieved_sparsity": "achieved_sparsity",
    "params_total": "params_total",
    "params_nonzero": "params_nonzero",
    "compression_ratio": "compression_ratio",
    "flops_dense": "flops_dense",
    "flops_sparse": "flops_sparse",
    "speedup": "speedup",
    "min_layer_density": "min_layer_density",
    "method_sparsity": "method_sparsity",
    "wall_time_s": "wall_time_s",
}
"""Tidy columns that are the mean over finished seeds of a record field."""


def _mean(ok: list[dict[str, Any]], field: str) -> float:
    values = [r[field] for r in ok if isinstance(r.get(field), int | float)]
    return sum(values) / len(values) if values else math.nan


def _cell(key: tuple, runs: list[dict[str, Any]], kind: str, metric: Metric) -> dict[str, Any]:
    """The aggregate of the runs of one cell; failed and diverged runs are counted, never averaged. Perplexity's
    interval is over the seeds' values (it has no per-example Bernoulli outcomes), clipped to its range."""
    ok = [r for r in runs if r["status"] == "ok"]
    row: dict[str, Any] = dict(zip(KEYS, key, strict=True))
    row.update(
        schedule=runs[0].get("schedule", ""),
        n=len(ok),
        n_failed=len(runs) - len(ok),
        n_diverged=sum(r["status"] == "diverged" for r in runs),
        interval=kind,
        collapsed=any(bool(r.get("collapsed")) for r in ok),
        n_collapsed=sum(bool(r.get("collapsed")) for r in ok),
        enforcement="; ".join(sorted({step for step in map(enforcement, ok) if step})) or None,
    )
    if ok:
        summary = interval([float(r["top1"]) for r in ok], kind)
        row.update(
            top1_mean=summary.mean, top1_std=summary.std, top1_ci_low=summary.low, top1_ci_high=summary.high
        )
        top5 = interval([float(r["top5"]) for r in ok], kind)
        row.update(top5_mean=top5.mean, top5_std=top5.std, top5_ci_low=top5.low, top5_ci_high=top5.high)
        if metric is PERPLEXITY:
            values = [float(r["perplexity"]) for r in ok]
            ppl = interval(values, kind, clip=PERPLEXITY.clip)
            row.update(
                perplexity_mean=ppl.mean,
                perplexity_std=ppl.std,
                perplexity_ci_low=ppl.low,
                perplexity_ci_high=ppl.high,
            )
    row[METRIC_COLUMN] = metric.field
    for column, field in MEANS.items():
        row[column] = _mean(ok, field)
    return row


def seed_values(runs: list[dict[str, Any]], metric: Metric = TOP1) -> dict[Any, float]:
    """The metric (top-1 unless told) of the finished runs of one cell keyed by seed, the unit that pairs two cells
    (a cell holds each seed once, :func:`cells`)."""
    return {r["seed"]: float(r[metric.field]) for r in runs if r["status"] == "ok"}


def pattern_of(group_name: str) -> str:
    """The column family of a cell's group: its N:M pattern, or ``""`` for the sparsity columns."""
    return group_name if is_pattern(group_name) else ""


def _mark_best(
    table: pd.DataFrame, values: dict[tuple, dict[Any, float]], metrics: dict[tuple, Metric]
) -> None:
    """Per (dataset, model, column): the best mean of the section's metric among pruned cells, and the cells not
    different from it (a column is a sparsity, or an N:M pattern)."""
    best: list[Any] = []
    marks: dict[str, dict[Any, Any]] = {name: {} for name in ("test_vs_best", "p_vs_best", "p_holm_vs_best")}
    pruned = table[(table["method"] != DENSE) & (table["n"] > 0)]
    patterns = pruned["group"].map(pattern_of)
    for (dataset, model, *_), column in pruned.groupby(
        ["dataset", "model", "sparsity", patterns], sort=False
    ):
        metric = metrics[(dataset, model)]
        means = column[f"{metric.field}_mean"]
        best_index = column.index[means == metric.best(means)]
        best += list(best_index)
        reference = values[tuple(table.loc[best_index[0], KEYS])]
        others = column.index.difference(best_index)
        comparisons = [compare(values[tuple(table.loc[i, KEYS])], reference) for i in others]
        adjusted = holm([c.pvalue for c in comparisons])
        for index, comparison, p in zip(others, comparisons, adjusted, strict=True):
            if comparison.test:
                marks["test_vs_best"][index] = comparison.test
            marks["p_vs_best"][index] = comparison.pvalue
            marks["p_holm_vs_best"][index] = p
    for name, found in marks.items():
        table[name] = pd.Series(found, index=table.index)
    table["best"] = table.index.isin(best)
    table["not_different_from_best"] = table["p_holm_vs_best"] >= ALPHA  # NaN (untested) compares False


def cells(records: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """The records of each cell, keyed by (dataset, model, method, variant, scope, group, sparsity), in key order.

    A cell holds each seed once: two records of one seed in one cell are runs whose configurations nothing tells
    apart (records written by hand or cut short), a :class:`UsageError` naming both files.
    """
    found: dict[tuple, list[dict[str, Any]]] = {}
    seeds: dict[tuple, dict[Any, dict[str, Any]]] = {}
    for record in records:
        fields = {
            **record,
            "variant": variant(record),
            "group": group(record),
            "sparsity": float(record["sparsity"] or 0.0),
        }
        key = tuple(fields[k] for k in KEYS)
        other = seeds.setdefault(key, {}).setdefault(record["seed"], record)
        if other is not record:
            label = row_label(
                record["method"], fields["variant"], record["scope"], row_group(fields["group"])
            )
            pattern = f" {fields['group']}" if is_pattern(fields["group"]) else ""
            raise UsageError(
                f"{other.get('_path', other['run_id'])} and {record.get('_path', record['run_id'])}: two runs of "
                f"{label} at sparsity {fields['sparsity']:g}{pattern} with seed {record['seed']} whose "
                "configurations do not tell them apart"
            )
        found.setdefault(key, []).append(record)
    return dict(sorted(found.items()))


def section_metrics(records: list[dict[str, Any]]) -> dict[tuple[str, str], Metric]:
    """The primary metric of each (dataset, model) of ``records`` (:func:`prunebench.leaderboard.metrics.section_metric`)."""
    by_section: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        by_section.setdefault((record["dataset"], record["model"]), []).append(record)
    return {section: section_metric(runs) for section, runs in by_section.items()}


def with_groups(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (tidy cells) with its ``group`` column, ``per_layer`` where the tidy table left it out."""
    return frame if "group" in frame else frame.assign(group=PER_LAYER)


def columns(table: pd.DataFrame) -> list[str]:
    """The tidy table's columns: :data:`COLUMNS`, with ``group`` after ``scope`` where some cell is not
    ``per_layer``, and the perplexity columns and the primary metric's where some section uses perplexity."""
    found = list(COLUMNS)
    if "group" in table and table["group"].ne(PER_LAYER).any():
        found.insert(found.index("scope") + 1, "group")
    if METRIC_COLUMN in table and table[METRIC_COLUMN].eq(PERPLEXITY.field).any():
        at = found.index("top5_ci_high") + 1
        found[at:at] = PERPLEXITY_COLUMNS
        found.append(METRIC_COLUMN)
    return found


def tidy_table(records: list[dict[str, Any]], kind: str = "t") -> pd.DataFrame:
    """The tidy table of ``records`` with 95% intervals of ``kind`` (``t`` or ``bootstrap``), sorted by key, with
    the :func:`columns` they need (a missing ``group`` is ``per_layer``, a missing ``metric`` top-1)."""
    grouped = cells(records)
    if not grouped:
        return pd.DataFrame(columns=COLUMNS)
    metrics = section_metrics(records)
    table = pd.DataFrame([_cell(key, runs, kind, metrics[key[:2]]) for key, runs in grouped.items()])
    values = {key: seed_values(runs, metrics[key[:2]]) for key, runs in grouped.items()}
    _mark_best(table, values, metrics)
    return table.reindex(columns=columns(table))
