"""Saved masks: every pruned run's final mask, bit-packed and compressed next to its record.

A finished pruned run stores ``runs/<run_id>.mask.npz`` beside ``runs/<run_id>.json``: one ``np.packbits`` array of
every prunable weight's keep flags in module order (each flattened in row-major order, then concatenated), the
layer names and their shapes. A 1.3M-weight LeNet-300-100 mask takes about 165 kB before compression, far less
after at high sparsity. The file is written atomically *before* the record (:meth:`ResultStore.save
<prunebench.results.ResultStore.save>`), so a record never exists without its mask.

The final mask is the support of the final weights: a prunable weight is kept when it is not exactly zero, the same
count the record's achieved sparsity and per-layer densities come from (a kept weight that training drove to exactly
0.0 counts as pruned there and here alike). Dense runs, failed runs and runs recorded before masks were saved have
no mask.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from prunebench.errors import UsageError

if TYPE_CHECKING:
    import torch

MASK_KEY = "_mask"
"""The record key under which the runner hands a run's packed mask to the store; it never reaches the JSON."""
SUFFIX = ".mask.npz"


def mask_path(results_dir: Path, run_id: str) -> Path:
    """Where the mask of ``run_id`` lies in the results directory ``results_dir``."""
    return Path(results_dir) / "runs" / f"{run_id}{SUFFIX}"


def pack(masks: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Boolean masks (torch tensors or arrays, module order) as the arrays the file holds."""
    names = list(masks)
    flags = [np.asarray(_numpy(masks[name]), dtype=bool) for name in names]
    flat = np.concatenate([f.reshape(-1) for f in flags]) if flags else np.zeros(0, dtype=bool)
    return {
        "bits": np.packbits(flat),
        "names": np.array(names, dtype=str),
        "shapes": np.array(json.dumps([list(f.shape) for f in flags])),
    }


def _numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def unpack(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The boolean mask of every layer, shaped as its weight, from :func:`pack`'s arrays."""
    names = [str(n) for n in arrays["names"]]
    shapes = [tuple(s) for s in json.loads(str(arrays["shapes"]))]
    sizes = [math.prod(s) for s in shapes]
    flat = np.unpackbits(arrays["bits"], count=sum(sizes)).astype(bool)
    masks, start = {}, 0
    for name, shape, size in zip(names, shapes, sizes, strict=True):
        masks[name] = flat[start : start + size].reshape(shape)
        start += size
    return masks


def write_mask(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write packed masks to ``path`` atomically (compressed ``.npz``)."""
    from prunebench.results import atomic_file

    with atomic_file(path, "wb") as stream:
        np.savez_compressed(stream, **arrays)


def read_mask(results_dir: Path, run_id: str) -> dict[str, np.ndarray]:
    """The saved mask of ``run_id`` as boolean arrays; a one-line :class:`UsageError` where there is none."""
    path = mask_path(results_dir, run_id)
    try:
        with np.load(path, allow_pickle=False) as data:
            return unpack({key: data[key] for key in data.files})
    except FileNotFoundError:
        raise UsageError(
            f"no saved mask for run {run_id} in {results_dir} (dense runs, failed runs and runs recorded before "
            "masks were saved have none)"
        ) from None
    except (OSError, ValueError, KeyError) as error:
        raise UsageError(f"{path} is not a readable mask ({type(error).__name__}: {error})") from None


def load_mask(results_dir: str | Path, run_id: str) -> dict[str, torch.Tensor]:
    """The final mask of run ``run_id`` in the results directory ``results_dir``, exactly as it was saved.

    Boolean tensors keyed as in ``model.named_parameters()`` (the run's prunable set, in module order), ready for
    :func:`prunebench.apply_masks`.
    """
    import torch

    return {
        name: torch.from_numpy(mask.copy()) for name, mask in read_mask(Path(results_dir), run_id).items()
    }
