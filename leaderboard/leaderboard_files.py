"""The leaderboard's files: Markdown, CSV and LaTeX first, then the figures, so that a failing figure never costs
the tables. Every file is written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

import prunebench.leaderboard.plots as plots
from prunebench.core.atomic_files import atomic_write_text
from prunebench.leaderboard.latex import render_latex
from prunebench.leaderboard.markdown import render_markdown
from prunebench.leaderboard.render import to_frame
from prunebench.leaderboard.sections import Section

PLOT_FORMATS = ("png", "svg")


def wide_tables(sections: list[Section]) -> dict[str, pd.DataFrame]:
    """Each kind of table of every section as one frame of strings, stacked with its dataset and model."""
    frames: dict[str, list[pd.DataFrame]] = {}
    for section in sections:
        for table in section.tables:
            frame = to_frame(table)
            frame.insert(0, "model", section.model)
            frame.insert(0, "dataset", section.dataset)
            frames.setdefault(table.name, []).append(frame)
    return {name: pd.concat(found, ignore_index=True).fillna("") for name, found in frames.items()}


def write_files(
    out: Path,
    formats: Sequence[str],
    cells: pd.DataFrame,
    comparisons: pd.DataFrame,
    sections: list[Section],
) -> str:
    """Write the leaderboard in ``formats`` into ``out``; return the Markdown (linking the figures it will get)."""
    plot_formats = [f for f in formats if f in PLOT_FORMATS]
    links = {}
    if plot_formats:
        links = {(s.dataset, s.model): plots.links(s, out, plot_formats) for s in sections}
    markdown = render_markdown(sections, links)
    if "md" in formats:
        atomic_write_text(out / "leaderboard.md", markdown)
    if "csv" in formats:
        atomic_write_text(out / "leaderboard.csv", cells.to_csv(index=False))
        atomic_write_text(out / "leaderboard_scopes.csv", comparisons.to_csv(index=False))
        for name, frame in wide_tables(sections).items():
            file = "leaderboard_wide.csv" if name == "accuracy" else f"leaderboard_wide_{name}.csv"
            atomic_write_text(out / file, frame.to_csv(index=False))
    if "tex" in formats:
        atomic_write_text(out / "leaderboard.tex", render_latex(sections))
    if plot_formats:
        for section in sections:
            plots.write_figures(section, out, plot_formats)
    return markdown
