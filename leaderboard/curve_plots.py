"""Training-curve figures, one per cell: each quantity of the runs' curves against the run's epochs, mean over seeds.

A cell is a leaderboard cell less its seeds (dataset, model, method and variant, scope, sparsity): its runs' curves
(:mod:`prunebench.run.curves`) are lined up by row, the run's epoch count, and each panel draws the mean over the
seeds with a band from the lowest to the highest seed, for every column some run of the cell has (train loss, test
top-1 where evaluated, sparsity, learning rate, the method's own quantities). Written to ``<out>/curves/<cell>.png``
(and the other image formats asked for), atomically; matplotlib is imported only when figures are drawn.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prunebench.core.atomic_files import atomic_file
from prunebench.leaderboard.record_reader import load_records, variant
from prunebench.run.curves import read_curves

IMAGE_FORMATS = ("png", "svg")
SKIPPED = ("phase", "epoch", "step")
"""Columns that place a row rather than measure something."""
PANEL_SIZE = (3.2, 2.2)


def cell_of(record: dict[str, Any]) -> tuple:
    """The cell of a record: what its seeds share."""
    return (
        record["dataset"],
        record["model"],
        record["method"],
        variant(record),
        record["scope"],
        record["sparsity"],
    )


def cell_stem(cell: tuple) -> str:
    """A file name for ``cell``: its parts joined by ``_``, characters other than letters, digits, ``.``, ``=``
    and ``-`` replaced."""
    dataset, model, method, variant_name, scope, sparsity = cell
    parts = [dataset, model, method + (f"-{variant_name}" if variant_name else ""), scope, f"s{sparsity:g}"]
    return re.sub(r"[^A-Za-z0-9.=-]+", "-", "_".join(map(str, parts)))


def cell_curves(directories: Iterable[Path]) -> dict[tuple, list[list[dict[str, Any]]]]:
    """Every cell's curves, one list of rows per seed, from the finished runs of ``directories`` that have them."""
    cells: dict[tuple, list[list[dict[str, Any]]]] = {}
    for directory in map(Path, directories):
        for record in load_records([directory]):
            if record.get("status") != "ok":
                continue
            rows = read_curves(directory, str(record["run_id"]))
            if rows:
                cells.setdefault(cell_of(record), []).append(rows)
    return cells


def band(runs: Sequence[Sequence[dict[str, Any]]], column: str) -> tuple[np.ndarray, ...] | None:
    """Epochs, mean, lowest and highest over the seeds of ``column`` (``None`` where no run has a value), up to the
    shortest run; ``None`` when no run has the column."""
    length = min(len(rows) for rows in runs)
    values = np.array(
        [
            [np.nan if row.get(column) is None else float(row[column]) for row in rows[:length]]
            for rows in runs
        ]
    )
    present = ~np.isnan(values).all(axis=0)
    if not present.any():
        return None
    epochs = np.arange(1, length + 1)[present]
    values = values[:, present]
    return epochs, np.nanmean(values, axis=0), np.nanmin(values, axis=0), np.nanmax(values, axis=0)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curve_figure(cell: tuple, runs: Sequence[Sequence[dict[str, Any]]]):
    """The figure of one cell: a panel per measured column."""
    plt = _pyplot()
    columns = [c for c in dict.fromkeys(k for rows in runs for row in rows for k in row) if c not in SKIPPED]
    drawn = [(column, b) for column in columns if (b := band(runs, column)) is not None]
    figure, axes = plt.subplots(
        1, len(drawn), figsize=(PANEL_SIZE[0] * len(drawn), PANEL_SIZE[1] + 0.8), squeeze=False
    )
    for panel, (column, (epochs, mean, low, high)) in zip(axes[0], drawn, strict=True):
        panel.plot(epochs, mean, marker="o" if len(epochs) < 20 else "", color="#0072B2", linewidth=1.2)
        panel.fill_between(epochs, low, high, color="#0072B2", alpha=0.25, linewidth=0)
        panel.set_title(column, fontsize=9)
        panel.set_xlabel("epoch of the run", fontsize=8)
        panel.tick_params(labelsize=7)
    figure.suptitle(
        f"{' / '.join(map(str, cell[:5]))} at sparsity {cell[5]:g}: mean over {len(runs)} seed(s), "
        "band min to max",
        fontsize=9,
    )
    figure.tight_layout()
    return figure


def write_curve_plots(
    directories: Sequence[Path], out: Path, formats: Sequence[str] = ("png",)
) -> list[Path]:
    """Draw every cell's curve figure into ``<out>/curves/``; return the files written."""
    plt = _pyplot()
    written = []
    extensions = [f for f in formats if f in IMAGE_FORMATS] or ["png"]
    for cell, runs in sorted(cell_curves(directories).items(), key=lambda item: cell_stem(item[0])):
        figure = curve_figure(cell, runs)
        for extension in extensions:
            path = Path(out) / "curves" / f"{cell_stem(cell)}.{extension}"
            with atomic_file(path, "wb") as stream:
                figure.savefig(
                    stream,
                    format=extension,
                    dpi=120,
                    metadata={"Software": None} if extension == "png" else None,
                )
            written.append(path)
        plt.close(figure)
    return written
