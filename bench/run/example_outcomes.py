"""Per-example outcome files: which test examples a run's final model got right, one bit each, beside its record.

A finished run may store ``runs/<run_id>.outcomes.npz`` beside ``runs/<run_id>.json``: its top-1 correctness on
every test example in the order the test set is evaluated (``top1``, ``np.packbits`` of one flag per example), its
top-5 correctness (``top5``) when given, and the example count (``count``). 10,000 examples take 1.25 kB a metric.
Two runs on the same test set then pair example by example, which is what a comparison of two cells over seeds
*and* test examples needs (:mod:`prunebench.leaderboard.uncertainty`).

A file is written whole or not at all (:func:`prunebench.core.atomic_files.atomic_file`) and read the way saved masks
are (:mod:`prunebench.pruning.saved_masks`): every array's header is checked before its data is read (dtype,
dimensions, length against the count, size against what the archive holds), the padding bits after the last example
must be 0, and the file must agree with the run's record beside it: the count with the record's test-set size
(:data:`TEST_SIZE_FIELD`) where the record has one, and the accuracy the bits give with the record's ``top1`` (and
``top5``) within float rounding. A truncated, empty or edited file is a one-line :class:`UsageError` naming it.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from prunebench.core.atomic_files import atomic_file
from prunebench.core.checked_npz import read_checked_array
from prunebench.core.errors import UsageError
from prunebench.pruning.saved_masks import RUN_ID
from prunebench.run.run_record import read_record

SUFFIX = ".outcomes.npz"
OUTCOMES_KEY = "_outcomes"
"""The record key under which the runner hands a run's packed outcomes to the store; it never reaches the JSON."""
METRICS = ("top1", "top5")
"""The outcome arrays a file may hold: ``top1`` always, ``top5`` when it was given."""
TEST_SIZE_FIELD = "test_examples"
"""The record field of the test set's size, checked against a file's count where a record has it."""
ROUNDING = 1e-9
"""How far (in points) an accuracy recomputed from the bits may be from the record's: the runner divides the same
integer count by the same size, so only the last bits of a float may differ."""


class _Damaged(ValueError):
    """An outcome file whose contents disagree with themselves or with the run's record."""


def outcomes_path(results_dir: Path, run_id: str) -> Path:
    """Where the outcome file of ``run_id`` lies in ``results_dir``; a run id that is not a plain name (letters,
    digits, ``_`` and ``-``) is a :class:`UsageError`, so that no path leaves ``runs/``."""
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise UsageError(
            f"{run_id!r} is not a run id (letters, digits, _ and - only, e.g. 00b0959e79394f3b); "
            f"no outcome file is read or written by it in {results_dir}"
        )
    return Path(results_dir) / "runs" / f"{run_id}{SUFFIX}"


def pack_outcomes(top1: np.ndarray, top5: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-example correctness (boolean, one flag per test example, in evaluation order) as the file's arrays."""
    flags = {"top1": np.asarray(top1, dtype=bool).reshape(-1)}
    if top5 is not None:
        flags["top5"] = np.asarray(top5, dtype=bool).reshape(-1)
        if len(flags["top5"]) != len(flags["top1"]):
            raise ValueError(f"top5 has {len(flags['top5'])} outcomes, top1 {len(flags['top1'])}")
    arrays = {name: np.packbits(value) for name, value in flags.items()}
    arrays["count"] = np.array(len(flags["top1"]), dtype=np.int64)
    return arrays


def write_outcomes(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write :func:`pack_outcomes`' arrays to ``path`` atomically (compressed ``.npz``)."""
    with atomic_file(Path(path), "wb") as stream:
        np.savez_compressed(stream, **arrays)


def read_outcomes(results_dir: Path, run_id: str) -> dict[str, np.ndarray] | None:
    """The per-example correctness of ``run_id`` (``top1``, and ``top5`` where stored: boolean arrays of one flag per
    test example), checked against the run's record where it has one; ``None`` when the run has no outcome file.

    A file outside the results directory (through a link), or one that is damaged or disagrees with the record: a
    one-line :class:`UsageError` naming it.
    """
    path = outcomes_path(results_dir, run_id)
    if not path.exists():
        return None
    if not path.resolve().is_relative_to(Path(results_dir).resolve()):
        raise UsageError(
            f"{path} leads outside {results_dir} (to {path.resolve()}); outcomes are read only inside"
        )
    record, _ = read_record(Path(results_dir) / "runs" / f"{run_id}.json", run_id)
    try:
        with zipfile.ZipFile(path) as archive:
            outcomes = _read_checked(archive)
        if record is not None:
            _check_against(outcomes, record)
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError, KeyError) as error:
        reason = str(error) if isinstance(error, _Damaged) else f"{type(error).__name__}: {error}"
        raise UsageError(f"{path} is not a readable outcome file ({reason})") from None
    return outcomes


def _read_checked(archive: zipfile.ZipFile) -> dict[str, np.ndarray]:
    """The outcomes of an open file: the count first, then each metric's bits only when their length is the one the
    count calls for, so that no header can make it allocate more than the file holds."""
    count = int(_array(archive, "count", kind="i8", shape=()))
    if count < 1:
        raise _Damaged(f"it counts {count} examples")
    names = {Path(name).stem for name in archive.namelist()}
    if "top1" not in names or not names <= {"count", *METRICS}:
        raise _Damaged(f"it holds {sorted(names)}, not count, top1 and optionally top5")
    outcomes = {}
    for metric in (m for m in METRICS if m in names):
        bits = _array(archive, metric, kind="u1", shape=(-(-count // 8),))
        flags = np.unpackbits(bits)
        if flags[count:].any():
            raise _Damaged(f"{metric} has bits set after its {count} examples")
        outcomes[metric] = flags[:count].astype(bool)
    return outcomes


def _check_against(outcomes: Mapping[str, np.ndarray], record: Mapping[str, Any]) -> None:
    """The file agrees with the run's record: its count with the test-set size, its accuracies with the record's."""
    count = len(outcomes["top1"])
    size = record.get(TEST_SIZE_FIELD)
    if isinstance(size, int) and size != count:
        raise _Damaged(f"it holds {count} examples, the run's record {TEST_SIZE_FIELD} {size}")
    for metric, flags in outcomes.items():
        recorded = record.get(metric)
        if not isinstance(recorded, int | float) or isinstance(recorded, bool):
            continue
        accuracy = 100.0 * int(flags.sum()) / count
        if not math.isclose(accuracy, recorded, rel_tol=0.0, abs_tol=ROUNDING):
            raise _Damaged(f"its {metric} is {accuracy:.4f}%, the run's record says {recorded}")


def _array(archive: zipfile.ZipFile, key: str, kind: str, shape: tuple[int, ...]) -> np.ndarray:
    """The array ``key`` of a ``.npz`` archive, its header checked (``kind``: the dtype's kind and size, ``i8`` or
    ``u1``; ``shape``; its data size against the archive's stated size) before its data is read."""

    def accept(dtype: np.dtype, found: tuple[int, ...]) -> str | None:
        ok = f"{dtype.kind}{dtype.itemsize}" == kind and found == shape
        return None if ok else f"holds {dtype} of shape {found}, not of shape {shape}"

    return read_checked_array(archive, key, accept, _Damaged)
