"""The automatic ``--batch``: how many runs the batched engine trains together, by device and model size.

On the CPU every run trains alone: there the stacked products run at the rate of the runs' own and the stacked
convolutions (grouped) slower, so a batched step costs more than the runs' steps one after the other
(``scripts/step_time.py --batched 8``, figures in ``docs/batched.md``). On a GPU, where one small run leaves most
of the device idle, small models are stacked by :data:`CUDA_BATCHES`.
"""

from __future__ import annotations

import functools

import torch

from prunebench.run.run_config import RunConfig

CUDA_BATCHES = ((2_000_000, 16), (12_000_000, 8), (30_000_000, 4))
"""(most parameters, runs) on a GPU, smallest models first; a larger model trains alone. Until
``scripts/gpu_check.py`` has measured runs per GPU-hour for each K, these sizes are a choice, not a measurement."""


@functools.cache
def _parameters(dataset: str, model: str) -> int | None:
    """The model's parameter count, built on the meta device (no memory); ``None`` for a model that cannot be built
    there (given weights to load): it then trains alone."""
    from prunebench.datasets import get_dataset
    from prunebench.zoo.model_zoo import build_model, model_is_pretrained

    if model_is_pretrained(model):
        return None
    data = get_dataset(dataset)
    try:
        with torch.device("meta"):
            built = build_model(model, data.input_shape, data.num_classes)
    except Exception:  # noqa: BLE001  (a model that needs real tensors to build: trains alone)
        return None
    return sum(p.numel() for p in built.parameters())


def auto_batch(config: RunConfig, device: torch.device) -> int:
    """The number of runs ``--batch auto`` trains ``config`` with on ``device``: 1 on the CPU, by the model's
    parameter count on a GPU (:data:`CUDA_BATCHES`)."""
    if device.type != "cuda":
        return 1
    parameters = _parameters(config.dataset, config.model)
    if parameters is None:
        return 1
    return next((runs for most, runs in CUDA_BATCHES if parameters <= most), 1)
