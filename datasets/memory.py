"""A loader over tensors held in memory (on the training device): no workers, no copies per batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def epoch_generator(seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The generator of one epoch's order and augmentation: a pure function of (seed, epoch), so resumable."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed * 1_000_003 + epoch)
    return generator


class TensorLoader:
    """Batches of ``(inputs[i], targets[i])``; shuffled per epoch from ``(seed, epoch)`` when ``shuffle``.

    ``augment(batch, generator)`` runs on each training batch on the device. The last partial batch is kept.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        augment: Augment | None = None,
    ) -> None:
        if len(inputs) != len(targets):
            raise ValueError(f"{len(inputs)} inputs but {len(targets)} targets")
        self.inputs = inputs
        self.targets = targets
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.augment = augment
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.inputs) // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        count = len(self.inputs)
        generator = epoch_generator(self.seed, self.epoch)
        order = torch.randperm(count, generator=generator) if self.shuffle else torch.arange(count)
        order = order.to(self.inputs.device)
        for start in range(0, count, self.batch_size):
            index = order[start : start + self.batch_size]
            # index_select: what inputs[index] gives, in a fifth of the time on the CPU
            batch = torch.index_select(self.inputs, 0, index)
            if self.augment is not None:
                batch = self.augment(batch, generator)
            yield batch, torch.index_select(self.targets, 0, index)
