"""Where the numbers come from: budget, hardware, library versions and the command that reproduces them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prunebench.errors import UsageError
from prunebench.leaderboard.records import DENSE


def _distinct(values: Iterable[Any]) -> list[str]:
    """The distinct non-empty values, as strings, in sorted order."""
    return sorted({str(v) for v in values if v not in (None, "")})


def budget(records: list[dict[str, Any]]) -> str:
    """The weight-update budget of the runs, e.g. ``4 epochs`` (every distinct value when they differ)."""
    epochs = _distinct((r.get("epochs") or {}).get("budget") for r in records)
    return " / ".join(f"{e} epochs" for e in epochs) or "unknown"


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


def _recipe_epochs(record: dict[str, Any]) -> Any:
    """The budget of the run's recipe (``config.recipe``; ``config.preset`` in format-1 records)."""
    config = record.get("config") or {}
    recipe = config.get("recipe") or (config.get("preset") if isinstance(config.get("preset"), dict) else {})
    return recipe.get("epochs")


def _registered_epochs(preset: str) -> int | None:
    """The budget of the preset registered under ``preset`` here; ``None`` when there is none."""
    from prunebench.presets import get_preset

    try:
        return get_preset(preset).recipe.epochs
    except UsageError:
        return None


def commands(records: list[dict[str, Any]]) -> list[str]:
    """The ``bench run`` command of each preset among ``records`` (methods, scopes, sparsities, seeds as run).

    Scopes are those of any method, so the command may add a (method, scope) pair that was not run.
    ``--epochs`` is added where the runs' budget is not the one the preset has here (or it is not registered).
    """
    lines = []
    for preset in _distinct(r.get("preset") for r in records):
        runs = [r for r in records if r.get("preset") == preset]
        pruned = [r for r in runs if r["method"] != DENSE]
        methods = ",".join(_distinct(r["method"] for r in pruned))
        scopes = ",".join(_distinct(r["scope"] for r in pruned))
        sparsities = ",".join(f"{s:g}" for s in sorted({float(r["sparsity"]) for r in pruned}))
        seeds = max(int(r["seed"]) for r in runs) + 1
        parts = [f"bench run --preset {preset}"]
        if methods:
            parts.append(f"--methods {methods} --scopes {scopes}")
        if sparsities:
            parts.append(f"--sparsity {sparsities}")
        parts.append(f"--seeds {seeds}")
        epochs = _distinct(_recipe_epochs(r) for r in runs)
        if len(epochs) == 1 and epochs[0] != str(_registered_epochs(preset)):
            parts.append(f"--epochs {epochs[0]}")
        lines.append(" ".join(parts))
    return lines
