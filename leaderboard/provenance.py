"""Where the numbers come from: budget, hardware, library versions, the grid present and the commands that rerun it.

Read from the records alone (no registry, no torch): a record carries its preset's name and epochs, and its
hyperparameters, so the commands set the variants present with ``--set``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from itertools import product
from typing import Any

from prunebench.leaderboard.records import DENSE, preset_epochs, variant


def _distinct(values: Iterable[Any]) -> list[str]:
    """The distinct non-empty values, as strings, in sorted order."""
    return sorted({str(v) for v in values if v not in (None, "")})


def budget(records: list[dict[str, Any]]) -> str:
    """The recipe's weight-update budget of the runs, e.g. ``4 epochs`` (every distinct value when they differ);
    runs that spend a multiple of it (iterative pruning) are marked in the tables instead
    (:mod:`prunebench.leaderboard.budgets`)."""
    from prunebench.leaderboard.budgets import recipe_budget

    return " / ".join(f"{e} epochs" for e in _distinct(map(recipe_budget, records))) or "unknown"


def hardware(records: list[dict[str, Any]]) -> str:
    """The devices the runs ran on."""
    return "; ".join(_distinct(r.get("device") for r in records)) or "unknown"


def versions(records: list[dict[str, Any]]) -> str:
    """Library versions, e.g. ``python 3.11.7, torch 2.5.1`` (every distinct version of a library)."""
    found: dict[str, set[str]] = {}
    for record in records:
        for library, version in (record.get("versions") or {}).items():
            found.setdefault(library, set()).add(str(version))
    return ", ".join(f"{lib} {'/'.join(sorted(found[lib]))}" for lib in sorted(found)) or "unknown"


def grid(records: list[dict[str, Any]]) -> str:
    """What was run: pruned runs, rows, sparsities and seeds per cell; the dense runs."""
    pruned = [r for r in records if r["method"] != DENSE]
    cells: dict[tuple, int] = {}
    for r in pruned:
        key = (r["method"], variant(r), r["scope"], float(r["sparsity"]))
        cells[key] = cells.get(key, 0) + 1
    rows = {key[:3] for key in cells}
    sparsities = {key[3] for key in cells}
    counts = sorted(set(cells.values()))
    seeds = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    possible = len(rows) * len(sparsities)
    shape = "complete" if len(cells) == possible else f"{len(cells)} of {possible} cells"
    dense = sum(r["method"] == DENSE for r in records)
    return (
        f"{len(pruned)} pruned runs: {len(rows)} rows × {len(sparsities)} sparsities ({shape}), "
        f"{seeds} seeds per cell; {dense} dense runs"
    )


def _seeds(seeds: set[int]) -> str:
    """``--seeds N`` for seeds 0..N-1, else the seeds present as ranges and a list (``--seeds 0-2,5``)."""
    ordered = sorted(seeds)
    if ordered == list(range(len(ordered))):
        return f"--seeds {len(ordered)}"
    runs: list[list[int]] = []
    for seed in ordered:
        if runs and seed == runs[-1][-1] + 1:
            runs[-1].append(seed)
        else:
            runs.append([seed])
    return "--seeds " + ",".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ",".join(map(str, r)) for r in runs)


def _settings(record: dict[str, Any]) -> str:
    """``--set method.name=value`` for each hyperparameter in the run's variant label (none for the defaults)."""
    hparams = record.get("hparams") or {}
    names = _named_in(variant(record), tuple(hparams))
    return "".join(f" --set {record['method']}.{name}={_value(hparams[name])}" for name in names)


@functools.cache
def _named_in(label: str, names: tuple[str, ...]) -> list[str]:
    """The hyperparameters of ``names`` that a variant label sets (worked out once per label)."""
    return [name for name in names if re.search(rf"(^|,){re.escape(name)}=", label)]


def _value(value: Any) -> str:
    """A hyperparameter value as ``--set`` reads it: ``0.5``, ``true``, ``none``, ``(1,28,28)``."""
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return "(" + ",".join(_value(v) for v in value) + ")"
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _blocks(runs: list[dict[str, Any]]) -> dict[tuple, list[str]]:
    """The pruned runs as rectangular blocks (scopes × sparsities × seeds, and the variant's settings), each with
    the methods that ran it.

    A method variant whose runs fill the product of its scopes, sparsities and seeds is one block; otherwise each of
    its scopes is, and failing that each (scope, sparsity).
    """
    by_method: dict[tuple[str, str], set[tuple]] = {}
    for r in runs:
        cells = by_method.setdefault((r["method"], _settings(r)), set())
        cells.add((r["scope"], float(r["sparsity"]), int(r["seed"])))
    blocks: dict[tuple, list[str]] = {}
    for (method, settings), cells in sorted(by_method.items()):
        for part in _rectangles(cells):
            blocks.setdefault((*part, settings), []).append(method)
    return blocks


def _rectangles(cells: set[tuple]) -> list[tuple]:
    """``cells`` (scope, sparsity, seed) as products of (scopes, sparsities, seeds), split by scope then sparsity."""

    def axes(found: set[tuple]) -> tuple:
        return tuple(tuple(sorted({cell[i] for cell in found})) for i in range(3))

    whole = axes(cells)
    if len(cells) == len(list(product(*whole))):
        return [whole]
    parts = []
    for scope in whole[0]:
        of_scope = {c for c in cells if c[0] == scope}
        scoped = axes(of_scope)
        if len(of_scope) == len(list(product(*scoped))):
            parts.append(scoped)
        else:
            parts += [axes({c for c in of_scope if c[1] == s}) for s in scoped[1]]
    return parts


def commands(records: list[dict[str, Any]]) -> list[str]:
    """``bench run`` commands that together rerun exactly the grid present, per preset (with its epochs).

    The dense baseline runs with every command, once per seed; a method variant gets its ``--set`` settings.
    """
    lines = []
    for preset in _distinct(r.get("preset") for r in records):
        runs = [r for r in records if r.get("preset") == preset]
        epochs = _distinct(map(preset_epochs, runs))
        tail = f" --epochs {epochs[0]}" if len(epochs) == 1 else ""
        pruned = [r for r in runs if r["method"] != DENSE]
        if not pruned:
            lines.append(
                f"bench run --preset {preset} --methods dense {_seeds({int(r['seed']) for r in runs})}{tail}"
            )
        for (scopes, sparsities, seeds, settings), methods in _blocks(pruned).items():
            lines.append(
                f"bench run --preset {preset} --methods {','.join(methods)} --scopes {','.join(scopes)} "
                f"--sparsity {','.join(f'{s:g}' for s in sparsities)} {_seeds(set(seeds))}{tail}{settings}"
            )
    return lines
