"""Aggregating records over seeds into the tidy table: one row per (dataset, model, method, variant, scope, sparsity).

Each column of a (dataset, model) (one sparsity) has a best cell, the highest mean top-1 among pruned cells; every
other cell with two or more seeds is compared with it by :func:`prunebench.leaderboard.stats.compare` (paired by
seed, Welch where the seeds differ), and the p-values of the column are adjusted together by Holm's method.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from prunebench.core.errors import UsageError
from prunebench.leaderboard.record_reader import DENSE, enforcement, row_label, variant
from prunebench.leaderboard.stats import ALPHA, compare, holm, interval

KEYS = ["dataset", "model", "method", "variant", "scope", "sparsity"]

COLUMNS = [
    *KEYS,
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
"""Columns of the tidy table, in order (the tidy CSV has exactly these)."""

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


def _cell(key: tuple, runs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The aggregate of the runs of one cell; failed and diverged runs are counted, never averaged."""
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
    for column, field in MEANS.items():
        row[column] = _mean(ok, field)
    return row


def seed_values(runs: list[dict[str, Any]]) -> dict[Any, float]:
    """Top-1 of the finished runs of one cell keyed by seed, the unit that pairs two cells (a cell holds each seed
    once, :func:`cells`)."""
    return {r["seed"]: float(r["top1"]) for r in runs if r["status"] == "ok"}


def _mark_best(table: pd.DataFrame, values: dict[tuple, dict[Any, float]]) -> None:
    """Per (dataset, model, sparsity): the best mean top-1 among pruned cells, and the cells not different from it."""
    best: list[Any] = []
    marks: dict[str, dict[Any, Any]] = {name: {} for name in ("test_vs_best", "p_vs_best", "p_holm_vs_best")}
    pruned = table[(table["method"] != DENSE) & (table["n"] > 0)]
    for _, column in pruned.groupby(["dataset", "model", "sparsity"], sort=False):
        best_index = column.index[column["top1_mean"] == column["top1_mean"].max()]
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
    """The records of each cell, keyed by (dataset, model, method, variant, scope, sparsity), in key order.

    A cell holds each seed once: two records of one seed in one cell are runs whose configurations nothing tells
    apart (records written by hand or cut short), a :class:`UsageError` naming both files.
    """
    found: dict[tuple, list[dict[str, Any]]] = {}
    seeds: dict[tuple, dict[Any, dict[str, Any]]] = {}
    for record in records:
        fields = {**record, "variant": variant(record), "sparsity": float(record["sparsity"] or 0.0)}
        key = tuple(fields[k] for k in KEYS)
        other = seeds.setdefault(key, {}).setdefault(record["seed"], record)
        if other is not record:
            raise UsageError(
                f"{other.get('_path', other['run_id'])} and {record.get('_path', record['run_id'])}: two runs of "
                f"{row_label(record['method'], fields['variant'], record['scope'])} at sparsity "
                f"{fields['sparsity']:g} with seed {record['seed']} whose configurations do not tell them apart"
            )
        found.setdefault(key, []).append(record)
    return dict(sorted(found.items()))


def tidy_table(records: list[dict[str, Any]], kind: str = "t") -> pd.DataFrame:
    """The tidy table of ``records`` with 95% intervals of ``kind`` (``t`` or ``bootstrap``), sorted by key."""
    grouped = cells(records)
    if not grouped:
        return pd.DataFrame(columns=COLUMNS)
    table = pd.DataFrame([_cell(key, runs, kind) for key, runs in grouped.items()])
    _mark_best(table, {key: seed_values(runs) for key, runs in grouped.items()})
    return table.reindex(columns=COLUMNS)
