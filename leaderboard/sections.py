"""The leaderboard split into sections, one per (dataset, model), each with its records, cells and tables."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

import prunebench.leaderboard.section_tables as tables
from prunebench.core.errors import UsageError
from prunebench.leaderboard.metrics import cells_metric
from prunebench.leaderboard.record_reader import DENSE
from prunebench.leaderboard.render import Table


def slug(text: str) -> str:
    """A file-name-safe form of a dataset or model name."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "x"


@dataclass
class Section:
    """One (dataset, model): its records, tidy cells, scope comparisons, density sparsity and tables in order."""

    dataset: str
    model: str
    records: list[dict[str, Any]]
    cells: pd.DataFrame
    comparisons: pd.DataFrame
    density_sparsity: float | None
    tables: list[Table] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.dataset} / {self.model}"

    @property
    def stem(self) -> str:
        """The file-name stem of the section's figures and the label stem of its LaTeX tables."""
        return f"{slug(self.dataset)}_{slug(self.model)}"

    @property
    def sparsities(self) -> list[float]:
        return sorted(self.cells.loc[self.cells["method"] != DENSE, "sparsity"].unique())


def median_sparsity(sparsities: list[float]) -> float:
    """The median of the grid's sparsities; the lower middle one when there is an even number."""
    return sorted(sparsities)[(len(sparsities) - 1) // 2]


def _density_sparsity(title: str, sparsities: list[float], asked: float | None) -> float | None:
    """``asked`` where the grid has it (a :class:`UsageError` where it does not), else the median sparsity."""
    if not sparsities:
        return None
    if asked is None:
        return median_sparsity(sparsities)
    if asked not in sparsities:
        present = ", ".join(f"{s:g}" for s in sparsities)
        raise UsageError(
            f"--density-at {asked:g}: {title} has no runs at that sparsity; sparsities present: {present}"
        )
    return asked


def build_sections(
    cells: pd.DataFrame,
    comparisons: pd.DataFrame,
    records: list[dict[str, Any]],
    kind: str,
    *,
    density_sparsity: float | None = None,
    top5: bool = False,
) -> list[Section]:
    """The sections of the leaderboard, in (dataset, model) order, with their tables.

    Tables: the scope differences (the headline), the learned allocations, the primary metric (top-1, or perplexity
    followed by next-token top-1), top-5 (with ``top5``), cost.
    """
    sections = []
    for (dataset, model), group in cells.groupby(["dataset", "model"], sort=True):
        runs = [r for r in records if (r["dataset"], r["model"]) == (dataset, model)]
        found = comparisons[(comparisons["dataset"] == dataset) & (comparisons["model"] == model)]
        section = Section(dataset, model, runs, group, found, None)
        section.density_sparsity = _density_sparsity(section.title, section.sparsities, density_sparsity)
        if section.sparsities:
            candidates = [tables.scope_table(found, cells_metric(group))]
            candidates.append(tables.allocation_table(runs, section.density_sparsity))
            candidates.append(tables.accuracy_table(group, kind))
            candidates.append(tables.next_token_table(group, kind))
            if top5:
                candidates.append(tables.top5_table(group, kind))
            candidates.append(tables.cost_table(group, runs))
            section.tables = [t for t in candidates if t is not None]
        sections.append(section)
    return sections
