"""Where the numbers come from: budget, hardware (with a warning for cells that mix machines), library versions, the
grid present and the commands that rerun it.

Read from the records (no torch): a record carries its preset's name, its recipe, prunable-set options and
hyperparameters, so each command sets what its runs changed: ``--epochs``, ``--set recipe.FIELD=VALUE`` for the recipe
fields that differ from the registered preset's (from each other, for a preset not registered here),
``--keep-first-dense`` and the like, and ``--set METHOD.NAME=VALUE`` for the variants present.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from itertools import product
from typing import Any

from prunebench.leaderboard.budget_marks import recipe_budget
from prunebench.leaderboard.machine_mix import mixed_cells
from prunebench.leaderboard.record_reader import DENSE, group, is_pattern, variant
from prunebench.leaderboard.setups import MISSING, PRUNABLE, common_fields, preset_fields, text


def _distinct(values: Iterable[Any]) -> list[str]:
    """The distinct non-empty values, as strings, in sorted order."""
    return sorted({str(v) for v in values if v not in (None, "")})


def budget(records: list[dict[str, Any]]) -> str:
    """The recipe's weight-update budget of the runs, e.g. ``4 epochs`` (every distinct value when they differ);
    runs that spend a multiple of it (iterative pruning) are marked in the tables instead
    (:mod:`prunebench.leaderboard.budget_marks`)."""
    return " / ".join(f"{e} epochs" for e in _distinct(map(recipe_budget, records))) or "unknown"


SHOWN_MIXED_CELLS = 3
"""Cells a machine-mix warning names (then how many more)."""


def hardware(records: list[dict[str, Any]]) -> str:
    """The devices the runs ran on, then the machines under them where records name them (CPU model and
    capability, CUDA device, driver, runtime and cuDNN), then :func:`machine_warning` where cells mix machines."""
    found = "; ".join(_distinct(r.get("device") for r in records)) or "unknown"
    machines = _distinct(map(_machine, records))
    if machines:
        found += f" ({'; '.join(machines)})"
    warning = machine_warning(records)
    return f"{found}. {warning}" if warning else found


def _machine(record: dict[str, Any]) -> str | None:
    """``AMD EPYC, AVX512`` (with ``, NVIDIA H100, driver 550.54, CUDA 12.4, cuDNN 90100`` on a GPU); ``None`` for a
    record without ``machine``."""
    machine = record.get("machine")
    if not isinstance(machine, dict):
        return None
    parts = [f"{machine.get('cpu', 'unknown CPU')}, {machine.get('cpu_capability', 'unknown capability')}"]
    if machine.get("cuda_device"):
        parts.append(str(machine["cuda_device"]))
        labels = (("cuda_driver", "driver"), ("cuda_runtime", "CUDA"), ("cudnn", "cuDNN"))
        parts += [f"{label} {machine[key]}" for key, label in labels if machine.get(key) is not None]
    return ", ".join(parts)


def machine_warning(records: list[dict[str, Any]]) -> str | None:
    """A warning naming the cells whose seeds ran on different machines (:func:`~prunebench.leaderboard.
    machine_mix.mixed_cells`), whose results are not bit-identical; ``None`` when no cell mixes them."""
    mixed = mixed_cells(records)
    if not mixed:
        return None
    facets: dict[str, set[str]] = {}
    for cell in mixed:
        for label, values in cell.differences:
            facets.setdefault(label, set()).update(values)
    what = "; ".join(f"{label} {' / '.join(sorted(values))}" for label, values in facets.items())
    named = ", ".join(cell.label for cell in mixed[:SHOWN_MIXED_CELLS])
    more = f" and {len(mixed) - SHOWN_MIXED_CELLS} more" if len(mixed) > SHOWN_MIXED_CELLS else ""
    cells = "1 cell mixes" if len(mixed) == 1 else f"{len(mixed)} cells mix"
    return (
        f"Warning: {cells} records of different machines or engines ({what}), whose results differ beyond the last bits "
        f"(docs/results.md, Reproducibility): {named}{more}"
    )


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
    dense = sum(r["method"] == DENSE for r in records)
    if not pruned:
        return f"no pruned runs; {dense} dense runs"
    cells: dict[tuple, int] = {}
    for r in pruned:
        key = (r["method"], variant(r), r["scope"], group(r), float(r["sparsity"]))
        cells[key] = cells.get(key, 0) + 1
    rows = {key[:4] for key in cells}
    sparsities = {key[4] for key in cells}
    counts = sorted(set(cells.values()))
    seeds = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    possible = len(rows) * len(sparsities)
    shape = "complete" if len(cells) == possible else f"{len(cells)} of {possible} cells"
    return (
        f"{len(pruned)} pruned runs: {len(rows)} rows × {len(sparsities)} sparsities ({shape}), "
        f"{seeds} seeds per cell; {dense} dense runs"
    )


def _seeds(seeds: set[int]) -> str:
    """``--seeds N`` for seeds 0..N-1, else the seeds present as ranges and a list (``--seeds 0-2,5``; a single seed
    ``k`` as ``--seeds k-k``, since ``--seeds k`` means seeds 0..k-1)."""
    ordered = sorted(seeds)
    if ordered == list(range(len(ordered))):
        return f"--seeds {len(ordered)}"
    runs: list[list[int]] = []
    for seed in ordered:
        if runs and seed == runs[-1][-1] + 1:
            runs[-1].append(seed)
        else:
            runs.append([seed])
    listed = ",".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ",".join(map(str, r)) for r in runs)
    return f"--seeds {listed}-{listed}" if listed.isdigit() else f"--seeds {listed}"  # one seed: not a count


def _settings(record: dict[str, Any], varying: set[str]) -> str:
    """``--set method.name=value`` for each hyperparameter in the run's own variant label and each of ``varying``
    (those that differ between the method's runs of one variant label, as where a default changed between them);
    none for the defaults."""
    hparams = record.get("hparams") or {}
    named = _named_in(str(record.get("variant") or ""), tuple(hparams))
    names = [name for name in hparams if name in named or name in varying]
    return "".join(f" --set {record['method']}.{name}={text(hparams[name])}" for name in names)


@functools.cache
def _named_in(label: str, names: tuple[str, ...]) -> list[str]:
    """The hyperparameters of ``names`` that a variant label sets (worked out once per label)."""
    return [name for name in names if re.search(rf"(^|,){re.escape(name)}=", label)]


def _varying(fields: Iterable[Mapping[str, Any]]) -> set[str]:
    """The names whose values differ between ``fields`` (a name some lack counts as differing)."""
    values: dict[str, set[Any]] = {}
    counts: dict[str, int] = {}
    rows = 0
    for row in {id(row): row for row in fields}.values():  # a grid's runs share their common fields
        rows += 1
        for name, value in row.items():
            values.setdefault(name, set()).add(json.dumps(value) if isinstance(value, list | dict) else value)
            counts[name] = counts.get(name, 0) + 1
    return {name for name, found in values.items() if len(found) > 1 or counts[name] < rows}


def _setup_flags(record: dict[str, Any], fields: Mapping[str, Any], varying: set[str]) -> str:
    """The flags that give ``record``'s data, model, recipe and prunable-set options (``fields``, its
    :func:`~prunebench.leaderboard.setups.common_fields`): ``--epochs``, ``--dataset`` / ``--model`` where they are
    not the preset's, ``--set recipe.FIELD=VALUE`` for every recipe field that differs from the preset's (of
    ``varying``, the fields that differ between the runs, for a preset not registered here), ``--keep-first-dense``
    and the like."""
    epochs = fields.get("epochs")
    flags = f" --epochs {epochs}" if epochs is not None else ""
    preset = preset_fields(str(record.get("preset")), epochs)
    if preset is not None:
        flags += "".join(
            f" --{part} {record[part]}" for part in ("dataset", "model") if record[part] != preset[part]
        )
    for name, value in fields.items():
        if name.startswith("recipe.") and (
            value != preset.get(name, MISSING) if preset is not None else name in varying
        ):
            flags += f" --set {name}={text(value)}"
        elif name.startswith(PRUNABLE) and value is True:
            flags += f" --{name[len(PRUNABLE) :].replace('_', '-')}"
    return flags


def _blocks(runs: list[dict[str, Any]]) -> dict[tuple, list[str]]:
    """The pruned runs as rectangular blocks (scopes × sparsities × seeds, and the variant's settings), each with
    the methods that ran it.

    A method variant whose runs fill the product of its scopes, sparsities and seeds is one block; otherwise each of
    its scopes is, and failing that each (scope, sparsity).
    """
    hparams: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        hparams.setdefault((r["method"], str(r.get("variant") or "")), []).append(r.get("hparams") or {})
    varying = {key: _varying(found) for key, found in hparams.items()}
    by_method: dict[tuple[str, str], set[tuple]] = {}
    for r in runs:
        settings = _settings(r, varying[(r["method"], str(r.get("variant") or ""))])
        cells = by_method.setdefault((r["method"], settings), set())
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
    """``bench run`` commands that together rerun exactly the grid present, per preset and setup (epochs, recipe,
    prunable-set options: :func:`_setup_flags`).

    The dense baseline runs with every command, once per seed; a dense-only command reruns the dense runs of seeds
    that no pruned run of their setup has. A method variant gets its ``--set`` settings.
    """
    lines = []
    for preset in _distinct(r.get("preset") for r in records):
        runs = [r for r in records if r.get("preset") == preset]
        fields = [common_fields(r) for r in runs]
        varying = _varying(fields)
        flags: dict[tuple, str] = {}  # by data, model and (shared) common fields: worked out once each
        by_setup: dict[str, list[dict[str, Any]]] = {}
        for r, found in zip(runs, fields, strict=True):
            key = (r["dataset"], r["model"], id(found))
            if key not in flags:
                flags[key] = _setup_flags(r, found, varying)
            by_setup.setdefault(flags[key], []).append(r)
        for tail, found in sorted(by_setup.items()):
            pruned = [r for r in found if r["method"] != DENSE]
            covered = {int(r["seed"]) for r in pruned}
            dense = {int(r["seed"]) for r in found if r["method"] == DENSE} - covered
            if dense:
                lines.append(f"bench run --preset {preset} --methods dense {_seeds(dense)}{tail}")
            for kind in _distinct(group(r) for r in pruned):
                of_group = [r for r in pruned if group(r) == kind]
                for (scopes, sparsities, seeds, settings), methods in _blocks(of_group).items():
                    targets = kind if is_pattern(kind) else ",".join(f"{s:g}" for s in sparsities)
                    groups = " --groups per_output" if kind == "per_output" else ""
                    lines.append(
                        f"bench run --preset {preset} --methods {','.join(methods)} --scopes {','.join(scopes)}"
                        f"{groups} --sparsity {targets} {_seeds(set(seeds))}{tail}{settings}"
                    )
    return lines
