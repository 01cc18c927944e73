"""CIFAR-10 and CIFAR-100 from a local root in torchvision's layout, through FFCV or the torch DataLoader.

The root holds ``cifar-10-batches-py/`` or ``cifar-100-python/`` as torchvision writes them; ``bench run`` checks
that they are there before any run starts and never downloads them (:func:`read_cifar`, which ``bench data prepare``
uses, downloads them with torchvision when the folder is missing, which needs a network). The pickled batches are
read directly, without torchvision's checksum pass, so any data in that layout loads, and safely: a batch file may
only hold arrays, lists, dicts, numbers and strings, so a pickle crafted to run code is refused, not executed.
"""

from __future__ import annotations

import codecs
import functools
import pickle
from pathlib import Path

import numpy as np

from prunebench.core.errors import UsageError
from prunebench.datasets.augment import Normalize, cifar_augment
from prunebench.datasets.data_files import beton_files, choose_loader, data_root, default_beton_dir
from prunebench.datasets.dataset_registry import register_dataset
from prunebench.datasets.device_batches import DeviceBatches
from prunebench.datasets.ffcv_loaders import FFCVBatches
from prunebench.datasets.order import default_workers
from prunebench.datasets.spec import DataLoaders, LoaderRequest
from prunebench.datasets.torch_loaders import ArrayImages, TorchBatches

STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _torchvision_class(name: str):
    from torchvision.datasets import CIFAR10, CIFAR100

    return {"cifar10": CIFAR10, "cifar100": CIFAR100}[name]


_RECONSTRUCT = np.empty(0).__reduce__()[0]  # how numpy pickles an array (numpy 1 and 2 name its module apart)
_FROMBUFFER = np.empty(0, np.uint8).__reduce_ex__(5)[0]  # the same, with pickle protocol 5
_SAFE_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("_codecs", "encode"): codecs.encode,  # how protocol 2 writes bytes
}
"""What a CIFAR batch may look up while it is unpickled: the constructors of numpy arrays, and nothing else."""


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR batch and nothing else: only the numpy array constructors may be looked up, so a file
    crafted to call anything else (``os.system``) is refused instead of executed."""

    def find_class(self, module: str, name: str):
        found = _SAFE_GLOBALS.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}, which a CIFAR batch never holds")
        return found


def read_batch(path: Path) -> tuple[np.ndarray, list[int]]:
    """The images (N, 3072) ``uint8`` and labels of one CIFAR batch file, read without executing anything in it.

    A file that is missing, truncated, not a pickle or not a CIFAR batch is a one-line
    :class:`~prunebench.core.errors.UsageError` naming it.
    """
    try:
        with open(path, "rb") as handle:
            entry = _BatchUnpickler(handle, encoding="latin1").load()
    except Exception as error:  # noqa: BLE001  (truncated, foreign, unreadable: all mean the file is unusable)
        raise UsageError(f"{path}: not a readable CIFAR batch ({type(error).__name__}: {error})") from None
    labels = entry.get("labels", entry.get("fine_labels")) if isinstance(entry, dict) else None
    data = entry.get("data") if isinstance(entry, dict) else None
    if not (
        isinstance(data, np.ndarray)
        and data.ndim == 2
        and data.shape[1] == 3 * 32 * 32
        and isinstance(labels, list)
        and len(labels) == len(data)
        and all(isinstance(label, int) for label in labels)
    ):
        raise UsageError(f"{path}: not a CIFAR batch (a dict with 'data', N x 3072 pixels, and N 'labels')")
    return data.astype(np.uint8, copy=False), labels


def read_cifar(root: Path, name: str, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) ``uint8`` and labels of one split, downloading with torchvision if absent."""
    kind = _torchvision_class(name)
    folder = root / kind.base_folder
    if not folder.is_dir():
        try:
            kind(str(root), train=train, download=True)
        except Exception as error:  # noqa: BLE001  (no network, no space: say where the data should be)
            raise UsageError(f"{name}: {folder} is missing and the download failed ({error})") from None
    images, labels = [], []
    for file_name, _ in kind.train_list if train else kind.test_list:
        data, batch_labels = read_batch(folder / file_name)
        images.append(data.reshape(-1, 3, 32, 32))
        labels.extend(batch_labels)
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
        common = {"seed": request.seed, "device": device, "num_workers": workers}
        train = FFCVBatches(files.train, request.batch_size, shuffle=True, **common)
        test = FFCVBatches(files.test, request.eval_batch_size, shuffle=False, **common)
    else:
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
