"""The sample order of an epoch, shared by the FFCV and torch loaders so that both visit the same batches."""

from __future__ import annotations

import os

import numpy as np

SEED_STRIDE = 1_000_003
"""Seeds are spread by this stride so that (seed, epoch) pairs never collide (as in ``epoch_generator``)."""


def order_seed(seed: int) -> int:
    """The seed handed to FFCV's ``Loader``: it permutes with ``default_rng(order_seed + epoch)``."""
    return seed * SEED_STRIDE


def epoch_order(count: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The indices of one epoch: FFCV's RANDOM order for (seed, epoch), or 0..count-1 without ``shuffle``."""
    if not shuffle:
        return np.arange(count)
    return np.random.default_rng(order_seed(seed) + epoch).permutation(count)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's augmentation in one epoch (decode-time augmentation of the torch loader)."""
    return ((seed * SEED_STRIDE + epoch) * 10_000_019 + index) % (2**63)


def default_workers() -> int:
    """Loader worker processes: the CPUs this process may use, at most 8."""
    return max(1, min(8, len(os.sched_getaffinity(0))))
