"""The model registry itself, without torch: what ``bench list models`` reads.

The package's own models (:mod:`prunebench.zoo.model_zoo`, :mod:`prunebench.zoo.cifar_models`, :mod:`prunebench.zoo.vit`,
:mod:`prunebench.zoo.gpt`) are
declared from the registry index (:mod:`prunebench.catalog.registry_index`), so that listing them imports neither those
modules nor torch. A model's module is imported when the model is asked for by name
(:func:`prunebench.zoo.model_zoo.get_model`), and its decorator then checks that it registers what the index states.
Models from other packages register through the ``prunebench.models`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prunebench.catalog.registry_index import Record, declare_modules
from prunebench.core.extension_registry import Deferred, Registry

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


BUILTIN_MODULES = (
    "prunebench.zoo.model_zoo",
    "prunebench.zoo.cifar_models",
    "prunebench.zoo.vit",
    "prunebench.zoo.gpt",
)
"""The modules of the package that register models."""


def _declare_builtin_models() -> None:
    declare_modules("models", list(BUILTIN_MODULES), _declare)


def _declare(module: str, record: Record) -> None:
    """Declare the model of ``record`` (the index's, for ``module``); building it imports the module."""
    fields = {key: value for key, value in record.items() if key != "name"}
    name = record["name"]
    MODELS.declare(name, _spec(name, Deferred(MODELS, name, "build"), **fields), module)


MODELS: Registry[ModelSpec] = Registry("model", "prunebench.models", _declare_builtin_models)


def _spec(name: str, build: ModelBuilder, *, summary: str, source: str, version: str = "1") -> ModelSpec:
    return ModelSpec(name, build, summary, source, version)


def register_model(
    name: str, *, summary: str, source: str, version: str = "1"
) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register ``build(input_shape, num_classes) -> nn.Module`` under ``name``.

    After adding or changing a model of the package, run ``python scripts/build_index.py``
    (:mod:`prunebench.catalog.registry_index`).
    """

    def decorate(build: ModelBuilder) -> ModelBuilder:
        MODELS.add(
            name, _spec(name, build, summary=summary, source=source, version=version), module=build.__module__
        )
        return build

    return decorate


def all_models() -> list[ModelSpec]:
    """Every registered model; the package's own as the registry index declares them (their modules not imported)."""
    return MODELS.entries()
