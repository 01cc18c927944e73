"""ImageFolder directories read as ImageNet is: ``train/<class>/*`` and ``val/<class>/*``, ImageNet's crops and
normalisation, through the torch DataLoader.

Training decodes a random-resized crop (scale 0.08-1, ratio 3/4-4/3) at 224 pixels, then flips on the device;
evaluation decodes a centre crop of 224/256 of the shorter side at 224 pixels, the crops seeded per
(seed, epoch, sample). ImageNet (:mod:`prunebench.datasets.imagenet`) and ``imagefolder:PATH`` datasets
(:mod:`prunebench.datasets.user`) both read their images here.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch

from prunebench.core.errors import UsageError
from prunebench.datasets.augment import Normalize, random_flip
from prunebench.datasets.device_batches import DeviceBatches
from prunebench.datasets.order import default_workers
from prunebench.datasets.spec import DataLoaders, LoaderRequest
from prunebench.datasets.torch_loaders import DecodedImages, TorchBatches

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIZE = 224
EVAL_RATIO = 224 / 256
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)


def check_image_folder(root: Path, dataset: str) -> None:
    """That ``root`` has the ImageFolder layout: ``train/<class>/`` and ``val/`` (no image is read)."""
    train = root / "train"
    if not (train.is_dir() and (root / "val").is_dir() and any(p.is_dir() for p in train.iterdir())):
        raise UsageError(
            f"{dataset}: expected ImageFolder layout {root}/train/<class>/ and {root}/val/<class>/"
        )


def imagenet_samples(root: Path, split: str, dataset: str = "imagenet") -> list[tuple[str, int]]:
    """``(path, label)`` of the images under ``root/split``, labels from the class folders of ``root/train``."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    check_image_folder(root, dataset)
    _, class_to_idx = find_classes(str(root / "train"))
    return make_dataset(str(root / split), class_to_idx, extensions=IMG_EXTENSIONS)


def random_resized_crop_box(width: int, height: int, generator: torch.Generator) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of a random-resized crop, as torchvision's ``RandomResizedCrop``."""
    area = width * height
    log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))
    for _ in range(10):
        draws = torch.rand(2, generator=generator).tolist()
        target = area * (SCALE[0] + (SCALE[1] - SCALE[0]) * draws[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * draws[1])
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    side = min(width, height)
    return (height - side) // 2, (width - side) // 2, side, side


def train_transform(image, generator: torch.Generator, size: int = SIZE) -> torch.Tensor:
    """A seeded random-resized crop at ``size`` as a ``uint8`` (3, size, size) tensor (flip happens on device)."""
    from torchvision.transforms.v2 import functional as TF

    top, left, h, w = random_resized_crop_box(image.width, image.height, generator)
    return TF.pil_to_tensor(TF.resized_crop(image, top, left, h, w, [size, size], antialias=True))


def eval_transform(image, generator: torch.Generator, size: int = SIZE) -> torch.Tensor:
    """The centre crop of ``EVAL_RATIO`` of the shorter side, resized to ``size``."""
    from torchvision.transforms.v2 import functional as TF

    side = round(min(image.width, image.height) * EVAL_RATIO)
    top, left = (image.height - side) // 2, (image.width - side) // 2
    return TF.pil_to_tensor(TF.resized_crop(image, top, left, side, side, [size, size], antialias=True))


def image_folder_loaders(root: Path, request: LoaderRequest, size: int, dataset: str) -> DataLoaders:
    """The torch loaders of an ImageFolder root (``train/``, ``val/``) with ImageNet's crops at ``size`` pixels."""
    device = request.device
    common = {"seed": request.seed, "num_workers": default_workers(), "pin_memory": device.type == "cuda"}
    train_images = DecodedImages(
        imagenet_samples(root, "train", dataset), functools.partial(train_transform, size=size), request.seed
    )
    test_images = DecodedImages(
        imagenet_samples(root, "val", dataset), functools.partial(eval_transform, size=size), request.seed
    )
    normalize = Normalize(MEAN, STD, device)
    return DataLoaders(
        train=DeviceBatches(
            TorchBatches(train_images, request.batch_size, shuffle=True, **common),
            device,
            normalize,
            seed=request.seed,
            augment=random_flip,
        ),
        test=DeviceBatches(
            TorchBatches(test_images, request.eval_batch_size, shuffle=False, **common), device, normalize
        ),
        kind="torch",
    )
