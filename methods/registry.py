"""The method registry: one decorator, one place that knows every method.

A method is a class registered with :func:`register`, which declares *when* it prunes (its schedule) and *how the
global budget may be split across layers* (the scopes it supports). The harness owns everything else: data, training,
mask application, accounting and records.

Methods from other packages register through the ``prunebench.methods`` entry-point group: each entry names a module
that is imported on first use of the registry, and that module calls :func:`register`.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prunebench.errors import unknown

if TYPE_CHECKING:
    from prunebench.methods.base import Method

SCHEDULES = ("dense", "at_init", "after_training", "during_training")
"""When a method prunes: never (the baseline), once at initialization, after dense training, or while training."""

SCOPES = ("global", "uniform", "uniform_plus", "erk", "learned")
"""How a global budget is split across layers. ``learned`` means the method learns the allocation itself."""


@dataclass(frozen=True)
class MethodSpec:
    """What the registry knows of one method."""

    name: str
    cls: type[Method]
    schedule: str
    scopes: tuple[str, ...]
    paper: str
    summary: str

    def build(self, **hparams: Any) -> Method:
        """An instance with the paper's default hyperparameters, overridden by ``hparams``."""
        return self.cls(**hparams)


_REGISTRY: dict[str, MethodSpec] = {}
_LOADED = False


def register(
    name: str,
    *,
    schedule: str,
    scopes: tuple[str, ...],
    paper: str,
):
    """Class decorator that registers a pruning method under ``name``.

    ``schedule`` is one of :data:`SCHEDULES`; ``scopes`` a subset of :data:`SCOPES` (empty for the dense baseline);
    ``paper`` the citation shown by ``bench list methods``. The first line of the class docstring is the one-line summary.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule {schedule!r} is not one of {SCHEDULES}")
    bad = [s for s in scopes if s not in SCOPES]
    if bad:
        raise ValueError(f"scopes {bad} are not among {SCOPES}")

    def decorate(cls: type[Method]) -> type[Method]:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"method {name!r} is already registered by {_REGISTRY[name].cls.__module__}")
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        _REGISTRY[name] = MethodSpec(name, cls, schedule, tuple(scopes), paper, summary)
        cls.name = name
        return cls

    return decorate


def _load_all() -> None:
    """Import every module of this package and every entry point, so that their decorators run."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    package = importlib.import_module("prunebench.methods")
    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in ("registry", "base"):
            importlib.import_module(f"prunebench.methods.{module.name}")
    from importlib.metadata import entry_points

    for entry in entry_points(group="prunebench.methods"):
        importlib.import_module(entry.value)


def get_method(name: str) -> MethodSpec:
    """The registered method ``name``; a :class:`~prunebench.errors.UsageError` listing the registry otherwise."""
    _load_all()
    if name not in _REGISTRY:
        raise unknown("method", name, list(_REGISTRY))
    return _REGISTRY[name]


def all_methods() -> list[MethodSpec]:
    """Every registered method, the dense baseline first, then by name."""
    _load_all()
    return sorted(_REGISTRY.values(), key=lambda spec: (spec.schedule != "dense", spec.name))
