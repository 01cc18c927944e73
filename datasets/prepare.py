"""``bench data prepare``: FFCV files (train and test) for a registered dataset.

Its options are checked before any work. Both files are written under temporary names (``.NAME.PID@HOST.partial``)
and renamed together once both are complete, so a failed or interrupted prepare leaves no FFCV file and no temporary
one; the temporary files of an earlier prepare that was killed are removed by the next one, with one line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunebench.core.atomic_files import fsync_directory, remove_stale_temporaries, writer_tag
from prunebench.core.errors import UsageError, WriteError
from prunebench.datasets.cifar import read_cifar
from prunebench.datasets.data_files import beton_files, data_root, default_beton_dir
from prunebench.datasets.dataset_registry import get_dataset
from prunebench.datasets.ffcv_loaders import ffcv_problem
from prunebench.datasets.ffcv_writer import write_beton
from prunebench.datasets.image_folder import imagenet_samples
from prunebench.datasets.order import default_workers

WRITE_MODES = ("raw", "jpg", "smart")


@dataclass(frozen=True)
class ImageOptions:
    """How images are stored: ``raw`` pixels, ``jpg`` or FFCV's ``smart`` choice; side capped at ``max_resolution``."""

    write_mode: str = "jpg"
    max_resolution: int | None = 512
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.write_mode not in WRITE_MODES:
            raise UsageError(f"--write-mode takes one of {', '.join(WRITE_MODES)}, got {self.write_mode!r}")
        if self.max_resolution is not None and self.max_resolution < 1:
            raise UsageError(
                f"--max-resolution takes 0 (keep the size) or a positive number of pixels, got {self.max_resolution}"
            )
        if not 1 <= self.jpeg_quality <= 100:
            raise UsageError(f"--jpeg-quality takes 1 to 100, got {self.jpeg_quality}")


Split = tuple[Sequence[Any], dict[str, Any]]
"""An indexable of ``(image, label)`` items and the FFCV fields they are written with."""


class _Pairs:
    """``(images[i], labels[i])`` items of two aligned sequences."""

    def __init__(self, images: Sequence[Any], labels: Sequence[int]) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.images[index], int(self.labels[index])


class _ImageFiles:
    """``(PIL image, label)`` items of ``(path, label)`` samples."""

    def __init__(self, samples: Sequence[tuple[str, int]]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def describe(self, index: int) -> str:
        """The image file of item ``index``, for errors."""
        return str(self.samples[index][0])

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from PIL import Image

        path, label = self.samples[index]
        with Image.open(path) as image:
            return image.convert("RGB"), label


def _image_fields(options: ImageOptions) -> dict[str, Any]:
    from ffcv.fields import IntField, RGBImageField

    image = RGBImageField(
        write_mode=options.write_mode,
        max_resolution=options.max_resolution,
        jpeg_quality=options.jpeg_quality,
    )
    return {"image": image, "label": IntField()}


def _cifar_splits(name: str) -> Callable[[Path, ImageOptions], dict[str, Split]]:
    def splits(root: Path, options: ImageOptions) -> dict[str, Split]:
        raw = ImageOptions("raw", None, options.jpeg_quality)
        return {
            split: (_Pairs(*read_cifar(root, name, split == "train")), _image_fields(raw))
            for split in ("train", "test")
        }

    return splits


def _imagenet_splits(root: Path, options: ImageOptions) -> dict[str, Split]:
    return {
        split: (_ImageFiles(imagenet_samples(root, folder)), _image_fields(options))
        for split, folder in (("train", "train"), ("test", "val"))
    }


SOURCES: dict[str, Callable[[Path, ImageOptions], dict[str, Split]]] = {
    "cifar10": _cifar_splits("cifar10"),
    "cifar100": _cifar_splits("cifar100"),
    "imagenet": _imagenet_splits,
}
"""The datasets whose loaders read FFCV files: nothing else is prepared (an in-memory dataset never reads them)."""


def prepare(
    dataset: str,
    root: Path | None = None,
    out: Path | None = None,
    options: ImageOptions = ImageOptions(),
    num_workers: int | None = None,
) -> list[Path]:
    """Write ``<out>/<dataset>-train.beton`` and ``-test.beton`` (``out`` defaults to ``<root>/ffcv``).

    Both appear together when both are complete. An item that cannot be read raises a :class:`UsageError` naming
    it, a full disk a :class:`~prunebench.core.errors.WriteError` naming the file; either way, and on Ctrl-C, no FFCV
    file is written.
    """
    get_dataset(dataset)
    if dataset not in SOURCES:
        raise UsageError(
            f"{dataset} is never read through FFCV, so it has no FFCV files to prepare; "
            f"`bench data prepare` takes {', '.join(sorted(SOURCES))}"
        )
    if num_workers is not None and num_workers < 1:
        raise UsageError(f"--workers takes a positive number of processes, got {num_workers}")
    root = data_root(root)
    directory = out or default_beton_dir(root)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--out {directory} is a file; give the directory of the FFCV files")
    problem = ffcv_problem()
    if problem:
        raise UsageError(f"FFCV cannot be imported ({problem}); install prunebench[ffcv]")
    files = beton_files(directory, dataset)
    remove_stale_temporaries([directory], ".partial")
    splits = SOURCES[dataset](root, options)
    workers = num_workers or default_workers()
    targets = [files.train, files.test]
    partials = [target.with_name(f".{target.name}.{writer_tag()}.partial") for target in targets]
    try:
        for (split, (items, fields)), partial, target in zip(splits.items(), partials, targets, strict=True):
            try:
                write_beton(partial, items, fields, num_workers=workers, description=f"{dataset} {split}")
            except OSError as error:
                raise WriteError(error.errno, error.strerror or str(error), str(target)) from None
        for partial, target in zip(partials, targets, strict=True):
            partial.replace(target)
        fsync_directory(directory)
    finally:
        for partial in partials:
            partial.unlink(missing_ok=True)
    return targets
