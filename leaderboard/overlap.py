"""Mask overlap: which weights do two methods keep? The Jaccard index of their saved masks, per seed and averaged.

``bench masks DIR --sparsity 0.95`` reads the saved masks (:mod:`prunebench.pruning.saved_masks`) of the finished pruned runs
at that sparsity and, per (dataset, model), writes

* ``masks_<dataset>_<model>_s<sparsity>.csv``: tidy, one row per (seed, row a, row b) with the Jaccard index
  ``|A ∩ B| / |A ∪ B|`` over all prunable weights, plus rows with seed ``mean``, the mean over the seeds both rows
  have;
* ``masks_<dataset>_<model>_s<sparsity>.md``: the mean matrix, then each seed's;
* ``masks_<dataset>_<model>_s<sparsity>.png`` (and ``.svg`` with ``--format``): a heat map of the mean matrix.

Rows are leaderboard rows, ``method (scope)``. Allocation controls are left out (a shuffled mask overlaps its source
by about the density, by construction). Two masks of one seed that agree everywhere have index 1; two independent
random masks of density ``d`` about ``d / (2 - d)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prunebench.core.atomic_files import atomic_file, atomic_write_text
from prunebench.core.errors import UsageError
from prunebench.leaderboard.controls_table import control_of
from prunebench.leaderboard.record_reader import (
    DENSE,
    group,
    is_pattern,
    load_records,
    row_group,
    row_label,
    variant,
)
from prunebench.leaderboard.sections import slug
from prunebench.leaderboard.setups import label_setups
from prunebench.pruning.saved_masks import MissingMask, read_mask

MEAN = "mean"


def jaccard(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """``|A ∩ B| / |A ∪ B|`` of two masks over all their layers (1 where both keep nothing)."""
    if list(a) != list(b):
        raise UsageError("the two masks cover different layers; compare runs of one model and prunable set")
    both = sum(int(np.count_nonzero(a[n] & b[n])) for n in a)
    either = sum(int(np.count_nonzero(a[n] | b[n])) for n in a)
    return both / either if either else 1.0


def overlap_frame(masks: dict[str, dict[Any, dict[str, np.ndarray]]]) -> pd.DataFrame:
    """Tidy Jaccard indices: ``masks`` maps row label -> seed -> mask; every ordered pair of rows per seed they
    share, then the mean over those seeds (seed ``mean``, with ``n`` the seed count)."""
    labels = list(masks)
    rows = []
    for a in labels:
        for b in labels:
            seeds = sorted(set(masks[a]) & set(masks[b]), key=str)
            values = [jaccard(masks[a][s], masks[b][s]) for s in seeds]
            rows += [
                {"seed": str(s), "a": a, "b": b, "jaccard": v, "n": 1}
                for s, v in zip(seeds, values, strict=True)
            ]
            if values:
                rows.append(
                    {"seed": MEAN, "a": a, "b": b, "jaccard": float(np.mean(values)), "n": len(values)}
                )
    return pd.DataFrame(rows, columns=["seed", "a", "b", "jaccard", "n"])


def matrix(frame: pd.DataFrame, seed: str, labels: Sequence[str]) -> pd.DataFrame:
    """The square matrix of one seed (or ``mean``), rows and columns in ``labels`` order (NaN where not shared)."""
    chosen = frame[frame["seed"] == seed]
    return chosen.pivot(index="a", columns="b", values="jaccard").reindex(index=labels, columns=labels)


def _markdown(table: pd.DataFrame) -> str:
    header = "| | " + " | ".join(table.columns) + " |"
    lines = [header, "|---|" + "---:|" * len(table.columns)]
    for label, values in table.iterrows():
        lines.append(f"| {label} | " + " | ".join("" if np.isnan(v) else f"{v:.3f}" for v in values) + " |")
    return "\n".join(lines)


def _heatmap(table: pd.DataFrame, title: str, paths: list[Path]) -> None:
    """The mean matrix as an annotated heat map, labels readable at any row count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.55 * len(table) + 2.5)
    figure, axes = plt.subplots(figsize=(size + 1.2, size))
    image = axes.imshow(table.to_numpy(dtype=float), vmin=0.0, vmax=1.0, cmap="viridis")
    axes.set_xticks(range(len(table.columns)), table.columns, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(len(table.index)), table.index, fontsize=8)
    if len(table) <= 16:
        for i, row in enumerate(table.to_numpy(dtype=float)):
            for j, value in enumerate(row):
                if not np.isnan(value):
                    colour = "black" if value > 0.6 else "white"
                    axes.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
    figure.colorbar(image, ax=axes, label="Jaccard index of the kept weights")
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    for path in paths:
        with atomic_file(path, "wb") as stream:
            figure.savefig(stream, format=path.suffix[1:], dpi=150)
    plt.close(figure)


