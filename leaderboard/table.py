"""Aggregating records over seeds: mean and 95% Student-t interval per (dataset, model, method, scope, sparsity)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from scipy import stats

KEYS = ["dataset", "model", "method", "scope", "sparsity"]


def t_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float, float]:
    """``(mean, sample std, low, high)``; with one value the interval is that value and the std is NaN."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, mean, mean
    std = float(pd.Series(values).std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half


def tidy_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (dataset, model, method, scope, sparsity), over the seeds that finished ``ok``."""
    rows = []
    frame = pd.DataFrame(records)
    if frame.empty:
        return pd.DataFrame(
            columns=[*KEYS, "n", "n_failed", "top1_mean", "top1_std", "top1_ci_low", "top1_ci_high"]
        )
    frame["sparsity"] = frame["sparsity"].fillna(0.0)
    for key, group in frame.groupby(KEYS, sort=True, dropna=False):
        ok = group[group["status"] == "ok"]
        row = dict(zip(KEYS, key, strict=True))
        row["n"] = len(ok)
        row["n_failed"] = len(group) - len(ok)
        if len(ok):
            mean, std, low, high = t_interval(ok["top1"].tolist())
            row.update(top1_mean=mean, top1_std=std, top1_ci_low=low, top1_ci_high=high)
            row["top5_mean"] = ok["top5"].mean()
            row["achieved_sparsity"] = ok["achieved_sparsity"].mean()
            row["compression_ratio"] = ok["compression_ratio"].mean()
            row["speedup"] = ok["speedup"].mean()
            row["collapsed"] = bool(ok["collapsed"].any())
        rows.append(row)
    return pd.DataFrame(rows)
