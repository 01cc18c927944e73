"""Leaderboard plots: accuracy against compression with interval bands, and per-layer density profiles.

matplotlib is imported inside the functions, with the Agg backend, so that importing this module stays cheap.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from prunebench.leaderboard.records import DENSE, method_label

PLOT_FORMATS = ("png", "svg")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def slug(text: str) -> str:
    """A file-name-safe form of a dataset or model name."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "x"


def compression(sparsity: float) -> float:
    """Compression of the prunable weights at ``sparsity``: ``1 / (1 - s)``."""
    return 1.0 / (1.0 - sparsity)


def median_sparsity(sparsities: list[float]) -> float:
    """The median of the grid's sparsities; the lower middle one when there is an even number."""
    ordered = sorted(sparsities)
    return ordered[(len(ordered) - 1) // 2]


LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def line_styles(labels: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """A colour per scope and a marker and line style per method, so that allocations read at a glance."""
    scopes = sorted({scope for _, scope in labels})
    methods = sorted({method for method, _ in labels})
    return {
        (method, scope): {
            "color": f"C{scopes.index(scope) % 10}",
            "marker": MARKERS[methods.index(method) % len(MARKERS)],
            "linestyle": LINESTYLES[methods.index(method) % len(LINESTYLES)],
            "markersize": 4,
            "label": f"{method} ({scope})",
        }
        for method, scope in labels
    }


def _finish(figure, axes, stem: Path, formats: list[str]) -> list[Path]:
    """Grid, legend outside the axes, save in every format, close the figure; return the paths written."""
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    try:
        return _save(figure, stem, formats)
    finally:
        _pyplot().close(figure)


def _save(figure, stem: Path, formats: list[str]) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for extension in formats:
        path = stem.parent / f"{stem.name}.{extension}"
        figure.savefig(path, format=extension, dpi=150, bbox_inches="tight", metadata=_metadata(extension))
        paths.append(path)
    return paths


def _metadata(extension: str) -> dict[str, Any]:
    """No creation date in the files, so that the same records give the same plots."""
    return {"Date": None} if extension == "svg" else {}


def accuracy_plot(group: pd.DataFrame, title: str, stem: Path, formats: list[str]) -> list[Path]:
    """Top-1 against compression ``1/(1-s)`` (log axis), one line per method (scope) with its interval band."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    dense = group[(group["method"] == DENSE) & (group["n"] > 0)]
    if not dense.empty:
        row = dense.iloc[0]
        axes.axhline(row["top1_mean"], color="black", linestyle="--", linewidth=1, label="dense")
        axes.axhspan(max(0.0, row["top1_ci_low"]), min(100.0, row["top1_ci_high"]), color="black", alpha=0.08)
    pruned = group[(group["method"] != DENSE) & (group["n"] > 0)]
    cells = dict(list(pruned.groupby(["method", "scope"], sort=True)))
    for key, style in line_styles(list(cells)).items():
        runs = cells[key].sort_values("sparsity")
        x = [compression(s) for s in runs["sparsity"]]
        axes.plot(x, runs["top1_mean"], **style)
        low, high = runs["top1_ci_low"].clip(0, 100), runs["top1_ci_high"].clip(0, 100)
        axes.fill_between(x, low, high, color=style["color"], alpha=0.12)
    sparsities = sorted(group.loc[group["method"] != DENSE, "sparsity"].unique())
    axes.set_xscale("log")
    axes.set_xticks([compression(s) for s in sparsities])
    axes.set_xticklabels([f"{s:g}\n{compression(s):.3g}×" for s in sparsities])
    axes.minorticks_off()
    axes.set_xlabel("target sparsity / compression of the prunable weights 1/(1-s) (log scale)")
    axes.set_ylabel("top-1 accuracy (%), 95% interval (clipped to 0-100)")
    axes.set_title(title)
    return _finish(figure, axes, stem, formats)


def layer_densities(
    records: list[dict[str, Any]], sparsity: float
) -> dict[tuple[str, str], dict[str, float]]:
    """Per (method, scope), the mean density of each layer over the finished seeds at ``sparsity``."""
    sums: dict[tuple[str, str], dict[str, list[float]]] = {}
    for record in records:
        if record["status"] != "ok" or record["method"] == DENSE or float(record["sparsity"]) != sparsity:
            continue
        layers = sums.setdefault((method_label(record), record["scope"]), {})
        for layer in record.get("layers") or []:
            if isinstance(layer, dict) and "name" in layer and "density" in layer:
                layers.setdefault(str(layer["name"]), []).append(float(layer["density"]))
    return {
        label: {name: sum(values) / len(values) for name, values in layers.items()}
        for label, layers in sorted(sums.items())
        if layers
    }


def density_plot(
    records: list[dict[str, Any]], sparsity: float, title: str, stem: Path, formats: list[str]
) -> list[Path]:
    """Per-layer density of each method (scope) at ``sparsity``: global versus layer-wise allocation."""
    profiles = layer_densities(records, sparsity)
    if not profiles:
        return []
    names: list[str] = []
    for profile in profiles.values():
        names += [name for name in profile if name not in names]
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(max(6, 0.5 * len(names) + 3), 4.5))
    positions = range(len(names))
    for key, style in line_styles(list(profiles)).items():
        axes.plot(positions, [profiles[key].get(name, float("nan")) for name in names], **style)
    axes.axhline(1 - sparsity, color="black", linestyle=":", linewidth=1, label=f"uniform {1 - sparsity:.3g}")
    axes.set_yscale("symlog", linthresh=1e-3)
    axes.set_ylim(bottom=0)
    axes.set_xticks(list(positions))
    axes.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
    axes.set_xlabel("layer")
    axes.set_ylabel("density (fraction kept; log scale, linear below 0.001)")
    axes.set_title(f"{title}: per-layer density at sparsity {sparsity:g}")
    return _finish(figure, axes, stem, formats)


def write_plots(
    table: pd.DataFrame,
    records: list[dict[str, Any]],
    out: Path,
    formats: list[str],
    density_sparsity: float | None = None,
) -> dict[tuple[str, str], list[str]]:
    """Both plots for every (dataset, model) under ``out/plots``; Markdown image links relative to ``out``.

    The density profile is drawn at ``density_sparsity`` when the grid has it, else at the grid's median sparsity.
    """
    links: dict[tuple[str, str], list[str]] = {}
    for (dataset, model), group in table.groupby(["dataset", "model"], sort=True):
        title = f"{dataset} / {model}"
        stem = out / "plots" / f"{slug(dataset)}_{slug(model)}"
        runs = [r for r in records if (r["dataset"], r["model"]) == (dataset, model)]
        sparsities = sorted(group.loc[group["method"] != DENSE, "sparsity"].unique())
        found = accuracy_plot(group, title, stem.with_name(f"{stem.name}_accuracy"), formats)
        section = [f"![Top-1 accuracy against compression, {title}]({found[0].relative_to(out).as_posix()})"]
        if sparsities:
            at = density_sparsity if density_sparsity in sparsities else median_sparsity(sparsities)
            drawn = density_plot(runs, at, title, stem.with_name(f"{stem.name}_density"), formats)
            if drawn:
                section.append(
                    f"![Per-layer density at sparsity {at:g}, {title}]({drawn[0].relative_to(out).as_posix()})"
                )
        links[(dataset, model)] = section
    return links