def write_overlaps(
    directories: Sequence[Path], out: Path, sparsity: float, formats: Sequence[str] = ("png",)
) -> list[Path]:
    """Write the overlap tables and heat maps of ``directories``' runs at ``sparsity`` into ``out``; return the
    paths written. A run whose mask is missing is left out with a warning line in the Markdown."""
    loaded = load_records(directories)
    label_setups(loaded)  # runs that differ in more than their seed are rows of their own
    records = [
        r
        for r in loaded
        if r["status"] == "ok" and r["method"] != DENSE and not control_of(r) and r["sparsity"] == sparsity
    ]
    if not records:
        present = sorted({float(r["sparsity"]) for r in loaded if r["method"] != DENSE})
        raise UsageError(
            f"no finished pruned runs at sparsity {sparsity:g} in {', '.join(map(str, directories))}; "
            f"sparsities present: {', '.join(f'{s:g}' for s in present) or 'none'}"
        )
    written = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["model"]), []).append(r)
    for (dataset, model), runs in sorted(groups.items()):
        masks: dict[str, dict[Any, dict[str, np.ndarray]]] = {}
        missing = []
        for r in sorted(runs, key=lambda r: (r["method"], variant(r), r["scope"], r["seed"])):
            try:
                mask = read_mask(Path(r["_path"]).parent.parent, r["run_id"])
            except MissingMask:  # a damaged mask is an error naming its file, not a gap
                missing.append(r["run_id"])
                continue
            name = group(r)
            label = row_label(r["method"], variant(r), r["scope"], row_group(name))
            label += f" {name}" if is_pattern(name) else ""  # an N:M run beside the unstructured ones
            masks.setdefault(label, {})[r["seed"]] = mask
        if missing:
            warnings.warn(
                f"{dataset} / {model}: {len(missing)} run(s) have no saved mask (recorded before masks were "
                f"saved), e.g. {missing[0]}; left out",
                stacklevel=2,
            )
        if not masks:
            continue
        frame = overlap_frame(masks)
        labels = list(masks)
        stem = f"masks_{slug(dataset)}_{slug(model)}_s{sparsity:g}"

        def file(extension: str, stem: str = stem) -> Path:
            return out / f"{stem}.{extension}"

        title = f"Mask overlap (Jaccard) at sparsity {sparsity:g}, {dataset} / {model}"
        seeds = sorted({s for s in frame["seed"] if s != MEAN}, key=lambda s: (len(s), s))
        parts = [
            f"# {title}",
            "Jaccard index |A ∩ B| / |A ∪ B| of the weights two rows keep, over all prunable weights. "
            f"Mean over the seeds both rows have (seeds: {', '.join(seeds)}); each seed's matrix follows.",
            "## Mean over seeds",
            _markdown(matrix(frame, MEAN, labels)),
        ]
        parts += [
            item for seed in seeds for item in (f"## Seed {seed}", _markdown(matrix(frame, seed, labels)))
        ]
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(file("csv"), frame.to_csv(index=False))
        atomic_write_text(file("md"), "\n\n".join(parts) + "\n")
        written += [file("csv"), file("md")]
        figures = [file(f) for f in formats]
        if figures:
            _heatmap(matrix(frame, MEAN, labels), title, figures)
            written += figures
    return written
