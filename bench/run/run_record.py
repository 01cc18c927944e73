"""The run record: what the runner writes for every run and the leaderboard reads, declared once.

A record is a JSON object. :class:`RunHead` lists the fields every record has, whatever its status;
:class:`RunResults` those a finished run (status ``ok``) has in addition. :func:`problem` checks a record against
these declarations; resume and the leaderboard share it, so a record the leaderboard would skip is never counted
as finished.

Records of the first format (``version`` 1, before run identity) are still read by the leaderboard
(:func:`from_legacy`); ``bench run`` does not resume from them, because their ids did not include the method's
hyperparameters or any code version.
"""

from __future__ import annotations

import functools
import json
import math
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypedDict, Union, get_args, get_origin, get_type_hints

RECORD_VERSION = 2
"""Version of the record layout."""

LEGACY_VERSION = 1
STATUSES = ("ok", "failed", "diverged")
FINISHED = ("ok", "diverged")
"""Statuses that count as finished (skipped on resume). Failed runs are retried."""


class LayerRecord(TypedDict):
    """One prunable weight of the final model, counted from its weights that are exactly zero."""

    name: str
    shape: list[int]
    size: int
    nonzero: int
    density: float
    flops_dense: float
    flops_sparse: float


class MachineRecord(TypedDict, total=False):
    """The machine under a run (:func:`prunebench.core.environment.machine`): what a result's last bits depend on
    besides the code. ``cpu``, ``cpu_capability``, ``arch`` and ``threads`` always; the ``cuda_*`` fields and
    ``cudnn`` on a CUDA device (``cuda_driver`` and ``cudnn`` ``None`` where they could not be read)."""

    cpu: str
    cpu_capability: str
    """The instruction set torch's CPU kernels dispatch to (``torch.backends.cpu.get_cpu_capability()``)."""
    arch: str
    threads: int
    cuda_device: str
    cuda_capability: str
    cuda_driver: str | None
    cuda_runtime: str | None
    cudnn: int | None


class RunHead(TypedDict):
    """Fields of every record."""

    version: int
    run_id: str
    status: Literal["ok", "failed", "diverged"]
    config: dict[str, Any]
    """The run's identity (what ``run_id`` hashes) and ``preset``, where it came from."""
    dataset: str
    model: str
    preset: str
    method: str
    variant: str
    """The hyperparameters that differ from the defaults, e.g. ``samples=4`` ('' for the defaults)."""
    criterion: str
    schedule: str
    scope: str
    sparsity: float
    seed: int
    hparams: dict[str, Any]
    device: str
    versions: dict[str, str]
    """Library versions and ``prunebench`` itself, with the git commit when run from a checkout."""
    wall_time_s: float
    finished_at: str


class RunResults(TypedDict):
    """Fields of a run that finished (status ``ok``)."""

    top1: float
    top5: float
    loss: float
    train_loss: float
    achieved_sparsity: float
    prunable_weights: int
    prunable_nonzero: int
    params_total: int
    params_nonzero: int
    compression_ratio: float
    flops_dense: float
    flops_sparse: float
    speedup: float
    min_layer_density: float
    collapsed: bool
    layers: list[LayerRecord]
    method_sparsity: float | None
    enforcement: str | None
    method_details: dict[str, Any] | None
    epochs: dict[str, Any]
    loader: str
    precision: str


class RunRecord(RunHead, RunResults, total=False):
    """A whole record: :class:`RunHead`, and :class:`RunResults` when the run finished; ``error`` and
    ``traceback`` when it did not. ``threads`` (torch's intra-op threads, which change the last bits of
    floating-point reductions), ``deterministic`` (``--deterministic``), ``source``, ``machine`` and ``test_examples`` (the size
    of the test set of a finished run, whose per-example outcomes lie beside the record) are in every record written
    since they were added, absent from older ones."""

    error: str
    traceback: str
    control: str
    """``shuffle`` or ``reinit`` for an allocation control (:mod:`prunebench.run.allocation_controls`); absent otherwise."""
    group: str
    """The comparison group inside each layer (``per_output``, an N:M pattern such as ``2:4``;
    :mod:`prunebench.pruning.comparison_groups`); absent for the default ``per_layer``."""
    perplexity: float
    """``exp`` of the mean next-token negative log-likelihood (``loss``) of a finished language-model run (logits
    ``[B, T, V]``, :func:`prunebench.run.trainer.evaluate_examples`); absent for classifiers."""
    pretrained: str
    """The SHA-256 of a pretrained model's weights (the run's identity's ``weights``); absent for a model that
    starts from its seed's initialization."""
    threads: int
    deterministic: bool
    source: dict[str, str]
    """Fingerprints of the code that wrote the record, ``method`` and ``harness``
    (:mod:`prunebench.run.source_fingerprint`); ``method`` is absent when the method could not be resolved."""
    machine: MachineRecord
    """The CPU model and capability, threads and CUDA device under the run; absent from records written before it
    was added, checked where present (:func:`problem`)."""
    engine: dict[str, Any]
    """Where the batched engine trained phases of the run (:mod:`prunebench.run.batched_engine`): ``name``
    (``vmap``) and ``phases``, the phases it trained; absent for a run trained alone."""


