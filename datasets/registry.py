"""The dataset registry: each dataset knows its shape, its version and how to build its train and test loaders.

``--dataset`` takes a registered name (``bench list datasets``), ``imagefolder:PATH`` (an ImageFolder directory,
see :mod:`prunebench.datasets.user`) or ``package.module:factory`` (the user's own data). Datasets from other
packages register through the ``prunebench.datasets`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from prunebench.registry import Registry
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
    """``auto``, ``torch`` or ``ffcv``: which loader reads data on disk (in-memory datasets ignore it)."""


@dataclass
class DataLoaders:
    train: EpochLoader
    test: EpochLoader
    kind: str
    """The loader actually used (``memory``, ``torch``, ``ffcv``), recorded with the run."""


def nothing_to_check(request: LoaderRequest) -> None:
    """The check of a dataset that needs nothing on disk (it is held in memory or generated)."""


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


DATASETS: Registry[DatasetSpec] = Registry("dataset", "prunebench.datasets")


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
    """Register ``make_loaders(request) -> DataLoaders`` under ``name`` (``check``: see :class:`DatasetSpec`)."""

    def decorate(make: Callable[[LoaderRequest], DataLoaders]) -> Callable[[LoaderRequest], DataLoaders]:
        spec = DatasetSpec(name, num_classes, tuple(input_shape), summary, source, make, version, check)
        DATASETS.add(name, spec)
        return make

    return decorate


def get_dataset(name: str) -> DatasetSpec:
    """The dataset ``name``: registered, ``imagefolder:PATH`` or ``package.module:factory``."""
    if ":" in name:
        from prunebench.datasets.user import referenced_dataset

        return referenced_dataset(name)
    return DATASETS.get(name)


def all_datasets() -> list[DatasetSpec]:
    return DATASETS.entries()
