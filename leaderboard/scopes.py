"""Global versus layer-wise: for each criterion run in several scopes, the paired difference between its scopes.

A criterion is (method, variant). For each pair of its scopes (``global - uniform``, ``erk - uniform``,
``global - erk``, ...) and each sparsity both ran at, the difference of top-1 is compared seed by seed
(:func:`prunebench.leaderboard.stats.compare`: a paired t-test and interval, Welch where the seeds differ). The
p-values of one (dataset, model, sparsity) are adjusted together by Holm's method; a difference is significant when
its adjusted p-value is below alpha.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from prunebench.leaderboard.record_reader import DENSE
from prunebench.leaderboard.stats import ALPHA, compare, holm
from prunebench.leaderboard.tidy_table import cells, seed_values

SCOPE_ORDER = ("global", "erk", "uniform_plus", "uniform", "learned")
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
"""Columns of the tidy comparison table: ``difference`` is top-1 of ``scope_a`` minus ``scope_b``, in points."""


def ordered(scopes: set[str]) -> list[str]:
    """``scopes`` in :data:`SCOPE_ORDER`, unknown ones after them in alphabetical order."""
    known = [s for s in SCOPE_ORDER if s in scopes]
    return known + sorted(scopes - set(SCOPE_ORDER))


def pairs(scopes: set[str]) -> list[tuple[str, str]]:
    """Every pair of ``scopes``, the earlier in :func:`ordered` first: ``(global, erk), (global, uniform), ...``."""
    order = ordered(scopes)
    return [(a, b) for i, a in enumerate(order) for b in order[i + 1 :]]


def scope_comparisons(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The tidy table of differences between the scopes of every criterion, Holm-adjusted per column."""
    values: dict[tuple, dict[str, dict[float, dict[Any, float]]]] = {}
    for (dataset, model, method, variant, scope, sparsity), runs in cells(records).items():
        found = seed_values(runs)
        if method != DENSE and found:
            values.setdefault((dataset, model, method, variant), {}).setdefault(scope, {})[sparsity] = found
    rows = []
    for (dataset, model, method, variant), by_scope in values.items():
        for a, b in pairs(set(by_scope)):
            for sparsity in sorted(set(by_scope[a]) & set(by_scope[b])):
                result = compare(by_scope[a][sparsity], by_scope[b][sparsity])
                rows.append(
                    {
                        "dataset": dataset,
                        "model": model,
                        "method": method,
                        "variant": variant,
                        "scope_a": a,
                        "scope_b": b,
                        "sparsity": sparsity,
                        "test": result.test or None,
                        "n": result.n,
                        "difference": result.difference,
                        "ci_low": result.low,
                        "ci_high": result.high,
                        "p": result.pvalue,
                    }
                )
    table = pd.DataFrame(rows, columns=COLUMNS)
    for _, column in table.groupby(["dataset", "model", "sparsity"], sort=False):
        table.loc[column.index, "p_holm"] = holm(column["p"].tolist())
    table["significant"] = table["p_holm"].astype(float) < ALPHA
    return table
