"""The model registry itself, without torch: what ``bench list models`` reads.

The package's own models (:mod:`prunebench.models`, :mod:`prunebench.cifar_models`, :mod:`prunebench.vit`) are
read from the ``@register_model`` decorators in their modules' source (:mod:`prunebench.declarations`), so that
listing them imports neither those modules nor torch. A model's module is imported when the model is asked for by
name (:func:`prunebench.models.get_model`), and its decorator then checks that it registers what was read. A module
whose registrations cannot be read so is imported on first use of the registry. Models from other packages register
through the ``prunebench.models`` entry-point group.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prunebench.declarations import read_declarations
from prunebench.registry import Deferred, Registry

if TYPE_CHECKING:
    from torch import nn

ModelBuilder = Callable[[tuple[int, ...], int], "nn.Module"]


@dataclass(frozen=True)
class ModelSpec:
    """A model: how to build it, what it is, and its version (part of a run's id; bump it when the model changes)."""

    name: str
    build: ModelBuilder
    summary: str
    source: str
    version: str = "1"


BUILTIN_MODULES = ("models", "cifar_models", "vit")
"""The modules of the package that register models."""


def _declare_builtin_models() -> None:
    for module in BUILTIN_MODULES:
        _declare(Path(__file__).with_name(f"{module}.py"), f"prunebench.{module}")


def _declare(path: Path, module: str) -> None:
    """Declare the models of ``module`` (at ``path``) from its source; import it when that cannot be read so."""
    found = read_declarations(path, "register_model", alias=None, on=ast.FunctionDef)
    if found is None:
        importlib.import_module(module)
        return
    for declared in found.registrations:
        name = declared.name
        MODELS.declare(name, _spec(name, Deferred(MODELS, name, "build"), **declared.arguments), module)


MODELS: Registry[ModelSpec] = Registry("model", "prunebench.models", _declare_builtin_models)


def _spec(name: str, build: ModelBuilder, *, summary: str, source: str, version: str = "1") -> ModelSpec:
    return ModelSpec(name, build, summary, source, version)


def register_model(
    name: str, *, summary: str, source: str, version: str = "1"
) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register ``build(input_shape, num_classes) -> nn.Module`` under ``name``.

    Write the arguments as literals or module-level constants holding literals, so that the registry can read them
    without importing the module.
    """

    def decorate(build: ModelBuilder) -> ModelBuilder:
        MODELS.add(
            name, _spec(name, build, summary=summary, source=source, version=version), module=build.__module__
        )
        return build

    return decorate


def all_models() -> list[ModelSpec]:
    """Every registered model; the package's own as declared in their source (their modules not imported)."""
    return MODELS.entries()
