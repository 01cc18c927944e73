"""Generated data in the real on-disk layouts (CIFAR's pickled batches, ImageFolder), for tests and benchmarks."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def write_cifar_layout(
    root: Path, name: str = "cifar10", train: int = 500, test: int = 100, seed: int = 0
) -> Path:
    """Random 32x32 images in torchvision's layout for ``name`` under ``root``; labels cycle through the classes.

    The training images are spread over the same files as the real dataset (five batches for CIFAR-10).
    """
    from torchvision.datasets import CIFAR10, CIFAR100

    kind = {"cifar10": CIFAR10, "cifar100": CIFAR100}[name]
    classes = 10 if name == "cifar10" else 100
    label_key = "labels" if name == "cifar10" else "fine_labels"
    folder = root / kind.base_folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for files, count in ((kind.train_list, train), (kind.test_list, test)):
        offset = 0
        for part, (file_name, _) in zip(np.array_split(np.arange(count), len(files)), files, strict=True):
            data = rng.integers(0, 256, (len(part), 3 * 32 * 32), dtype=np.uint8)
            labels = [int(i % classes) for i in range(offset, offset + len(part))]
            offset += len(part)
            with open(folder / file_name, "wb") as handle:
                pickle.dump({"data": data, label_key: labels}, handle)
    return folder


def write_image_folder(
    root: Path, classes: int = 3, per_class: int = 4, size: tuple[int, int] = (40, 48), seed: int = 0
) -> Path:
    """Random PNG images (lossless) in ``root/train/<class>/`` and ``root/val/<class>/``, ``size`` = (height, width)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("val", max(1, per_class // 2))):
        for label in range(classes):
            folder = root / split / f"n{label:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"image_{index:04d}.png")
    return root
