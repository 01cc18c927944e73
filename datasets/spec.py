"""What a dataset is (:class:`DatasetSpec`) and what the harness asks of it (:class:`LoaderRequest`).

These types sit below the registry (:mod:`prunebench.datasets.dataset_registry`) so that the modules that build datasets
(the package's own, the user's) need nothing of the registry but its decorator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prunebench.core.errors import UsageError

if TYPE_CHECKING:
    import torch

    from prunebench.run.trainer import EpochLoader


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
    ``check(request)`` raises a :class:`~prunebench.core.errors.UsageError` when ``make_loaders(request)`` could not
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
