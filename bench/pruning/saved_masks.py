"""Saved masks: every pruned run's final mask, bit-packed and compressed next to its record.

A finished pruned run stores ``runs/<run_id>.mask.npz`` beside ``runs/<run_id>.json``: one ``np.packbits`` array of
every prunable weight's keep flags in module order (each flattened in row-major order, then concatenated), the
layer names and their shapes. A 1.3M-weight LeNet-300-100 mask takes about 165 kB before compression, far less
after at high sparsity. The file is written atomically *before* the record (:meth:`ResultStore.save
<prunebench.grid.result_store.ResultStore.save>`), so a record never exists without its mask.

The final mask is the support of the final weights: a prunable weight is kept when it is not exactly zero, the same
count the record's achieved sparsity and per-layer densities come from (a kept weight that training drove to exactly
0.0 counts as pruned there and here alike). Dense runs, failed runs and runs recorded before masks were saved have
no mask.

A file is read only after its arrays' headers agree with each other and with the run's record beside it (layer
names, shapes, bit count), and its kept counts are checked against the record's per-layer non-zero counts: a
truncated, empty or edited file is a one-line :class:`UsageError` naming it, never a guess.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from prunebench.core.atomic_files import atomic_file
from prunebench.core.checked_npz import read_checked_array
from prunebench.core.errors import UsageError
from prunebench.run.run_record import read_record

if TYPE_CHECKING:
    import torch

MASK_KEY = "_mask"
"""The record key under which the runner hands a run's packed mask to the store; it never reaches the JSON."""
SUFFIX = ".mask.npz"
RUN_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
"""A run id names one file of ``runs/``: letters, digits, ``_`` and ``-`` only (a real id is 16 hex digits)."""


class MissingMask(UsageError):
    """The run has no saved mask (a dense or failed run, or one recorded before masks were saved)."""


def mask_path(results_dir: Path, run_id: str) -> Path:
    """Where the mask of ``run_id`` lies in the results directory ``results_dir``; a run id that is not a plain name
    (a record edited to ``../elsewhere``) is a :class:`UsageError`, so that no path leaves ``runs/``."""
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise UsageError(
            f"{run_id!r} is not a run id (letters, digits, _ and - only, e.g. 00b0959e79394f3b); "
            f"no mask is read or written by it in {results_dir}"
        )
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
    with atomic_file(path, "wb") as stream:
        np.savez_compressed(stream, **arrays)


def read_mask(results_dir: Path, run_id: str) -> dict[str, np.ndarray]:
    """The saved mask of ``run_id`` as boolean arrays, checked against the run's record where it has one.

    No mask: a :class:`MissingMask`. A file outside the results directory (through a link), or one that is damaged
    or disagrees with the record: a one-line :class:`UsageError` naming it.
    """
    path = mask_path(results_dir, run_id)
    if not path.exists():
        raise MissingMask(
            f"no saved mask for run {run_id} in {results_dir} (dense runs, failed runs and runs recorded before "
            "masks were saved have none)"
        )
    if not path.resolve().is_relative_to(Path(results_dir).resolve()):
        raise UsageError(
            f"{path} leads outside {results_dir} (to {path.resolve()}); a mask is read only inside"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            masks = _read_checked(archive, _recorded_layers(Path(results_dir), run_id))
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError, KeyError) as error:
        reason = f"{type(error).__name__}: {error}" if not isinstance(error, _Damaged) else str(error)
        raise UsageError(f"{path} is not a readable mask ({reason})") from None
    return masks


class _Damaged(ValueError):
    """A mask file whose contents disagree with themselves or with the run's record."""


def _recorded_layers(results_dir: Path, run_id: str) -> list[Mapping[str, Any]] | None:
    """The per-layer accounting (name, shape, non-zero count) of the usable record of ``run_id``, if there is one."""
    record, _ = read_record(Path(results_dir) / "runs" / f"{run_id}.json", run_id)
    layers = record.get("layers") if record is not None else None
    return layers if isinstance(layers, list) else None


def _read_checked(
    archive: zipfile.ZipFile, layers: Sequence[Mapping[str, Any]] | None
) -> dict[str, np.ndarray]:
    """The masks of an open mask file: the small arrays first, then the bits only when their length is the one the
    layer shapes (and the record) call for, so that no header can make it allocate more than the file holds."""
    names = [str(n) for n in _array(archive, "names", char="U", ndim=1)]
    shapes = _shapes(str(_array(archive, "shapes", char="U", ndim=0)), len(names))
    if layers is not None:
        recorded = [(str(layer.get("name")), layer.get("shape")) for layer in layers]
        if recorded != [(name, list(shape)) for name, shape in zip(names, shapes, strict=True)]:
            raise _Damaged("its layer names or shapes differ from the run's record")
    total = sum(math.prod(shape) for shape in shapes)
    bits = _array(archive, "bits", char="B", ndim=1, length=-(-total // 8))
    masks = unpack({"bits": bits, "names": np.array(names), "shapes": np.array(json.dumps(shapes))})
    for layer in layers or ():
        kept = int(np.count_nonzero(masks[str(layer["name"])]))
        if kept != layer.get("nonzero", kept):
            raise _Damaged(
                f"it keeps {kept} weights of {layer['name']}, the run's record counts {layer['nonzero']}"
            )
    return masks


def _array(archive: zipfile.ZipFile, key: str, char: str, ndim: int, length: int | None = None) -> np.ndarray:
    """The array ``key`` of a ``.npz`` archive, its header checked (dtype, dimensions, ``length``, and its data
    size against the archive's stated size) before its data is read."""

    def accept(dtype: np.dtype, shape: tuple[int, ...]) -> str | None:
        if dtype.char != char or len(shape) != ndim:
            return f"holds {dtype} of shape {shape}"
        if length is not None and shape != (length,):
            return f"holds {shape[0]} bytes, the layer shapes call for {length}"
        return None

    return read_checked_array(archive, key, accept, _Damaged)


def _shapes(text: str, count: int) -> list[list[int]]:
    """The layer shapes of a mask file: ``count`` lists of non-negative integers."""
    shapes = json.loads(text)
    valid = isinstance(shapes, list) and len(shapes) == count
    if valid:
        valid = all(
            isinstance(shape, list)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
            for shape in shapes
        )
    if not valid:
        raise _Damaged(f"its shapes {text[:80]!r} are not one list of sizes per layer ({count} layers)")
    return shapes


def load_mask(results_dir: str | Path, run_id: str) -> dict[str, torch.Tensor]:
    """The final mask of run ``run_id`` in the results directory ``results_dir``, exactly as it was saved.

    Boolean tensors keyed as in ``model.named_parameters()`` (the run's prunable set, in module order), ready for
    :func:`prunebench.apply_masks`.
    """
    import torch

    return {
        name: torch.from_numpy(mask.copy()) for name, mask in read_mask(Path(results_dir), run_id).items()
    }
