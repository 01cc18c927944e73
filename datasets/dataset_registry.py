"""The dataset registry: each dataset knows its shape, its version and how to build its train and test loaders.

``--dataset`` takes a registered name (``bench list datasets``), ``imagefolder:PATH`` (an ImageFolder directory,
see :mod:`prunebench.datasets.user`), ``text:PATH`` or ``hf-text:NAME`` (a user's text files or a Hugging Face text
dataset, character-level, see :mod:`prunebench.datasets.text_corpus`) or ``package.module:factory`` (the user's own
data). Datasets from other packages register through the ``prunebench.datasets`` entry-point group.

The package's own datasets are declared from the registry index (:mod:`prunebench.catalog.registry_index`), so that listing
them imports no loader and no torch; a dataset's module is imported when the dataset is asked for by name
(:func:`get_dataset`), and its decorator then checks that it registers what the index states. What a dataset is
and what the harness asks of it are in :mod:`prunebench.datasets.spec`.
"""

from __future__ import annotations

from collections.abc import Callable

from prunebench.catalog.registry_index import Record, declare_modules, tuples
from prunebench.core.extension_registry import Deferred, Registry
from prunebench.datasets.spec import DataLoaders, DatasetSpec, LoaderRequest, nothing_to_check

BUILTIN_MODULES = (
    "prunebench.datasets.cifar",
    "prunebench.datasets.embedded",
    "prunebench.datasets.imagenet",
    "prunebench.datasets.shakespeare",
)
"""The modules of this package that register datasets."""


def _declare_builtin_datasets() -> None:
    declare_modules("datasets", list(BUILTIN_MODULES), _declare)


def _declare(module: str, record: Record) -> None:
    """Declare the dataset of ``record`` (the index's, for ``module``); loading or checking it imports the module."""
    fields = {key: tuples(value) for key, value in record.items() if key != "name"}
    name = record["name"]
    make, check = Deferred(DATASETS, name, "make_loaders"), Deferred(DATASETS, name, "check")
    DATASETS.declare(name, _spec(name, make, check=check, **fields), module)


DATASETS: Registry[DatasetSpec] = Registry("dataset", "prunebench.datasets", _declare_builtin_datasets)


def _spec(
    name: str,
    make: Callable[[LoaderRequest], DataLoaders],
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    summary: str,
    source: str,
    version: str = "1",
    check: Callable[[LoaderRequest], None] = nothing_to_check,
) -> DatasetSpec:
    return DatasetSpec(name, num_classes, tuple(input_shape), summary, source, make, version, check)


def register_dataset(
    name: str,
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    summary: str,
    source: str,
    version: str = "1",
    check: Callable[[LoaderRequest], None] = nothing_to_check,
) -> Callable[[Callable[[LoaderRequest], DataLoaders]], Callable[[LoaderRequest], DataLoaders]]:
    """Register ``make_loaders(request) -> DataLoaders`` under ``name`` (``check``: see :class:`DatasetSpec`).

    After adding or changing a dataset of the package, run ``python scripts/build_index.py``
    (:mod:`prunebench.catalog.registry_index`).
    """

    def decorate(make: Callable[[LoaderRequest], DataLoaders]) -> Callable[[LoaderRequest], DataLoaders]:
        arguments = dict(num_classes=num_classes, input_shape=input_shape, summary=summary, source=source)
        spec = _spec(name, make, version=version, check=check, **arguments)
        DATASETS.add(name, spec, module=make.__module__)
        return make

    return decorate


TEXT_PREFIXES = ("text:", "hf-text:")
"""The prefixes of a user's text files and of a Hugging Face text dataset (:mod:`prunebench.datasets.text_corpus`)."""


def get_dataset(name: str) -> DatasetSpec:
    """The dataset ``name``: registered, ``imagefolder:PATH``, ``text:PATH``, ``hf-text:NAME`` or
    ``package.module:factory``."""
    if name.startswith(TEXT_PREFIXES):
        from prunebench.datasets.text_corpus import text_dataset

        return text_dataset(name)
    if ":" in name:
        from prunebench.datasets.user import referenced_dataset

        return referenced_dataset(name)
    return DATASETS.get(name)


def all_datasets() -> list[DatasetSpec]:
    """Every registered dataset; the package's own as the registry index declares them (their modules not imported)."""
    return DATASETS.entries()