def _matches(value: Any, annotation: Any) -> bool:
    """Whether ``value`` (parsed JSON) has the declared type: numbers, strings, booleans, lists, objects, None."""
    return _check(annotation)(value)


@functools.cache
def _check(annotation: Any) -> Callable[[Any], bool]:
    """The test of :func:`_matches` for ``annotation``, worked out once per annotation (a leaderboard of 20,000
    records checks each field of each record)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        members = [_check(member) for member in get_args(annotation)]
        return lambda value: any(member(value) for member in members)
    if origin is Literal:
        allowed = get_args(annotation)
        return lambda value: value in allowed
    if annotation is type(None):
        return lambda value: value is None
    if annotation is bool:
        return lambda value: isinstance(value, bool)
    if annotation is int:
        return lambda value: isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return lambda value: isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is str:
        return lambda value: isinstance(value, str)
    if origin is list or annotation is list:
        return lambda value: isinstance(value, list)
    if origin is dict or annotation is dict or isinstance(annotation, type) and issubclass(annotation, dict):
        return lambda value: isinstance(value, dict)
    return lambda value: True


@functools.cache
def _fields(declared: type) -> tuple[tuple[str, Any, Callable[[Any], bool]], ...]:
    """Each field of a record type with its type and its test (resolved once)."""
    return tuple((name, hint, _check(hint)) for name, hint in get_type_hints(declared).items())


def _wrong_fields(record: dict[str, Any], declared: type) -> list[str]:
    missing, wrong = [], []
    for name, hint, test in _fields(declared):
        if name not in record:
            missing.append(name)
        elif not test(record[name]):
            wrong.append(f"{name} (not {_type_name(hint)})")
    return [*missing, *wrong]


def _wrong_machine(record: dict[str, Any]) -> list[str]:
    """What is wrong with the record's ``machine`` where it has one: not an object, or a field of
    :class:`MachineRecord` of another type (fields may be absent; unknown ones are kept as they are)."""
    if "machine" not in record:
        return []
    found = record["machine"]
    if not isinstance(found, dict):
        return ["machine (not an object)"]
    return [
        f"machine.{name} (not {_type_name(hint)})"
        for name, hint, test in _fields(MachineRecord)
        if name in found and not test(found[name])
    ]


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def problem(record: Any) -> str | None:
    """Why ``record`` is not a usable record of the current format, or ``None`` when it is.

    A usable record has every :class:`RunHead` field with its declared type, a known status, a well-formed
    ``machine`` where it has one, and, when its status is ``ok``, every :class:`RunResults` field with a finite
    ``top1``.
    """
    if not isinstance(record, dict):
        return f"not a JSON object but {type(record).__name__}"
    if record.get("version") != RECORD_VERSION:
        return f"record version {record.get('version')!r}, this prunebench writes version {RECORD_VERSION}"
    bad = _wrong_fields(record, RunHead) + _wrong_machine(record)
    if record.get("status") == "ok":
        bad += _wrong_fields(record, RunResults)
        if not bad and not math.isfinite(record["top1"]):
            bad.append("top1 (not finite)")
    if bad:
        return f"malformed record (missing or wrong: {', '.join(bad)})"
    return None


def from_legacy(record: dict[str, Any]) -> dict[str, Any] | None:
    """A version-1 record in the current layout, to be read as it is; ``None`` when it is not a usable one.

    Version 1 had no variants (every run used the defaults of its day), no criterion (the method was its own) and
    kept the hyperparameters as ``method_hparams``.
    """
    if not isinstance(record, dict) or record.get("version") != LEGACY_VERSION:
        return None
    upgraded = {
        **record,
        "version": RECORD_VERSION,
        "variant": "",
        "criterion": record.get("method"),
        "hparams": record.get("method_hparams") or {},
    }
    upgraded.setdefault("train_loss", math.nan)
    return upgraded if problem(upgraded) is None else None


def read_record(path: Path, run_id: str) -> tuple[RunRecord | None, str | None]:
    """The usable record of ``run_id`` in the file ``path``, or ``None`` with the reason it cannot be used:
    unreadable, not JSON, malformed, of another record version, or another run's. ``(None, None)``: no file."""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return None, f"not a readable record ({type(error).__name__}: {error})"
    reason = problem(record)
    if reason is None and record["run_id"] != run_id:
        reason = f"holds run {record['run_id']}, not {run_id}"
    return (None, reason) if reason else (record, None)
