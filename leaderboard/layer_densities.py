"""Per-layer densities: what each (method, variant, scope) kept, and the uniform and ERK allocations of the budget.

The reference allocations come from :func:`prunebench.pruning.keep_budget.layer_densities` on the layer shapes the records hold,
the very arithmetic every run's allocation goes through (no torch needed).
"""

from __future__ import annotations

from typing import Any

from prunebench.leaderboard.record_reader import DENSE, group, is_pattern, layers, variant
from prunebench.pruning.keep_budget import layer_densities

REFERENCES = ("uniform", "erk")
"""The allocations drawn for reference beside every learned or scored one."""
GLOBAL_REFERENCE = "magnitude"
"""The criterion whose global allocation the learned ones are compared with, where it ran (else the first one that
ran globally): one threshold on trained weight magnitudes, the classic global allocation."""
SHORT_NAME = 20
"""Layer names longer than this are shortened on plot axes."""


def achieved(records: list[dict[str, Any]], sparsity: float) -> dict[tuple[str, str, str], dict[str, float]]:
    """Per (method, variant, scope), the mean density of each layer over its finished runs at ``sparsity``.

    The scope alone decides a layer's count (the comparison group only where it goes inside the layer), so the runs
    of ``per_layer`` and ``per_output`` share a profile; N:M runs, whose every layer is N/M dense by construction,
    are left out."""
    sums: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    for record in records:
        if not _pruned_at(record, sparsity):
            continue
        found = sums.setdefault((record["method"], variant(record), record["scope"]), {})
        for layer in layers(record):
            found.setdefault(layer.name, []).append(layer.density)
    return {
        key: {name: sum(values) / len(values) for name, values in found.items()}
        for key, found in sorted(sums.items())
        if found
    }


def any_achieved(records: list[dict[str, Any]], sparsity: float) -> bool:
    """Whether :func:`achieved` has a profile at ``sparsity``: a finished pruned run there recorded its layers."""
    return any(_pruned_at(record, sparsity) and layers(record) for record in records)


def _pruned_at(record: dict[str, Any], sparsity: float) -> bool:
    """Whether ``record`` is a finished pruned run of the sparsity column ``sparsity`` (not of an N:M column)."""
    return (
        record["status"] == "ok"
        and record["method"] != DENSE
        and float(record["sparsity"]) == sparsity
        and not is_pattern(group(record))
    )


def shapes(records: list[dict[str, Any]], sparsity: float) -> dict[str, tuple[int, ...]]:
    """The prunable layers' shapes in module order, from the first finished pruned run at ``sparsity``."""
    for record in records:
        if _pruned_at(record, sparsity):
            found = {layer.name: layer.shape for layer in layers(record)}
            if found and all(found.values()):
                return found
    return {}


def references(records: list[dict[str, Any]], sparsity: float) -> dict[str, dict[str, float]]:
    """The uniform and ERK allocations of the budget at ``sparsity`` over the records' layers (empty if unknown)."""
    found = shapes(records, sparsity)
    if not found:
        return {}
    return {scope: layer_densities(found, sparsity, scope) for scope in REFERENCES}


def global_reference(profiles: dict[tuple[str, str, str], dict[str, float]]) -> tuple[str, str, str] | None:
    """The global allocation the learned ones are compared with: ``magnitude``'s, else the first global one."""
    candidates = [key for key in profiles if key[2] == "global"]
    preferred = [key for key in candidates if key[:2] == (GLOBAL_REFERENCE, "")]
    return (preferred or candidates or [None])[0]


def layer_label(name: str) -> str:
    """A parameter name as the model's layer name: ``features.0.weight`` -> ``features.0``."""
    return name.removesuffix(".weight") or name


def short_labels(names: list[str], limit: int = SHORT_NAME) -> list[str]:
    """Layer labels for an axis: long ones keep their last dotted parts behind ``…``, unless that makes two equal."""
    full = [layer_label(n) for n in names]
    short = []
    for label in full:
        if len(label) <= limit:
            short.append(label)
            continue
        parts = label.split(".")
        kept = parts[-1]
        for part in reversed(parts[:-1]):
            if len(part) + 1 + len(kept) + 1 > limit:
                break
            kept = f"{part}.{kept}"
        short.append(f"…{kept}")
    return short if len(set(short)) == len(short) else full
