"""The dataset registry: each dataset knows its shape, its version and how to build its train and test loaders.

``--dataset`` takes a registered name (``bench list datasets``), ``imagefolder:PATH`` (an ImageFolder directory,
see :mod:`prunebench.datasets.user`) or ``package.module:factory`` (the user's own data). Datasets from other
packages register through the ``prunebench.datasets`` entry-point group.

The package's own datasets are declared from the registry index (:mod:`prunebench.declarations`), so that listing
them imports no loader and no torch; a dataset's module is imported when the dataset is asked for by name
(:func:`get_dataset`), and its decorator then checks that it registers what the index states.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prunebench.declarations import Record, declare_modules, tuples
from prunebench.errors import UsageError
from prunebench.registry import Deferred, Registry

if TYPE_CHECKING:
    import torch

    from prunebench.trainer import EpochLoader


@dataclass(frozen=True)
class LoaderRequest:
    """What the harness asks of a dataset: batches on ``device``, ordered and augmented by ``seed``."""

    batch_size: int
    seed: int
    device: torch.device
    eval_batch_size: int = 1000
    data_root: Path | None = None
    loader: str = "auto"
    """``auto``, ``torch`` or ``ffcv``: which loader reads data on disk (an in-memory dataset refuses ``ffcv``)."""


@dataclass
class DataLoaders:
    train: EpochLoader
    test: EpochLoader
    kind: str
    """The loader actually used (``memory``, ``torch``, ``ffcv``), recorded with the run."""


def nothing_to_check(request: LoaderRequest) -> None:
    """The check of a dataset that needs nothing on disk (it is held in memory or generated)."""


def never_ffcv(name: str, how: str, request: LoaderRequest) -> None:
    """The check of a dataset that no FFCV file is read for (``how``: "held in memory", "read by the torch
    DataLoader"): an explicit ``--loader ffcv`` cannot be honoured, so it is refused rather than ignored."""
    if request.loader == "ffcv":
        raise UsageError(f"--loader ffcv: {name} is {how}, never read through FFCV; leave --loader at auto")


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its shape, what it is, how to load it, and its ``version`` (part of a run's id).

    Bump ``version`` whenever the data a run sees changes (the split, the preprocessing, the files).
    ``check(request)`` raises a :class:`~prunebench.errors.UsageError` when ``make_loaders(request)`` could not
    work: its files or the loader asked for are missing. It runs before any run starts, so it must be cheap (look at
    folders and file names, never load or download the data).
    """

    name: str
    num_classes: int
    input_shape: tuple[int, ...]
    summary: str
    source: str
    make_loaders: Callable[[LoaderRequest], DataLoaders]
    version: str = "1"
    check: Callable[[LoaderRequest], None] = nothing_to_check


BUILTIN_MODULES = ("cifar", "embedded", "imagenet")
"""The modules of this package that register datasets."""


def _declare_builtin_datasets() -> None:
    declare_modules("datasets", [f"prunebench.datasets.{module}" for module in BUILTIN_MODULES], _declare)


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
    (:mod:`prunebench.declarations`).
    """

    def decorate(make: Callable[[LoaderRequest], DataLoaders]) -> Callable[[LoaderRequest], DataLoaders]:
        arguments = dict(num_classes=num_classes, input_shape=input_shape, summary=summary, source=source)
        spec = _spec(name, make, version=version, check=check, **arguments)
        DATASETS.add(name, spec, module=make.__module__)
        return make

    return decorate


def get_dataset(name: str) -> DatasetSpec:
    """The dataset ``name``: registered, ``imagefolder:PATH`` or ``package.module:factory``."""
    if ":" in name:
        from prunebench.datasets.user import referenced_dataset

        return referenced_dataset(name)
    return DATASETS.get(name)


def all_datasets() -> list[DatasetSpec]:
    """Every registered dataset; the package's own as the registry index declares them (their modules not imported)."""
    return DATASETS.entries()
