"""ImageNet (ILSVRC-2012) from an ImageFolder layout, through FFCV or the torch DataLoader.

The root holds ``train/<class>/*`` and ``val/<class>/*`` (classes in the same folders as train), read with
ImageNet's crops (:mod:`prunebench.datasets.image_folder`). With the torch loader the crops are seeded per
(seed, epoch, sample); with FFCV they are drawn by FFCV's numba decoder, which cannot be seeded (order and flips are).
"""

from __future__ import annotations

from prunebench.datasets.augment import Normalize, random_flip
from prunebench.datasets.data_files import beton_files, choose_loader, data_root, default_beton_dir
from prunebench.datasets.dataset_registry import register_dataset
from prunebench.datasets.device_batches import DeviceBatches
from prunebench.datasets.ffcv_loaders import FFCVBatches
from prunebench.datasets.image_folder import (
    EVAL_RATIO,
    MEAN,
    RATIO,
    SCALE,
    SIZE,
    STD,
    check_image_folder,
    eval_transform,
    image_folder_loaders,
    imagenet_samples,
)
from prunebench.datasets.order import default_workers
from prunebench.datasets.spec import DataLoaders, LoaderRequest

__all__ = ["check_imagenet", "eval_transform", "imagenet", "imagenet_samples"]
"""ImageNet's own names, and its samples and evaluation crop (:mod:`prunebench.datasets.image_folder`)."""


def check_imagenet(request: LoaderRequest) -> None:
    """That the loader ``request`` asks for finds its files: the FFCV files, or the ImageFolder layout."""
    root = data_root(request.data_root)
    if choose_loader(request, "imagenet", beton_files(default_beton_dir(root), "imagenet")) == "torch":
        check_image_folder(root, "imagenet")


@register_dataset(
    "imagenet",
    num_classes=1000,
    input_shape=(3, SIZE, SIZE),
    summary="ImageNet-1k (ILSVRC-2012), random-resized crop 224 + flip; centre crop 224/256 for evaluation",
    source="Russakovsky et al. 2015; ImageFolder layout under --data-root, FFCV files from `bench data prepare`",
    check=check_imagenet,
)
def imagenet(request: LoaderRequest) -> DataLoaders:
    root = data_root(request.data_root)
    files = beton_files(default_beton_dir(root), "imagenet")
    if choose_loader(request, "imagenet", files) == "torch":
        return image_folder_loaders(root, request, SIZE, "imagenet")
    from ffcv.fields.decoders import CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder

    device = request.device
    common = {"seed": request.seed, "device": device, "num_workers": default_workers()}
    decoder = RandomResizedCropRGBImageDecoder((SIZE, SIZE), scale=SCALE, ratio=RATIO)
    train = FFCVBatches(files.train, request.batch_size, shuffle=True, decoder=decoder, **common)
    decoder = CenterCropRGBImageDecoder((SIZE, SIZE), ratio=EVAL_RATIO)
    test = FFCVBatches(files.test, request.eval_batch_size, shuffle=False, decoder=decoder, **common)
    normalize = Normalize(MEAN, STD, device)
    return DataLoaders(
        train=DeviceBatches(train, device, normalize, seed=request.seed, augment=random_flip),
        test=DeviceBatches(test, device, normalize),
        kind="ffcv",
    )
