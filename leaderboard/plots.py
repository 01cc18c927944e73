"""Leaderboard figures, small multiples with one panel per criterion (method and variant), one line per scope.

* accuracy: top-1 (perplexity, on a log axis, where the section's metric is perplexity:
  :mod:`prunebench.leaderboard.metrics`) against compression ``1/(1-s)`` with interval bands, the dense baseline (line
  and band) in each panel; a row of another comparison group (``per_output``) is a panel of its own, an N:M pattern a
  series of its own (``uniform 2:4``) beside its scope's line;
* speedup: the same metric against the theoretical speedup the runs achieved (dense FLOPs / sparse FLOPs);
* density: per-layer density at one sparsity, the uniform and ERK allocations of the same budget drawn for reference;
* dynamic: for the methods that move their mask while they train (SET, RigL: records whose ``method_details`` hold
  ``layer_density`` at their ``update_steps``), each layer's density over the training at that sparsity, one panel
  per method and scope, for the lowest seed: how a global scope redistributes the budget that a layer-wise one fixes.

A scope has the same colour, marker and line style in every figure; within a panel no two series share all three.
matplotlib is imported inside the functions, with the Agg backend, so that importing this module stays cheap.
Figures are written atomically (a temporary file in the same directory, then renamed). A section's figures are drawn
again only when what they show changed: a digest of their inputs (the section's cells, its per-layer densities, this
module's code and matplotlib's version) is kept beside them in ``plots/.<stem>.digest``, written after the figures.
"""

from __future__ import annotations

import hashlib
import math
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import prunebench.leaderboard.layer_densities as allocations
from prunebench.core.atomic_files import atomic_file, atomic_write_text
from prunebench.leaderboard.metrics import TOP1, Metric, cells_metric
from prunebench.leaderboard.record_reader import DENSE, criterion_label, row_group
from prunebench.leaderboard.scopes import ordered
from prunebench.leaderboard.sections import Section
from prunebench.leaderboard.setups import row_setups
from prunebench.leaderboard.tidy_table import pattern_of, with_groups

