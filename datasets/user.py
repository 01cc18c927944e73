"""The user's own data: an ImageFolder directory, or a factory in the user's code.

* ``imagefolder:PATH`` (or ``imagefolder:PATH:SIZE``): ``PATH/train/<class>/*`` and ``PATH/val/<class>/*`` read
  like ImageNet (random-resized crop and flip for training, centre crop for evaluation, ImageNet normalisation) at
  ``SIZE`` pixels (224 by default). Its version is a fingerprint of the file names and sizes, so adding, removing
  or replacing an image changes the runs' ids.
* ``package.module:factory``: ``factory()`` returns ``(train, test)``, two map-style datasets whose items are
  ``(input tensor, integer label)`` (a torchvision dataset with ``ToTensor``, a ``TensorDataset``, ...). The input
  shape is that of the first training item; the class count is ``len(train.classes)`` when the dataset has
  ``classes``, else one more than the largest training label. Batches follow the seed's epoch order, as every
  other loader; augmentation is the dataset's own. Its version is the factory module's (see
  :func:`prunebench.core.references.reference_version`).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from prunebench.core.errors import UsageError
from prunebench.core.references import load_reference, reference_version
from prunebench.datasets.image_folder import check_image_folder, image_folder_loaders
from prunebench.datasets.spec import DataLoaders, DatasetSpec, LoaderRequest, never_ffcv
from prunebench.datasets.torch_loaders import EpochBatches

IMAGEFOLDER = "imagefolder:"
DEFAULT_SIZE = 224


def referenced_dataset(name: str) -> DatasetSpec:
    """The dataset ``imagefolder:PATH[:SIZE]`` or ``package.module:factory``."""
    if name.startswith(IMAGEFOLDER):
        path, size = _folder_and_size(name[len(IMAGEFOLDER) :])
        return _image_folder(name, path, size)
    return _factory_dataset(name)


def _folder_and_size(text: str) -> tuple[Path, int]:
    head, _, tail = text.rpartition(":")
    if head and tail.isdigit():
        return Path(head), int(tail)
    return Path(text), DEFAULT_SIZE


@functools.cache
def _image_folder(name: str, root: Path, size: int) -> DatasetSpec:
    train, val, classes = _image_folder_samples(root, name)
    fingerprint = hashlib.sha256()
    for path, label in [*train, *val]:
        relative = Path(path).relative_to(root).as_posix()
        fingerprint.update(f"{relative}\0{label}\0{Path(path).stat().st_size}\n".encode())
    return DatasetSpec(
        name=name,
        num_classes=len(classes),
        input_shape=(3, size, size),
        summary=f"ImageFolder {root}: {len(train)} training and {len(val)} validation images, {len(classes)} classes",
        source=str(root),
        make_loaders=functools.partial(image_folder_loaders, root, size=size, dataset=name),
        version=f"files-{fingerprint.hexdigest()[:16]}",
        check=functools.partial(_torch_loader_only, name),
    )


Samples = list[tuple[str, int]]
"""An ImageFolder split: ``(path, label)`` per image."""


def _image_folder_samples(root: Path, name: str) -> tuple[Samples, Samples, list[str]]:
    """The ``(path, label)`` images of ``train/`` and ``val/`` and the class names (the folders of ``train/``).

    Every class must have images in both splits; one without images in either split is a :class:`UsageError` naming it,
    here, before any work (torchvision would stop the first run with an error of its own)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    check_image_folder(root, name)
    classes, class_to_idx = find_classes(str(root / "train"))
    splits = []
    for split in ("train", "val"):
        samples = make_dataset(str(root / split), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
        present = {label for _, label in samples}
        empty = [c for c in classes if class_to_idx[c] not in present]
        if empty:
            more = f" and {len(empty) - 3} more" if len(empty) > 3 else ""
            raise UsageError(
                f"{name}: {root / split} has no image of class {', '.join(map(repr, empty[:3]))}{more}; every "
                f"class folder of {root / 'train'} needs images in train/ and val/"
            )
        splits.append(samples)
    return splits[0], splits[1], classes


def _torch_loader_only(name: str, request: LoaderRequest) -> None:
    """An ImageFolder is read by the torch DataLoader: an explicit ``--loader ffcv`` cannot be honoured."""
    if request.loader == "ffcv":
        raise UsageError(f"{name} is read with the torch DataLoader; --loader ffcv is not available for it")


@functools.cache
def _factory_dataset(name: str) -> DatasetSpec:
    factory = load_reference(name, "dataset")
    train, test = _splits(factory, name)
    first = train[0]
    if not (isinstance(first, tuple | list) and len(first) == 2 and isinstance(first[0], torch.Tensor)):
        raise UsageError(
            f"dataset {name}: items must be (input tensor, integer label), got {type(first).__name__}"
        )
    return DatasetSpec(
        name=name,
        num_classes=_class_count(train),
        input_shape=tuple(first[0].shape),
        summary=f"{name}: {len(train)} training and {len(test)} test examples (user code)",
        source=name,
        make_loaders=functools.partial(_factory_loaders, name),
        version=reference_version(factory),
        check=functools.partial(never_ffcv, name, "read from its factory's datasets"),
    )


def _splits(factory, name: str) -> tuple[Dataset, Dataset]:
    try:
        splits = factory()
    except Exception as error:  # noqa: BLE001  (user code: its failure is reported, not a traceback)
        raise UsageError(f"dataset {name} failed: {type(error).__name__}: {error}") from None
    if not (isinstance(splits, tuple | list) and len(splits) == 2):
        raise UsageError(
            f"dataset {name}: the factory must return (train, test), got {type(splits).__name__}"
        )
    return splits[0], splits[1]


def _class_count(train: Dataset) -> int:
    classes = getattr(train, "classes", None)
    if classes is not None:
        return len(classes)
    targets = getattr(train, "targets", None)
    labels = targets if targets is not None else [train[i][1] for i in range(len(train))]
    return int(torch.as_tensor(labels).max()) + 1


def _factory_loaders(name: str, request: LoaderRequest) -> DataLoaders:
    train, test = _splits(load_reference(name, "dataset"), name)
    return DataLoaders(
        train=MapBatches(train, request.batch_size, request.device, shuffle=True, seed=request.seed),
        test=MapBatches(test, request.eval_batch_size, request.device, shuffle=False, seed=request.seed),
        kind="torch",
    )


class MapBatches:
    """One epoch of a map-style dataset's batches on ``device``, in the seed's epoch order (an ``EpochLoader``)."""

    def __init__(
        self, dataset: Dataset, batch_size: int, device: torch.device, *, shuffle: bool, seed: int
    ) -> None:
        self.sampler = EpochBatches(len(dataset), batch_size, shuffle=shuffle, seed=seed)
        self.loader = DataLoader(dataset, batch_sampler=self.sampler)
        self.device = device

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for inputs, targets in self.loader:
            yield inputs.to(self.device), torch.as_tensor(targets).to(self.device).long()
