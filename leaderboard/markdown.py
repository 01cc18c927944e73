"""The leaderboard as Markdown: per (dataset, model), rows = method (scope), columns = target sparsities."""

from __future__ import annotations

import math

import pandas as pd


def cell(row: pd.Series) -> str:
    """``mean ± half-width`` of the 95% interval; the value alone with ``(n=1)`` when there is one seed."""
    if row["n"] == 0:
        return f"failed ({row['n_failed']})"
    mean = row["top1_mean"]
    if row["n"] < 2 or math.isnan(row["top1_std"]):
        return f"{mean:.2f} (n=1)"
    return f"{mean:.2f} ± {(row['top1_ci_high'] - row['top1_ci_low']) / 2:.2f}"


def render_markdown(table: pd.DataFrame) -> str:
    """Markdown tables of top-1 accuracy (%), one per (dataset, model)."""
    if table.empty:
        return "No finished runs.\n"
    parts = []
    for (dataset, model), group in table.groupby(["dataset", "model"], sort=True):
        dense = group[group["method"] == "dense"]
        pruned = group[group["method"] != "dense"]
        sparsities = sorted(pruned["sparsity"].unique())
        parts.append(f"## {dataset} / {model}\n")
        parts.append("Top-1 accuracy (%), mean ± half-width of the 95% Student-t interval over seeds.\n")
        if not dense.empty:
            parts.append(f"Dense baseline: **{cell(dense.iloc[0])}** (n={int(dense.iloc[0]['n'])})\n")
        header = "| method (scope) | " + " | ".join(f"{s:g}" for s in sparsities) + " |"
        lines = [header, "|---|" + "---|" * len(sparsities)]
        for (method, scope), rows in pruned.groupby(["method", "scope"], sort=True):
            by_sparsity = {r["sparsity"]: cell(r) for _, r in rows.iterrows()}
            lines.append(
                f"| {method} ({scope}) | " + " | ".join(by_sparsity.get(s, "") for s in sparsities) + " |"
            )
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)
