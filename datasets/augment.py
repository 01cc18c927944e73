"""Batch augmentation and normalisation on the training device, seeded by a generator.

Every loader (FFCV or torch) hands over ``uint8`` image batches (N, C, H, W); these functions do the rest on the
device where the model lives. The random draws come from a CPU :class:`torch.Generator` (see
:func:`~prunebench.datasets.memory.epoch_generator`), so augmentation is a pure function of (seed, epoch, batch)
and identical on any device and with either loader.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

BatchAugment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image horizontally with probability 1/2."""
    flip = (torch.rand(len(images), generator=generator) < 0.5).to(images.device, non_blocking=True)
    out = images.clone()
    out[flip] = images[flip].flip(-1)
    return out


def random_crop(
    images: torch.Tensor, generator: torch.Generator, padding: int, *, flip: bool = False
) -> torch.Tensor:
    """Zero-pad by ``padding`` on every side and take a random crop of the original size per image.

    With ``flip``, each crop is also mirrored horizontally with probability 1/2. On CUDA the crops are one gather;
    on the CPU, where gathers of bytes are slow, one slice per distinct offset (at most ``(2 padding + 1)^2``).
    Both give the same images for the same generator.
    """
    count = len(images)
    offsets = torch.randint(0, 2 * padding + 1, (2, count), generator=generator)
    mirrored = torch.rand(count, generator=generator) < 0.5 if flip else torch.zeros(count, dtype=torch.bool)
    crop = crop_by_gather if images.is_cuda else crop_by_slices
    return crop(images, padding, offsets.to(images.device), mirrored.to(images.device))


def crop_by_gather(
    images: torch.Tensor, padding: int, offsets: torch.Tensor, mirrored: torch.Tensor
) -> torch.Tensor:
    """Crops at ``offsets`` (2, N) of the padded images, mirrored where ``mirrored``, as one gather."""
    count, channels, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding)).flatten(2)
    rows = offsets[0][:, None] + torch.arange(height, device=images.device)
    columns = torch.arange(width, device=images.device).expand(count, width)
    columns = offsets[1][:, None] + torch.where(mirrored[:, None], columns.flip(-1), columns)
    flat = (rows[:, :, None] * (width + 2 * padding) + columns[:, None, :]).flatten(1)
    return padded.gather(2, flat[:, None, :].expand(count, channels, height * width)).view(images.shape)


def crop_by_slices(
    images: torch.Tensor, padding: int, offsets: torch.Tensor, mirrored: torch.Tensor
) -> torch.Tensor:
    """The same crops as :func:`crop_by_gather`, one slice copy per distinct offset."""
    height, width = images.shape[2:]
    span = 2 * padding + 1
    padded = F.pad(images, (padding, padding, padding, padding))
    crops = torch.empty_like(images)
    keys = offsets[0] * span + offsets[1]
    for key in keys.unique().tolist():
        chosen = (keys == key).nonzero().flatten()
        top, left = divmod(key, span)
        crops[chosen] = padded[chosen, :, top : top + height, left : left + width]
    crops[mirrored] = crops[mirrored].flip(-1)
    return crops


def cifar_augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The standard CIFAR augmentation: random crop with padding 4 and a random horizontal flip."""
    return random_crop(images, generator, 4, flip=True)


class Normalize:
    """``uint8`` images to float, minus ``mean``, over ``std`` (per channel, on the 0-255 scale)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> None:
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255.0
        self.scale = 1.0 / (torch.tensor(std, device=device).view(1, -1, 1, 1) * 255.0)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().sub_(self.mean).mul_(self.scale)
