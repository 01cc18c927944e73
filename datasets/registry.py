"""The dataset registry: each dataset knows its shape and how to build its train and test loaders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from prunebench.errors import unknown
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


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    num_classes: int
    input_shape: tuple[int, ...]
    summary: str
    source: str
    make_loaders: Callable[[LoaderRequest], DataLoaders]


_DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(
    name: str, *, num_classes: int, input_shape: tuple[int, ...], summary: str, source: str
) -> Callable[[Callable[[LoaderRequest], DataLoaders]], Callable[[LoaderRequest], DataLoaders]]:
    """Register ``make_loaders(request) -> DataLoaders`` under ``name``."""

    def decorate(make: Callable[[LoaderRequest], DataLoaders]) -> Callable[[LoaderRequest], DataLoaders]:
        _DATASETS[name] = DatasetSpec(name, num_classes, tuple(input_shape), summary, source, make)
        return make

    return decorate


def get_dataset(name: str) -> DatasetSpec:
    if name not in _DATASETS:
        raise unknown("dataset", name, list(_DATASETS))
    return _DATASETS[name]


def all_datasets() -> list[DatasetSpec]:
    return [_DATASETS[name] for name in sorted(_DATASETS)]
