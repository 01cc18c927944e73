"""Aggregating records over seeds into the tidy table: one row per (dataset, model, method, scope, sparsity).

The ``method`` of a row is the method with its variant (``probmask[samples=4]``, see
:func:`~prunebench.leaderboard.records.method_label`), so runs with different hyperparameters are never pooled.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from prunebench.leaderboard.records import DENSE, method_label
from prunebench.leaderboard.stats import interval, tied, welch_pvalue

KEYS = ["dataset", "model", "method", "scope", "sparsity"]

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
    "tied_with_best",
    "welch_p_vs_best",
    "interval",
]
"""Columns of the tidy table, in order (the tidy CSV has exactly these)."""

MEANS = {
    "top5_mean": "top5",
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
        enforcement="; ".join(sorted({str(r["enforcement"]) for r in ok if r.get("enforcement")})) or None,
    )
    if ok:
        summary = interval([float(r["top1"]) for r in ok], kind)
        row.update(
            top1_mean=summary.mean, top1_std=summary.std, top1_ci_low=summary.low, top1_ci_high=summary.high
        )
        top5 = [float(r["top5"]) for r in ok]
        row["top5_std"] = pd.Series(top5).std(ddof=1) if len(top5) > 1 else math.nan
    for column, field in MEANS.items():
        row[column] = _mean(ok, field)
    return row


def _mark_best(table: pd.DataFrame, values: dict[tuple, list[float]]) -> None:
    """Per (dataset, model, sparsity): the best mean top-1 among pruned cells, and the cells tied with it."""
    table["best"] = False
    table["tied_with_best"] = False
    table["welch_p_vs_best"] = math.nan
    pruned = table[(table["method"] != DENSE) & (table["n"] > 0)]
    for _, column in pruned.groupby(["dataset", "model", "sparsity"], sort=False):
        top = column["top1_mean"].max()
        best_index = column.index[column["top1_mean"] == top]
        table.loc[best_index, "best"] = True
        reference = values[tuple(table.loc[best_index[0], KEYS])]
        for index in column.index.difference(best_index):
            own = values[tuple(table.loc[index, KEYS])]
            table.loc[index, "welch_p_vs_best"] = welch_pvalue(own, reference)
            table.loc[index, "tied_with_best"] = tied(own, reference)


def tidy_table(records: list[dict[str, Any]], kind: str = "t") -> pd.DataFrame:
    """The tidy table of ``records`` with 95% intervals of ``kind`` (``t`` or ``bootstrap``), sorted by key."""
    cells: dict[tuple, list[dict[str, Any]]] = {}
    for record in records:
        fields = {**record, "method": method_label(record), "sparsity": float(record["sparsity"] or 0.0)}
        key = tuple(fields[k] for k in KEYS)
        cells.setdefault(key, []).append(record)
    if not cells:
        return pd.DataFrame(columns=COLUMNS)
    table = pd.DataFrame([_cell(key, runs, kind) for key, runs in sorted(cells.items())])
    values = {key: [float(r["top1"]) for r in runs if r["status"] == "ok"] for key, runs in cells.items()}
    _mark_best(table, values)
    return table.reindex(columns=COLUMNS)
