"""The leaderboard as Markdown: per (dataset, model), rows = method (scope), columns = target sparsities."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from prunebench.leaderboard import provenance
from prunebench.leaderboard.records import DENSE, row_label
from prunebench.leaderboard.stats import ALPHA

TIED = "†"
COLLAPSED = "‡"
ENFORCED = "§"
INTERVAL_NAMES = {"t": "Student-t", "bootstrap": "percentile-bootstrap (9,999 resamples, seed 0)"}


def sparsity_label(sparsity: float) -> str:
    """Column header of a target sparsity with its compression of the prunable weights, e.g. ``0.9 (10×)``."""
    return f"{sparsity:g} ({1 / (1 - sparsity):.3g}×)"


def typical_n(group: pd.DataFrame) -> int:
    """The most common seed count among the cells that have a finished run (the smallest on a draw)."""
    counts = group.loc[group["n"] > 0, "n"]
    return int(counts.mode().min()) if len(counts) else 0


def accuracy_cell(row: Mapping[str, Any], usual_n: int) -> str:
    """``mean ± half-width`` of the interval, the seed count where it is not the usual one, and the markers."""
    n, failed = int(row["n"]), int(row["n_failed"])
    if n == 0:
        return f"failed ({failed})"
    mean = row["top1_mean"]
    text = f"{mean:.2f}" if n == 1 else f"{mean:.2f} ± {(row['top1_ci_high'] - row['top1_ci_low']) / 2:.2f}"
    notes = [f"n={n}"] if n != usual_n or n == 1 else []
    if failed:
        notes.append(f"{failed} failed")
    if notes:
        text += f" ({', '.join(notes)})"
    if bool(row.get("best", False)):
        return f"**{text}**"
    return f"{text} {TIED}" if bool(row.get("not_different_from_best", False)) else text


def cost_cell(row: Mapping[str, Any]) -> str:
    """``compression× / speedup×`` of one cell, with the collapsed-layer and enforcement markers."""
    if int(row["n"]) == 0:
        return f"failed ({int(row['n_failed'])})"
    text = f"{row['compression_ratio']:.1f}× / {row['speedup']:.2f}×"
    if bool(row.get("collapsed", False)):
        text += f" {COLLAPSED}"
    if isinstance(row.get("enforcement"), str):
        text += f" {ENFORCED}"
    return text


def _grid(
    pruned: pd.DataFrame, cell: Callable[[dict[str, Any]], str]
) -> tuple[list[float], list[tuple[str, list[str]]]]:
    """The sparsities and, per method (scope), its cells in that order (empty where it was not run)."""
    sparsities = sorted(pruned["sparsity"].unique())
    rows = []
    for (method, variant, scope), runs in pruned.groupby(["method", "variant", "scope"], sort=True):
        by_sparsity = {r["sparsity"]: cell(r) for r in runs.to_dict("records")}
        rows.append((row_label(method, variant, scope), [by_sparsity.get(s, "") for s in sparsities]))
    return sparsities, rows


def _table(sparsities: list[float], rows: list[tuple[str, list[str]]]) -> str:
    lines = [
        "| method (scope) | " + " | ".join(sparsity_label(s) for s in sparsities) + " |",
        "|---|" + "---:|" * len(sparsities),
    ]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    return "\n".join(lines)


def wide_rows(group: pd.DataFrame) -> tuple[list[float], list[tuple[str, list[str]]]]:
    """The accuracy table of one (dataset, model) as it appears in the Markdown: sparsities and labelled rows."""
    usual = typical_n(group)
    pruned = group[group["method"] != DENSE]
    return _grid(pruned, lambda r: accuracy_cell(r, usual))


def dense_cell(group: pd.DataFrame) -> str | None:
    """The dense baseline of one (dataset, model), always with its seed count; ``None`` when it was not run."""
    dense = group[group["method"] == DENSE]
    return None if dense.empty else accuracy_cell({**dense.iloc[0].to_dict(), "best": False}, -1)


def _dense_line(group: pd.DataFrame) -> str:
    baseline = dense_cell(group)
    return "Dense baseline: not run." if baseline is None else f"Dense baseline (top-1 %): **{baseline}**"


def _enforcements(pruned: pd.DataFrame) -> list[str]:
    found = pruned[pruned["enforcement"].fillna("") != ""]
    return [
        f"{row_label(method, variant, scope)}: {steps}"
        for (method, variant, scope), steps in sorted(
            found.groupby(["method", "variant", "scope"])["enforcement"]
            .agg(lambda s: "; ".join(sorted(set(s))))
            .items()
        )
    ]


def _footnotes(usual_n: int, kind: str) -> str:
    return (
        "Columns: target sparsity s of the prunable weights (their compression 1/(1-s)). "
        f"Top-1 accuracy (%) on the test set: mean ± half-width of the 95% {INTERVAL_NAMES[kind]} interval "
        f"over seeds; n = {usual_n} seeds per cell unless shown. n=1: a single seed, shown without an interval. "
        f"**Bold**: the best mean of the column. {TIED}: not significantly different from the best (paired t, "
        f"Holm, α={ALPHA:g}: seeds paired, Welch's unpaired test where the seeds differ, Holm's correction within "
        "the column; cells with fewer than 2 seeds are not tested). Failed and diverged runs are counted "
        "(`failed`), never averaged."
    )


def _cost_footnotes(pruned: pd.DataFrame) -> str:
    text = (
        "Compression ratio: all parameters of the dense model / non-zero parameters (ShrinkBench). "
        "Theoretical speedup: dense FLOPs / sparse FLOPs."
    )
    if pruned["collapsed"].eq(True).any():
        text += f" {COLLAPSED}: at least one seed has a collapsed layer (no weight left in it)."
    enforced = _enforcements(pruned)
    if enforced:
        text += (
            f" {ENFORCED}: the method's own sparsity was brought to the exact target by an enforcement step: "
            + "; ".join(enforced)
            + "."
        )
    return text


def _provenance(records: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"- Budget: {provenance.budget(records)} of weight updates per run",
        f"- Hardware: {provenance.hardware(records)}",
        f"- Versions: {provenance.versions(records)}",
    ]
    lines.append(f"- Grid: {provenance.grid(records)}")
    lines += [
        f"- Command: `{command}`" + (f" ({note})" if note else "")
        for command, note in provenance.commands(records)
    ]
    return lines


def render_section(
    dataset: str, model: str, group: pd.DataFrame, records: list[dict[str, Any]], kind: str, plots: list[str]
) -> str:
    """The Markdown of one (dataset, model): provenance, dense baseline, accuracy and cost tables, plots."""
    usual = typical_n(group)
    pruned = group[group["method"] != DENSE]
    parts = [f"## {dataset} / {model}", "\n".join(_provenance(records)), _dense_line(group)]
    if not pruned.empty:
        parts += ["### Top-1 accuracy (%)", _table(*wide_rows(group)), _footnotes(usual, kind)]
        parts += ["### Compression ratio / theoretical speedup", _table(*_grid(pruned, cost_cell))]
        parts.append(_cost_footnotes(pruned))
    if plots:
        parts += ["### Plots", "\n\n".join(plots)]
    return "\n\n".join(parts) + "\n"


def render_markdown(
    table: pd.DataFrame,
    records: list[dict[str, Any]],
    kind: str = "t",
    plots: Mapping[tuple[str, str], list[str]] | None = None,
) -> str:
    """The leaderboard of ``table`` (the tidy table of ``records``); ``plots`` are image links per section."""
    parts = ["# prunebench leaderboard\n"]
    for (dataset, model), group in table.groupby(["dataset", "model"], sort=True):
        runs = [r for r in records if (r["dataset"], r["model"]) == (dataset, model)]
        links = (plots or {}).get((dataset, model), [])
        parts.append(render_section(dataset, model, group, runs, kind, links))
    return "\n".join(parts)


def wide_table(table: pd.DataFrame) -> pd.DataFrame:
    """The accuracy tables of every (dataset, model) as they appear in the Markdown, stacked (the wide CSV).

    The dense baseline is the first row of each (dataset, model), in the ``dense`` column.
    """
    rows = []
    for (dataset, model), group in table.groupby(["dataset", "model"], sort=True):
        baseline = dense_cell(group)
        if baseline is not None:
            rows.append({"dataset": dataset, "model": model, "method (scope)": "dense", "dense": baseline})
        sparsities, labelled = wide_rows(group)
        for label, cells in labelled:
            row = {"dataset": dataset, "model": model, "method (scope)": label}
            row.update({sparsity_label(s): c for s, c in zip(sparsities, cells, strict=True) if c})
            rows.append(row)
    columns = ["dataset", "model", "method (scope)", "dense"]
    columns += [sparsity_label(s) for s in sorted(table.loc[table["method"] != DENSE, "sparsity"].unique())]
    return pd.DataFrame(rows).reindex(columns=columns).fillna("")
