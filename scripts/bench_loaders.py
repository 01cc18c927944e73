"""Loader throughput (images/s) on generated CIFAR-shaped data with the standard augmentation, on the CPU.

Three loaders over the same images (crop with padding 4, horizontal flip, normalisation, batches of ``--batch``):

* ``ffcv``: prunebench's FFCV path (raw ``.beton``, numba decoding, augmentation on the device, here the CPU);
* ``torch``: prunebench's fallback (torch DataLoader workers batch the ``uint8`` array, same device augmentation);
* ``torchvision``: the usual recipe, per-image PIL ``RandomCrop(32, 4)``, ``RandomHorizontalFlip``, ``ToTensor``,
  ``Normalize`` in DataLoader workers (what ``torchvision.datasets.CIFAR10`` with those transforms does).

"full" includes the device stage (augmentation and normalisation), which runs in the main process when the device is
the CPU; "loader only" is the part that stays on the CPU when training on a GPU (decode, batch, transfer).
The first epoch of each loader is reported apart (FFCV compiles its pipeline with numba then); the steady state
is the median over the following epochs.

    python scripts/bench_loaders.py [--images 20000] [--batch 256] [--epochs 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from prunebench.datasets import LoaderRequest, get_dataset
from prunebench.datasets.cifar import STATS, read_cifar
from prunebench.datasets.generated import write_cifar_layout
from prunebench.datasets.prepare import prepare


def _epoch_rate(make_epoch: Callable[[int], Iterable], count: int, epochs: int) -> tuple[float, float]:
    """(first-epoch images/s, median images/s of the later epochs)."""
    rates = []
    for epoch in range(epochs + 1):
        started = time.perf_counter()
        for images, _ in make_epoch(epoch):
            images.sum()  # touch the batch, as a training step would
        rates.append(count / (time.perf_counter() - started))
    return rates[0], statistics.median(rates[1:])


def _torchvision_epochs(root: Path, batch: int, workers: int) -> Callable[[int], Iterable]:
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    images, labels = read_cifar(root, "cifar10", train=True)
    transform = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(*STATS["cifar10"]),
        ]
    )

    class Cifar(Dataset):
        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, index: int):
            return transform(Image.fromarray(images[index])), int(labels[index])

    loader = DataLoader(Cifar(), batch_size=batch, shuffle=True, num_workers=workers, drop_last=False)
    return lambda epoch: loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3, help="steady-state epochs after the first")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.workers)

    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        write_cifar_layout(root, "cifar10", train=args.images, test=args.batch)
        prepare("cifar10", root, num_workers=args.workers)
        results = {}
        for kind in ("ffcv", "torch"):
            request = LoaderRequest(
                batch_size=args.batch, seed=0, device=torch.device("cpu"), data_root=root, loader=kind
            )
            train = get_dataset("cifar10").make_loaders(request).train
            for stage, loader in ((f"{kind} (full)", train), (f"{kind} (loader only)", train.source)):

                def epochs(epoch: int, loader=loader):
                    loader.set_epoch(epoch)
                    return loader

                results[stage] = _epoch_rate(epochs, args.images, args.epochs)
        results["torchvision"] = _epoch_rate(
            _torchvision_epochs(root, args.batch, args.workers), args.images, args.epochs
        )

    print(f"{args.images} images 32x32, batch {args.batch}, {args.workers} workers, crop+flip+normalise")
    print(f"{'loader':<24} {'first epoch':>14} {'steady state':>14}")
    for kind, (first, steady) in results.items():
        print(f"{kind:<24} {first:>10,.0f} im/s {steady:>10,.0f} im/s")
    base = results["torchvision"][1]
    ratios = ", ".join(f"{kind} x{steady / base:.1f}" for kind, (_, steady) in results.items())
    print(f"steady state relative to torchvision: {ratios}")


if __name__ == "__main__":
    main()
