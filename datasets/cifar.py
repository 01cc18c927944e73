"""CIFAR-10 and CIFAR-100 from a local root in torchvision's layout, through FFCV or the torch DataLoader.

The root holds ``cifar-10-batches-py/`` or ``cifar-100-python/`` as torchvision writes them. When they are missing
torchvision downloads them (this needs a network). The pickled batches are read directly, without torchvision's
checksum pass, so any data in that layout loads.
"""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import numpy as np

from prunebench.datasets.augment import Normalize, cifar_augment
from prunebench.datasets.device_batches import DeviceBatches
from prunebench.datasets.files import beton_files, choose_loader, data_root, default_beton_dir
from prunebench.datasets.order import default_workers
from prunebench.datasets.registry import DataLoaders, LoaderRequest, register_dataset
from prunebench.errors import UsageError

STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _torchvision_class(name: str):
    from torchvision.datasets import CIFAR10, CIFAR100

    return {"cifar10": CIFAR10, "cifar100": CIFAR100}[name]


def read_cifar(root: Path, name: str, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) ``uint8`` and labels of one split, downloading with torchvision if absent."""
    kind = _torchvision_class(name)
    folder = root / kind.base_folder
    if not folder.is_dir():
        try:
            kind(str(root), train=train, download=True)
        except Exception as error:  # noqa: BLE001  (no network, no space: say where the data should be)
            raise UsageError(f"{name}: {folder} is missing and the download failed ({error})") from error
    images, labels = [], []
    for file_name, _ in kind.train_list if train else kind.test_list:
        with open(folder / file_name, "rb") as handle:
            entry = pickle.load(handle, encoding="latin1")
        images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
    return np.concatenate(images).transpose(0, 2, 3, 1).copy(), np.asarray(labels, dtype=np.int64)


def check_cifar(name: str, request: LoaderRequest) -> None:
    """That the loader ``request`` asks for finds its files: the FFCV files, or every batch file of the torchvision
    layout (nothing is read or downloaded)."""
    root = data_root(request.data_root)
    if choose_loader(request, name, beton_files(default_beton_dir(root), name)) == "ffcv":
        return
    kind = _torchvision_class(name)
    folder = root / kind.base_folder
    if not folder.is_dir():
        raise UsageError(
            f"{name}: {folder} is missing; put {kind.__name__} there in torchvision's layout "
            f"(torchvision.datasets.{kind.__name__}({str(root)!r}, download=True) downloads it) "
            "or point --data-root at the folder that holds it"
        )
    for file_name, _ in (*kind.train_list, *kind.test_list):
        if not (folder / file_name).is_file():
            raise UsageError(f"{name}: {folder / file_name} is missing (a {kind.__name__} batch file)")


def cifar_loaders(name: str, request: LoaderRequest) -> DataLoaders:
    root = data_root(request.data_root)
    files = beton_files(default_beton_dir(root), name)
    kind = choose_loader(request, name, files)
    workers = default_workers()
    device = request.device
    if kind == "ffcv":
        from prunebench.datasets.ffcv_loaders import FFCVBatches

        common = {"seed": request.seed, "device": device, "num_workers": workers}
        train = FFCVBatches(files.train, request.batch_size, shuffle=True, **common)
        test = FFCVBatches(files.test, request.eval_batch_size, shuffle=False, **common)
    else:
        from prunebench.datasets.torch_loaders import ArrayImages, TorchBatches

        common = {"seed": request.seed, "num_workers": workers, "pin_memory": device.type == "cuda"}
        train = TorchBatches(
            ArrayImages(*read_cifar(root, name, True)), request.batch_size, shuffle=True, **common
        )
        test = TorchBatches(
            ArrayImages(*read_cifar(root, name, False)), request.eval_batch_size, shuffle=False, **common
        )
    normalize = Normalize(*STATS[name], device)
    return DataLoaders(
        train=DeviceBatches(train, device, normalize, seed=request.seed, augment=cifar_augment),
        test=DeviceBatches(test, device, normalize),
        kind=kind,
    )


@register_dataset(
    "cifar10",
    num_classes=10,
    input_shape=(3, 32, 32),
    summary="CIFAR-10, 50000 train / 10000 test 32x32 images; crop (padding 4) + flip",
    source="Krizhevsky 2009; torchvision layout under --data-root, FFCV files from `bench data prepare`",
    check=functools.partial(check_cifar, "cifar10"),
)
def cifar10(request: LoaderRequest) -> DataLoaders:
    return cifar_loaders("cifar10", request)


@register_dataset(
    "cifar100",
    num_classes=100,
    input_shape=(3, 32, 32),
    summary="CIFAR-100, 50000 train / 10000 test 32x32 images, 100 classes; crop (padding 4) + flip",
    source="Krizhevsky 2009; torchvision layout under --data-root, FFCV files from `bench data prepare`",
    check=functools.partial(check_cifar, "cifar100"),
)
def cifar100(request: LoaderRequest) -> DataLoaders:
    return cifar_loaders("cifar100", request)
