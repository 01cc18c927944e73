"""The FFCV path: ``.beton`` files decoded by CPU workers (numba), then moved to the device by FFCV.

``ffcv`` is an optional extra (``pip install prunebench[ffcv]``, with libturbojpeg and OpenCV on the system) and is
imported only here, lazily: ``import ffcv`` takes seconds and each ``Loader`` compiles its pipeline with numba on
first use, so loaders are built once per run and reused across epochs.

Order is FFCV's RANDOM order seeded by :func:`~prunebench.datasets.order.order_seed`, the order the torch loader
replays. Augmentation that can wait for the device (crop with padding, flip) is not done by FFCV's numba transforms,
whose random draws cannot be seeded, but on the device by
:class:`~prunebench.datasets.device_batches.DeviceBatches`, with the seeded generator both loaders share.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from prunebench.datasets.order import order_seed


@functools.cache
def ffcv_problem() -> str | None:
    """Why FFCV cannot be used here (``None`` when it can): the package or its system libraries are missing."""
    try:
        import ffcv.loader  # noqa: F401
    except Exception as error:  # noqa: BLE001  (a missing shared library raises ImportError or OSError)
        return f"{type(error).__name__}: {error}"
    _silence_numba_teardown()
    return None


def _silence_numba_teardown() -> None:
    """Drop the ``Exception ignored ... KeyError`` numba prints when a compiled FFCV pipeline is collected."""
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyError) and "numba" in repr(unraisable.object) + str(
            getattr(unraisable, "err_msg", "")
        ):
            return
        previous(unraisable)

    sys.unraisablehook = hook


class FFCVBatches:
    """One epoch of raw ``uint8`` (N, C, H, W) batches and labels from an FFCV ``Loader`` over ``path``.

    ``decoder`` is an FFCV image decoder (``None``: decode at the stored size). On CUDA the batches arrive on the
    device through FFCV's ``ToDevice`` (non-blocking); ``ToTorchImage`` gives an (N, C, H, W) view without a copy.
    Batches live in FFCV's reused buffers: consume (or copy) each before taking the next few.
    """

    def __init__(
        self,
        path: Path,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        device: torch.device,
        num_workers: int,
        decoder: Any = None,
    ) -> None:
        from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder
        from ffcv.loader import Loader, OrderOption
        from ffcv.transforms import ToDevice, ToTensor, ToTorchImage

        on_device = [ToDevice(device, non_blocking=True)] if device.type == "cuda" else []
        self.loader = Loader(
            str(path),
            batch_size=batch_size,
            num_workers=num_workers,
            order=OrderOption.RANDOM if shuffle else OrderOption.SEQUENTIAL,
            seed=order_seed(seed),
            drop_last=False,
            pipelines={
                "image": [decoder or SimpleRGBImageDecoder(), ToTensor(), *on_device, ToTorchImage()],
                "label": [IntDecoder(), ToTensor(), *on_device],
            },
        )

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.next_epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in self.loader:
            yield images, labels.view(-1)
