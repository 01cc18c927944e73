"""The last stage of every on-disk loader: raw ``uint8`` batches to augmented, normalised batches on the device."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import torch

from prunebench.datasets.augment import BatchAugment, Normalize
from prunebench.datasets.memory import epoch_generator


class RawBatches(Protocol):
    """One epoch of ``(uint8 images (N, C, H, W), int64 labels)`` batches, possibly still on the CPU."""

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...


class DeviceBatches:
    """An :class:`~prunebench.run.trainer.EpochLoader` over ``source``: moves batches to ``device`` (non-blocking),
    augments them with a generator seeded by (seed, epoch), normalises, and on CUDA makes them channels-last."""

    def __init__(
        self,
        source: RawBatches,
        device: torch.device,
        normalize: Normalize,
        *,
        seed: int = 0,
        augment: BatchAugment | None = None,
    ) -> None:
        self.source = source
        self.device = device
        self.normalize = normalize
        self.seed = seed
        self.augment = augment
        self.epoch = 0
        self.memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format

    def __len__(self) -> int:
        return len(self.source)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.source.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = epoch_generator(self.seed, self.epoch)
        for images, labels in self.source:
            images = images.to(self.device, non_blocking=True)
            if self.augment is not None:
                images = self.augment(images, generator)
            images = self.normalize(images).contiguous(memory_format=self.memory_format)
            yield images, labels.to(self.device, non_blocking=True).long()