FIGURES = {
    "accuracy": "Top-1 accuracy against compression",
    "speedup": "Top-1 accuracy against theoretical speedup",
    "density": "Per-layer density",
    "dynamic": "Per-layer density over training",
}
SCOPE_STYLES = {
    "global": {"color": "#0072B2", "marker": "o", "linestyle": "-"},
    "erk": {"color": "#009E73", "marker": "s", "linestyle": "--"},
    "owl": {"color": "#56B4E9", "marker": "v", "linestyle": "-."},
    "uniform_plus": {"color": "#E69F00", "marker": "D", "linestyle": "-."},
    "uniform": {"color": "#D55E00", "marker": "^", "linestyle": ":"},
    "learned": {"color": "#CC79A7", "marker": "P", "linestyle": "-"},
}
"""A fixed style per known scope (Okabe-Ito colours, distinguishable with colour-blindness)."""
FALLBACK_COLOR = "#7f7f7f"
FALLBACK_MARKERS = ("v", "X", "*", "h", "<", ">", "p", "d")
FALLBACK_LINESTYLES = ("-", "--", "-.", ":")
DENSE_STYLE = {"color": "black", "marker": "", "linestyle": "-", "linewidth": 1.0}
REFERENCE_STYLES = {
    "uniform": {"color": "black", "marker": "", "linestyle": ":", "linewidth": 1.2},
    "erk": {"color": "black", "marker": "", "linestyle": "--", "linewidth": 1.2},
}
"""The uniform and ERK allocations of the budget in the density figure."""
REFERENCE_NAMES = {"uniform": "uniform", "erk": "ERK"}
PANEL_COLUMNS = 4
PANEL_SIZE = (2.7, 2.0)
"""Width and height of one panel's axes, in inches."""
SUPTITLE_TOP = 0.25
"""Inches from the top of the figure to its title's baseline."""
MARGINS = {"left": 0.7, "right": 0.2, "top": 0.75, "bottom": 1.25, "wspace": 0.35, "hspace": 0.55}
"""Fixed room around and between the panels, in inches: the suptitle above, tick labels, the axis label and the
legend below, each panel's title between rows. A fixed layout instead of ``tight_layout``, which measured every
text of every panel several times and took most of the leaderboard's time."""


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def scope_styles(scopes: set[str]) -> dict[str, dict[str, Any]]:
    """The style of each scope: fixed for known scopes, grey with its own marker and line style for the others."""
    unknown = [s for s in ordered(scopes) if s not in SCOPE_STYLES]
    styles = {s: SCOPE_STYLES[s] for s in ordered(scopes) if s in SCOPE_STYLES}
    for i, scope in enumerate(unknown):
        styles[scope] = {
            "color": FALLBACK_COLOR,
            "marker": FALLBACK_MARKERS[i % len(FALLBACK_MARKERS)],
            "linestyle": FALLBACK_LINESTYLES[i // len(FALLBACK_MARKERS) % len(FALLBACK_LINESTYLES)],
        }
    return styles


def series_of(cells: pd.DataFrame) -> pd.Series:
    """The series of each cell in its panel: its scope, followed by its N:M pattern for a pattern's cells."""
    patterns = with_groups(cells)["group"].map(pattern_of)
    return (cells["scope"] + " " + patterns).str.strip()


def section_styles(section: Section) -> dict[str, dict[str, Any]]:
    """The styles of every series of the section, so that a scope looks the same in each of its figures; an N:M
    series (``uniform 2:4``) is its scope's colour, as crosses without a line."""
    pruned = section.cells[section.cells["method"] != DENSE]
    series = set(series_of(pruned))
    scopes = {name.split(" ")[0] for name in series}
    styles = scope_styles(scopes)
    patterns = {
        name: {**styles[name.split(" ")[0]], "marker": "X", "linestyle": "none"} for name in series - scopes
    }
    return {**{s: styles[s] for s in series & scopes}, **patterns}


def compression(sparsity: float) -> float:
    """Compression of the prunable weights at ``sparsity``: ``1 / (1 - s)``."""
    return 1.0 / (1.0 - sparsity)


def _criteria(cells: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The panels of the metric's figures: (method, variant, row group) of every finished pruned cell."""
    pruned = with_groups(cells[(cells["method"] != DENSE) & (cells["n"] > 0)])
    rows = zip(pruned["method"], pruned["variant"], pruned["group"].map(row_group), strict=True)
    return sorted(set(rows))


def _panels(count: int, title: str, sharey: bool = False):
    """A figure with ``count`` panels in rows of at most four, laid out with :data:`MARGINS`; unused panels hidden."""
    plt = _pyplot()
    columns = min(PANEL_COLUMNS, max(count, 1))
    rows = math.ceil(max(count, 1) / columns)
    width, height = PANEL_SIZE
    m = MARGINS
    figure_width = m["left"] + m["right"] + columns * width + (columns - 1) * m["wspace"]
    figure_height = m["top"] + m["bottom"] + rows * height + (rows - 1) * m["hspace"]
    figure, axes = plt.subplots(
        rows, columns, figsize=(figure_width, figure_height), squeeze=False, sharex=True, sharey=sharey
    )
    figure.subplots_adjust(
        left=m["left"] / figure_width,
        right=1 - m["right"] / figure_width,
        bottom=m["bottom"] / figure_height,
        top=1 - m["top"] / figure_height,
        wspace=m["wspace"] / width,
        hspace=m["hspace"] / height,
    )
    panels = list(axes.flat)
    for unused in panels[count:]:
        unused.set_visible(False)
    figure.suptitle(title, y=1 - SUPTITLE_TOP / figure_height)
    return figure, panels[:count]


def _dense(axes, cells: pd.DataFrame, setup: str, metric: Metric = TOP1) -> None:
    """The dense baseline of the runs of ``setup`` (:mod:`prunebench.leaderboard.setups`) as a line and a band."""
    dense = cells[(cells["method"] == DENSE) & (cells["n"] > 0) & (cells["variant"] == setup)]
    if dense.empty:
        return
    row = dense.iloc[0]
    field = metric.field
    axes.axhline(row[f"{field}_mean"], label="dense", **DENSE_STYLE)
    axes.axhspan(row[f"{field}_ci_low"], row[f"{field}_ci_high"], color="black", alpha=0.08, linewidth=0)


def _log_ticks(axes, values: list[float], labels: list[str]) -> None:
    """Ticks at ``values`` of the log x axis, no minor ticks."""
    axes.set_xticks(values, labels)
    axes.minorticks_off()


def _legend(figure, panels, scopes: set[str]) -> None:
    """One legend for the figure, below the panels: every label once, the references first, then the scopes."""
    handles: dict[str, Any] = {}
    for axes in panels:
        for handle, label in zip(*axes.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    order = [label for label in handles if label not in scopes] + [s for s in ordered(scopes) if s in handles]
    if order:
        figure.legend(
            [handles[k] for k in order], order, loc="lower center", ncol=min(len(order), 7), frameon=False
        )


def _accuracy_lines(section: Section, x_of: str, title: str):
    """Panels of the section's metric (with interval bands) against ``x_of`` (``compression`` or ``speedup``) per
    criterion and row group, one series per scope and N:M pattern."""
    cells = section.cells
    metric = cells_metric(cells)
    field = metric.field
    criteria = _criteria(cells)
    figure, panels = _panels(len(criteria), f"{section.title}: {_metric_words(metric)} {title}", sharey=True)
    pruned = with_groups(cells[(cells["method"] != DENSE) & (cells["n"] > 0)]).copy()
    pruned["compression"] = pruned["sparsity"].map(compression)
    pruned["series"] = series_of(pruned)
    pruned["row_group"] = pruned["group"].map(row_group)
    pruned = pruned[np.isfinite(pruned[x_of])]  # a speedup is infinite where nothing is left to compute
    styles = section_styles(section)
    limits = (float(pruned[x_of].min()) / 1.25, float(pruned[x_of].max()) * 1.25)
    setups = row_setups(section.records)
    for axes, (method, variant_label, group_name) in zip(panels, criteria, strict=True):
        axes.set_xscale("log")
        axes.set_xlim(*limits)  # fixed before any data: autoscaling one x value would give equal limits
        _dense(axes, cells, setups.get((method, variant_label), ""), metric)
        mine = pruned[
            (pruned["method"] == method)
            & (pruned["variant"] == variant_label)
            & (pruned["row_group"] == group_name)
        ]
        for series in ordered(set(mine["series"])):
            runs = mine[mine["series"] == series].sort_values(x_of)
            style = styles[series]
            axes.plot(runs[x_of], runs[f"{field}_mean"], markersize=4, label=series, **style)
            axes.fill_between(
                runs[x_of],
                runs[f"{field}_ci_low"],
                runs[f"{field}_ci_high"],
                color=style["color"],
                alpha=0.12,
                linewidth=0,
            )
        # a fixed y: matplotlib then does not search every panel for texts the title would overlap
        axes.set_title(criterion_label(method, variant_label, group_name), fontsize=9, y=1.0)
        axes.grid(alpha=0.3)
        if not metric.higher_is_better:
            _log_values(axes)
    for axes in panels:
        axes.tick_params(labelsize=7)
    return figure, panels, pruned


def _log_values(axes) -> None:
    """A log y axis labelled at 1, 2 and 5 times the powers of ten (perplexities rarely span a decade)."""
    from matplotlib import ticker

    axes.set_yscale("log")
    axes.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axes.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    axes.yaxis.set_minor_locator(ticker.NullLocator())


def _metric_words(metric: Metric) -> str:
    """How a figure's title names its metric."""
    if metric is TOP1:
        return "top-1 accuracy (%, 95% interval)"
    return "perplexity (95% interval, lower is better)"


def accuracy_figure(section: Section):
    """The section's metric against compression of the prunable weights (log axis), per criterion."""
    figure, panels, pruned = _accuracy_lines(section, "compression", "against compression")
    sparsities = section.sparsities
    for axes in panels:
        _log_ticks(
            axes, [compression(s) for s in sparsities], [f"{s:g}\n{compression(s):.3g}×" for s in sparsities]
        )
    ylabel = cells_metric(section.cells).axis_label()
    _finish(figure, panels, set(pruned["series"]), "target sparsity / compression 1/(1-s)", ylabel)
    return figure


def speedup_figure(section: Section):
    """The section's metric against the theoretical speedup the runs achieved (log axis), per criterion."""
    figure, panels, pruned = _accuracy_lines(section, "speedup", "against theoretical speedup")
    speedups = pruned["speedup"]
    ticks = _round_ticks(float(speedups.min()), float(speedups.max()))
    for axes in panels:
        _log_ticks(axes, ticks, [f"{t:g}×" for t in ticks])
    ylabel = cells_metric(section.cells).axis_label()
    xlabel = "theoretical speedup (dense FLOPs / sparse FLOPs)"
    _finish(figure, panels, set(pruned["series"]), xlabel, ylabel)
    return figure


def _round_ticks(low: float, high: float) -> list[float]:
    """1, 2, 5, 10, 20, 50, ... from ``low`` to ``high`` (at least ``low`` itself, rounded)."""
    ticks = [
        m * 10**e
        for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
        for m in (1, 2, 5)
    ]
    inside = [t for t in ticks if low / 1.25 <= t <= high * 1.25]
    return inside or [round(low, 1)]


def density_figure(section: Section):
    """Per-layer density of each scope at the section's density sparsity, per criterion, with the references.

    Log scale; where a layer collapsed (density 0) the scale is linear below the smallest other density, so that
    the collapse shows.
    """
    sparsity = section.density_sparsity
    profiles = allocations.achieved(section.records, sparsity)
    references = allocations.references(section.records, sparsity)
    criteria = sorted({key[:2] for key in profiles})
    names = list(allocations.shapes(section.records, sparsity)) or sorted(
        {n for p in profiles.values() for n in p}
    )
    title = f"{section.title}: per-layer density at sparsity {sparsity:g}"
    figure, panels = _panels(len(criteria), title, sharey=True)
    styles = section_styles(section)
    positions = list(range(len(names)))
    labels = allocations.short_labels(names)
    rotate = max(map(len, labels)) > 3
    values = [d for p in [*profiles.values(), *references.values()] for d in p.values()]
    floor = min((d for d in values if d > 0), default=1.0)
    for axes, (method, variant) in zip(panels, criteria, strict=True):
        for scope, densities in references.items():
            label = f"{REFERENCE_NAMES[scope]} allocation of the budget"
            axes.plot(positions, [densities[n] for n in names], label=label, **REFERENCE_STYLES[scope])
        for scope in ordered({key[2] for key in profiles if key[:2] == (method, variant)}):
            profile = profiles[(method, variant, scope)]
            y = [profile.get(n, math.nan) for n in names]
            axes.plot(positions, y, markersize=4, label=scope, **styles[scope])
        # a fixed y: matplotlib then does not search every panel for texts the title would overlap
        axes.set_title(criterion_label(method, variant), fontsize=9, y=1.0)
        if min(values, default=1.0) > 0:
            axes.set_yscale("log")
        else:
            axes.set_yscale("symlog", linthresh=10 ** math.floor(math.log10(floor)))
            axes.set_ylim(bottom=0)
        axes.grid(alpha=0.3)
        axes.set_xticks(positions, labels, rotation=45 if rotate else 0, ha="right" if rotate else "center")
        axes.tick_params(labelsize=7)
        if len(positions) == 1:
            axes.set_xlim(-0.5, 0.5)
    _finish(figure, panels, {key[2] for key in profiles}, "layer", "density (fraction kept, log scale)")
    return figure


def density_histories(records: list[dict[str, Any]], sparsity: float | None) -> dict[tuple, dict[str, Any]]:
    """Per (method, variant, scope): the update steps and each layer's density at them, of the finished run at
    ``sparsity`` with the lowest seed whose ``method_details`` hold them."""
    found: dict[tuple, tuple[int, dict[str, Any]]] = {}
    for record in records:
        details = record.get("method_details") or {}
        if (
            record.get("status") != "ok"
            or record.get("sparsity") != sparsity
            or "layer_density" not in details
        ):
            continue
        key = (record["method"], record.get("variant", ""), record["scope"])
        if key not in found or record["seed"] < found[key][0]:
            history = {"steps": details["update_steps"], "layers": details["layer_density"]}
            found[key] = (record["seed"], history)
    return {key: history for key, (_, history) in sorted(found.items())}


def dynamic_figure(section: Section):
    """Each layer's density at every mask update, per (method, scope), at the section's density sparsity."""
    sparsity = section.density_sparsity
    histories = density_histories(section.records, sparsity)
    title = f"{section.title}: per-layer density over training at sparsity {sparsity:g}"
    figure, panels = _panels(len(histories), title, sharey=True)
    layers = sorted({name for history in histories.values() for name in history["layers"]})
    labels = dict(zip(layers, allocations.short_labels(layers), strict=True))
    colors = _pyplot().get_cmap("tab10")
    for axes, ((method, variant, scope), history) in zip(panels, histories.items(), strict=True):
        for index, name in enumerate(layers):
            if name in history["layers"]:
                axes.plot(
                    history["steps"], history["layers"][name], color=colors(index % 10), label=labels[name]
                )
        axes.set_title(f"{criterion_label(method, variant)} ({scope})", fontsize=9, y=1.0)
        axes.set_yscale("log")
        axes.grid(alpha=0.3)
        axes.tick_params(labelsize=7)
    for axes in panels:
        spec = axes.get_subplotspec()
        if spec.is_first_col():
            axes.set_ylabel("density (log scale)", fontsize=8)
        axes.set_xlabel("optimizer step", fontsize=8)
    if panels:
        handles, names = panels[0].get_legend_handles_labels()
        figure.legend(handles, names, loc="lower center", ncol=min(len(names), 6), fontsize=7, frameon=False)
    return figure


def _finish(figure, panels, scopes: set[str], xlabel: str, ylabel: str) -> None:
    """Axis labels and x tick labels on the outer panels, one legend below the panels."""
    for index, axes in enumerate(panels):
        spec = axes.get_subplotspec()
        if index + spec.get_gridspec().ncols >= len(panels):  # nothing below: the x axis is shown here
            axes.set_xlabel(xlabel, fontsize=8)
            axes.xaxis.set_tick_params(labelbottom=True)
        if spec.is_first_col():
            axes.set_ylabel(ylabel, fontsize=8)
    _fit_tick_labels(figure, panels)
    _legend(figure, panels, scopes)


BELOW_TICK_LABELS = 0.7
"""Inches the x axis label and the legend take below the lowest x tick label."""
LEFT_EDGE = 0.1


def _fit_tick_labels(figure, panels) -> None:
    """Grow the figure on the left and at the bottom where the x tick labels (long layer names, rotated) would fall
    outside it or onto the legend, the panels keeping their size: each label measured once, where ``tight_layout``
    measured every text of every panel several times."""
    renderer = figure.canvas.get_renderer()
    boxes = [
        label.get_window_extent(renderer)
        for axes in panels
        for label in axes.get_xticklabels()
        if label.get_visible() and label.get_text()
    ]
    if not boxes:
        return
    width, height = figure.get_size_inches()
    extra_left = max(0.0, LEFT_EDGE - min(b.x0 for b in boxes) / figure.dpi)
    extra_bottom = max(0.0, BELOW_TICK_LABELS - min(b.y0 for b in boxes) / figure.dpi)
    if extra_left == 0 and extra_bottom == 0:
        return
    sub = figure.subplotpars
    margins = (sub.left * width, (1 - sub.right) * width, sub.bottom * height, (1 - sub.top) * height)
    width, height = width + extra_left, height + extra_bottom
    figure.set_size_inches(width, height)
    figure.subplots_adjust(
        left=(margins[0] + extra_left) / width,
        right=1 - margins[1] / width,
        bottom=(margins[2] + extra_bottom) / height,
        top=1 - margins[3] / height,
    )
    figure.suptitle(figure.get_suptitle(), y=1 - SUPTITLE_TOP / height)


def planned(section: Section) -> list[str]:
    """The figures the section gets: accuracy and speedup when a pruned cell finished, density when layers exist."""
    if not _criteria(section.cells):
        return []
    names = ["accuracy", "speedup"]
    if section.density_sparsity is not None and allocations.any_achieved(
        section.records, section.density_sparsity
    ):
        names.append("density")
    if density_histories(section.records, section.density_sparsity):
        names.append("dynamic")
    return names


def figure_path(out: Path, section: Section, name: str, extension: str) -> Path:
    return out / "plots" / f"{section.stem}_{name}.{extension}"


def links(section: Section, out: Path, formats: list[str]) -> list[str]:
    """Markdown image links to the section's figures in the first plot format, relative to ``out``."""
    result = []
    for name in planned(section):
        at = f" at sparsity {section.density_sparsity:g}" if name in ("density", "dynamic") else ""
        alt = FIGURES[name] + at
        if name in ("accuracy", "speedup") and cells_metric(section.cells) is not TOP1:
            alt = alt.replace("Top-1 accuracy", "Perplexity")
        path = figure_path(out, section, name, formats[0]).relative_to(out).as_posix()
        result.append(f"![{alt}, {section.title}]({path})")
    return result


def figure_digest(section: Section, formats: list[str]) -> str:
    """A digest of everything the section's figures are drawn from, and of how they are drawn."""
    digest = hashlib.sha256()
    digest.update(section.cells.to_csv(index=False).encode())
    sparsity = section.density_sparsity
    if sparsity is not None:
        for part in (allocations.achieved, allocations.references, allocations.shapes, density_histories):
            digest.update(repr(sorted(part(section.records, sparsity).items())).encode())
    for module in (__file__, allocations.__file__):
        digest.update(Path(module).read_bytes())
    digest.update(f"{sparsity!r} {formats!r} matplotlib {metadata.version('matplotlib')}".encode())
    return digest.hexdigest()


def write_figures(section: Section, out: Path, formats: list[str]) -> list[Path]:
    """Draw the section's figures and write each in every format, atomically; return the paths written. Figures
    whose files exist and whose inputs did not change since they were drawn are kept as they are."""
    names = planned(section)
    if not names:
        return []
    digest = figure_digest(section, formats)
    paths = [figure_path(out, section, name, extension) for name in names for extension in formats]
    recorded = out / "plots" / f".{section.stem}.digest"
    if recorded.exists() and recorded.read_text() == digest and all(path.exists() for path in paths):
        return []
    builders = {
        "accuracy": accuracy_figure,
        "speedup": speedup_figure,
        "density": density_figure,
        "dynamic": dynamic_figure,
    }
    plt = _pyplot()
    for name in names:
        figure = builders[name](section)
        try:
            for extension in formats:
                with atomic_file(figure_path(out, section, name, extension), "wb") as stream:
                    figure.savefig(stream, format=extension, dpi=150, metadata=_metadata(extension))
        finally:
            plt.close(figure)
    atomic_write_text(recorded, digest)
    return paths


def _metadata(extension: str) -> dict[str, Any]:
    """No creation date in the files, so that the same records give the same plots."""
    return {"Date": None} if extension == "svg" else {}
