"""The leaderboard's structured section: accuracy against FLOPs reduction and against measured speed-up.

Structured records (``bench run --track structured``) are kept apart from the unstructured tables, whose columns are
weight sparsities. Per (dataset, model, target unit), two tables with one column per target: top-1 with the same
95% intervals, best cell and significance marks as the unstructured accuracy table (:func:`prunebench.leaderboard.
table.tidy_table`: paired t-tests against the column's best, Holm within the column), and the cost of each cell:
FLOPs and parameter reductions of the physically pruned model and its measured speed-up over the dense model (batch
1 and the throughput batch; means over seeds). The dense baseline is the shared dense run of the same data and model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from prunebench.core.atomic_files import atomic_write_text
from prunebench.leaderboard.record_reader import DENSE, row_label, variant
from prunebench.leaderboard.render import Cell, Table, to_markdown
from prunebench.leaderboard.section_tables import accuracy_cell, dense_line, grouped_records, typical_n
from prunebench.leaderboard.tidy_table import tidy_table

COST_FIELDS = ("flops_reduction", "params_reduction", "speedup_batch1", "speedup_throughput")


def is_structured(record: dict[str, Any]) -> bool:
    """Whether ``record`` is a run of the structured track (its configuration names the track)."""
    return bool((record.get("config") or {}).get("track"))


def unit_of(record: dict[str, Any]) -> str:
    return record["config"]["track"]["unit"]


def split(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(unstructured, structured)`` records; the dense baselines of the structured data and models go with both."""
    structured = [r for r in records if is_structured(r)]
    pairs = {(r["dataset"], r["model"]) for r in structured}
    dense = [r for r in records if r["method"] == DENSE and (r["dataset"], r["model"]) in pairs]
    unstructured = [r for r in records if not is_structured(r)]
    if structured and all(r["method"] == DENSE for r in unstructured):
        unstructured = [r for r in unstructured if (r["dataset"], r["model"]) not in pairs]
    return unstructured, structured + dense


def _costs(runs: list[dict[str, Any]]) -> dict[str, float]:
    ok = [r["structured"] for r in runs if r["status"] == "ok" and isinstance(r.get("structured"), dict)]
    return {name: sum(s[name] for s in ok) / len(ok) if ok else math.nan for name in COST_FIELDS}


def _target_label(unit: str, target: float) -> str:
    return f"−{target:.0%} {unit}"


def _key(record: dict[str, Any]) -> tuple:
    return (record["method"], variant(record), record["scope"], float(record["sparsity"] or 0.0))


_KEYS = ("method", "variant", "scope", "sparsity")


def cost_cell(costs: dict[str, Any]) -> Cell:
    """``FLOPs reduction / parameter reduction / speed-up at batch 1 / at the throughput batch`` of one cell."""
    if math.isnan(costs["flops_reduction"]):
        return Cell(f"failed ({int(costs.get('n_failed', 0))})")
    return Cell(
        f"−{costs['flops_reduction']:.1%} / −{costs['params_reduction']:.1%} / "
        f"{costs['speedup_batch1']:.2f}× / {costs['speedup_throughput']:.2f}×"
    )


def structured_tables(
    records: list[dict[str, Any]], kind: str
) -> list[tuple[str, str, Table, Table, pd.DataFrame]]:
    """Per (dataset, model, unit): its title, dense line, accuracy table, cost table and tidy cells."""
    found = []
    structured = [r for r in records if is_structured(r)]
    for dataset, model, unit in sorted({(r["dataset"], r["model"], unit_of(r)) for r in structured}):
        runs = [
            r
            for r in records
            if (r["dataset"], r["model"]) == (dataset, model)
            and (r["method"] == DENSE or unit_of_or_none(r) == unit)
        ]
        cells = tidy_table(runs, kind)
        costs = [
            _costs([r for r in runs if _key(r) == key])
            for key in zip(*(cells[k] for k in _KEYS), strict=True)
        ]
        for name in COST_FIELDS:
            cells[name] = [c[name] for c in costs]
        pruned = cells[cells["method"] != DENSE]
        targets = sorted(pruned["sparsity"].unique())
        usual = typical_n(cells)
        header = ["method (scope)", *(_target_label(unit, t) for t in targets)]
        accuracy_rows, cost_rows, groups, previous = [], [], [], None
        for (method, var, scope), rows in grouped_records(pruned, ["method", "variant", "scope"], sort=True):
            if method != previous:
                groups.append(len(accuracy_rows))
                previous = method
            label = Cell(row_label(method, var, scope))
            by_target = {r["sparsity"]: r for r in rows}
            accuracy_rows.append(
                [label, *(accuracy_cell(by_target[t], usual) if t in by_target else Cell() for t in targets)]
            )
            cost_rows.append(
                [label, *(cost_cell(by_target[t]) if t in by_target else Cell() for t in targets)]
            )
        accuracy = Table(
            "structured_accuracy",
            f"Structured: top-1 accuracy (%) by {unit} removed",
            header,
            accuracy_rows,
            notes=(
                f"Columns: the target, a fraction of the {'group channels' if unit == 'channels' else 'dense FLOPs'} "
                "removed. Intervals, **bold** and marks as in the unstructured accuracy table (95% "
                f"{'Student t' if kind == 't' else 'bootstrap'} interval over seeds; † not significantly different "
                "from the column's best, paired t-test with Holm's correction). Accuracy of the physically pruned "
                "model."
            ),
            groups=groups,
        )
        cost = Table(
            "structured_cost",
            "Structured: FLOPs and parameters removed, measured speed-up",
            header,
            cost_rows,
            notes=(
                "Each cell: FLOPs reduction / parameter reduction of the physically pruned model "
                "(torch.utils.flop_counter, one example) / its measured speed-up over the dense model at batch 1 / "
                "at the throughput batch (the recipe's batch size): medians of timed forward passes after warm-up, "
                "both models in the same process on the run's device; means over seeds."
            ),
            groups=groups,
        )
        found.append((f"{dataset} / {model} (structured, {unit})", dense_line(cells), accuracy, cost, cells))
    return found


def unit_of_or_none(record: dict[str, Any]) -> str | None:
    return unit_of(record) if is_structured(record) else None


def structured_markdown(records: list[dict[str, Any]], kind: str) -> tuple[str, pd.DataFrame]:
    """The Markdown of the structured sections and their tidy cells with the cost columns (for the CSV)."""
    parts, frames = [], []
    for title, dense, accuracy, cost, cells in structured_tables(records, kind):
        parts += [f"## {title}", dense]
        for table in (accuracy, cost):
            parts += [f"### {table.title}", to_markdown(table), table.notes]
        frames.append(cells.assign(unit=title.rsplit(", ", 1)[1].rstrip(")")))
    text = "\n\n".join(parts) + "\n" if parts else ""
    return text, pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_structured(
    out: Path, formats: Sequence[str], markdown: str, records: list[dict[str, Any]], kind: str
) -> str:
    """Append the structured sections to the leaderboard's Markdown (rewritten atomically) and write their tidy
    cells, cost columns included, to ``leaderboard_structured.csv``; return the whole Markdown."""
    text, cells = structured_markdown(records, kind)
    combined = markdown.rstrip("\n") + "\n\n" + text
    if "md" in formats:
        atomic_write_text(out / "leaderboard.md", combined)
    if "csv" in formats:
        atomic_write_text(out / "leaderboard_structured.csv", cells.to_csv(index=False))
    return combined
