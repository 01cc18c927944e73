"""Parsing the command line's choices and expanding them into the grid of runs, validated before any work starts."""

from __future__ import annotations

from collections.abc import Sequence

from prunebench.config import RunConfig
from prunebench.errors import UsageError, unknown
from prunebench.methods.registry import SCOPES, MethodSpec, all_methods, get_method
from prunebench.presets import Preset


def parse_sparsities(text: str) -> list[float]:
    """``"0.9,0.95,0.99"`` -> ``[0.9, 0.95, 0.99]``; each strictly between 0 and 1."""
    values = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            raise UsageError(
                f"--sparsity takes comma-separated numbers in (0, 1), e.g. 0.9,0.95; got {text!r}"
            ) from None
        if not 0.0 < value < 1.0:
            raise UsageError(f"sparsity must lie in (0, 1) (fraction of weights removed); got {item.strip()}")
        values.append(value)
    return sorted(set(values))


def parse_methods(text: str) -> list[MethodSpec]:
    """``all`` or a comma-separated list of registered method names."""
    if text.strip() == "all":
        return [spec for spec in all_methods() if spec.schedule != "dense"]
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise UsageError("--methods is empty; give `all` or method names")
    return [get_method(name) for name in names if name != "dense"]


def parse_scopes(text: str) -> list[str]:
    """``all`` or a comma-separated list of scopes."""
    if text.strip() == "all":
        return list(SCOPES)
    scopes = [scope.strip() for scope in text.split(",") if scope.strip()]
    for scope in scopes:
        if scope not in SCOPES:
            raise unknown("scope", scope, SCOPES)
    return scopes


def expand_grid(
    preset: Preset,
    methods: Sequence[MethodSpec],
    scopes: Sequence[str],
    sparsities: Sequence[float],
    seeds: int,
    *,
    explicit_methods: bool = False,
) -> list[RunConfig]:
    """Every run of the grid: the dense baseline once per seed, then each method in each requested scope it supports.

    A method named explicitly that supports none of the requested scopes is an error; with ``--methods all`` it is
    left out quietly.
    """
    if seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {seeds}")
    plan: list[tuple[str, str]] = []
    for spec in methods:
        chosen = [s for s in spec.scopes if s in scopes]
        if not chosen and explicit_methods:
            raise UsageError(
                f"method {spec.name} supports scopes {', '.join(spec.scopes)}; none of {', '.join(scopes)} was asked for"
            )
        plan.extend((spec.name, scope) for scope in chosen)
    configs = []
    for seed in range(seeds):
        configs.append(RunConfig(preset, "dense", "none", 0.0, seed))
        for sparsity in sparsities:
            configs.extend(RunConfig(preset, method, scope, sparsity, seed) for method, scope in plan)
    return configs
