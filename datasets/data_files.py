"""Where data lives on disk, and the choice between the FFCV and torch loaders for a request."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from prunebench.core.errors import UsageError
from prunebench.datasets.ffcv_loaders import ffcv_problem
from prunebench.datasets.spec import LoaderRequest

DATA_ROOT_VARIABLE = "PRUNEBENCH_DATA"
LOADERS = ("auto", "ffcv", "torch")
_log = logging.getLogger("prunebench.datasets")
_said: set[str] = set()


def data_root(explicit: Path | None) -> Path:
    """``explicit``, else ``$PRUNEBENCH_DATA``, else ``./data``."""
    return Path(explicit or os.environ.get(DATA_ROOT_VARIABLE) or "data")


@dataclass(frozen=True)
class BetonFiles:
    train: Path
    test: Path

    def exist(self) -> bool:
        return self.train.is_file() and self.test.is_file()


def beton_files(directory: Path, dataset: str) -> BetonFiles:
    """The FFCV files of ``dataset`` in ``directory`` (``bench data prepare`` writes them there)."""
    return BetonFiles(directory / f"{dataset}-train.beton", directory / f"{dataset}-test.beton")


def default_beton_dir(root: Path) -> Path:
    return root / "ffcv"


def _say_once(message: str) -> None:
    if message not in _said:
        _said.add(message)
        _log.warning(message)


def choose_loader(request: LoaderRequest, dataset: str, files: BetonFiles) -> str:
    """``ffcv`` or ``torch`` for ``request.loader`` (``auto``: FFCV when its files exist and it is installed).

    ``auto`` falls back to the torch DataLoader with one message naming what is missing; an explicit ``ffcv``
    that cannot be honoured is an error.
    """
    if request.loader not in LOADERS:
        raise UsageError(f"unknown loader {request.loader!r}; known: {', '.join(LOADERS)}")
    if request.loader == "torch":
        return "torch"
    prepare = f"`bench data prepare {dataset}`"
    if request.loader == "ffcv":
        if not files.exist():
            raise UsageError(f"--loader ffcv, but {files.train} or {files.test} is missing; run {prepare}")
        problem = ffcv_problem()
        if problem:
            raise UsageError(
                f"--loader ffcv, but FFCV cannot be imported ({problem}); install prunebench[ffcv]"
            )
        return "ffcv"
    if not files.exist():
        _say_once(
            f"{dataset}: no FFCV files in {files.train.parent} (run {prepare}); using the torch DataLoader"
        )
        return "torch"
    problem = ffcv_problem()
    if problem:
        _say_once(f"{dataset}: FFCV files found but FFCV is unusable ({problem}); using the torch DataLoader")
        return "torch"
    return "ffcv"
