"""The torch ``DataLoader`` path: the fallback when FFCV is missing, with the same order and augmentation.

Workers produce whole ``uint8`` batches; :class:`~prunebench.datasets.device_batches.DeviceBatches` augments and
normalises them on the device. ImageNet's random-resized crop must happen at decode time, so it runs in the workers,
seeded per (seed, epoch, sample).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from prunebench.core.errors import UsageError
from prunebench.datasets.order import epoch_order, sample_seed


class EpochBatches(Sampler[np.ndarray]):
    """Batches of indices in the order of :func:`~prunebench.datasets.order.epoch_order`; the last may be short."""

    def __init__(self, count: int, batch_size: int, *, shuffle: bool, seed: int) -> None:
        self.count, self.batch_size, self.shuffle, self.seed = count, batch_size, shuffle, seed
        self.epoch = 0

    def __len__(self) -> int:
        return -(-self.count // self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        order = epoch_order(self.count, self.seed, self.epoch, self.shuffle)
        for start in range(0, self.count, self.batch_size):
            yield order[start : start + self.batch_size]


class ArrayImages(Dataset):
    """Images held as one ``uint8`` array (N, H, W, C); indexing by an array of indices gives a whole batch."""

    def __init__(self, images: np.ndarray, labels: Sequence[int]) -> None:
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.from_numpy(np.ascontiguousarray(self.images[index])).permute(0, 3, 1, 2)
        return images, torch.from_numpy(self.labels[index])


@dataclass(frozen=True)
class Undecodable:
    """What a worker returns for a batch with an image file that cannot be decoded: the file and why. The main
    process raises it as one line (:meth:`TorchBatches.__iter__`), where an exception raised in a worker would
    come back wrapped in the worker's traceback."""

    path: str
    reason: str

    def error(self) -> UsageError:
        return UsageError(f"image {self.path} cannot be decoded ({self.reason})")


class DecodedImages(Dataset):
    """Image files decoded by ``transform(image, generator) -> uint8 tensor (C, H, W)``, one batch per index array.

    The generator of a sample is seeded by (seed, epoch, index): augmentation is reproducible with any worker count.
    A batch with a file that cannot be decoded is :class:`Undecodable`.
    """

    def __init__(
        self,
        samples: Sequence[tuple[str, int]],
        transform: Callable[[object, torch.Generator], torch.Tensor],
        seed: int,
    ) -> None:
        self.samples = samples
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor] | Undecodable:
        from PIL import Image

        images, labels = [], []
        for item in index.tolist():
            path, label = self.samples[item]
            generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, item))
            try:
                with Image.open(path) as image:
                    rgb = image.convert("RGB")
            except Exception as error:  # noqa: BLE001  (PIL raises OSError, SyntaxError, ValueError, ...)
                return Undecodable(str(path), " ".join(f"{type(error).__name__}: {error}".split()))
            images.append(self.transform(rgb, generator))
            labels.append(label)
        return torch.stack(images), torch.tensor(labels, dtype=torch.int64)


class TorchBatches:
    """One epoch of raw batches from a torch ``DataLoader`` over ``dataset`` (``ArrayImages`` or ``DecodedImages``)."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        num_workers: int,
        pin_memory: bool = False,
    ) -> None:
        self.dataset = dataset
        self.sampler = EpochBatches(len(dataset), batch_size, shuffle=shuffle, seed=seed)
        self.loader = DataLoader(
            dataset,
            batch_size=None,
            sampler=self.sampler,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=False,
            prefetch_factor=4 if num_workers else None,
        )

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.epoch = epoch
        if isinstance(self.dataset, DecodedImages):
            self.dataset.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.loader:
            if isinstance(batch, Undecodable):
                raise batch.error()
            yield batch
