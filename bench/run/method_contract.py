"""The method contract: what every registered method must do on the harness, checked on a run of seconds.

A method keeps the contract when, for each scope it declares (on the ``synthetic-tiny`` preset, 2 epochs, one
sparsity, one seed):

1. **Exact target.** The final model's weights that are exactly zero, counted from the run's saved mask (the support
   of the final weights, not the method's own masks nor the record's counts), give the target: under ``global`` and
   ``learned`` exactly ``round(N * (1 - sparsity))`` non-zero weights of the ``N`` prunable ones; under a layer-wise
   scope every layer within one weight of its own target (``size * density``), so the total within one weight per
   layer. On the structured track the unit is the channel: exactly ``C - round(C * fraction)`` of the ``C`` channels
   kept, counted from the output channels of the physically smaller model.
2. **A valid record.** The record is written and read back through the results store, passes
   :func:`prunebench.run.run_record.problem`, its saved mask reads back, and it describes the run that was asked for.
3. **Bit-identical resume.** A run stopped at a step boundary (a checkpoint is saved there, as on SIGTERM or
   pre-emption) in the middle of each of its training phases and resumed from that checkpoint gives the record of
   the uninterrupted run, field by field (timing aside) and mask by mask. Structured runs keep no checkpoint inside a
   run (a stopped one starts over): for them the contract asks that a rerun gives the same record, latencies aside.
4. **Hyperparameters round-trip.** Each declared hyperparameter, set to another valid value as ``--set
   METHOD.NAME=VALUE`` types it (through the same parser), reaches the run's ``config.hparams`` and changes its id.
5. **Listed.** ``bench list methods --details METHOD`` names every hyperparameter.

Each check returns the problems it found, one line each (an empty list: the method keeps that part of the
contract), so that a test asserts the list is empty and its failure says what broke. ``tests/test_method_contract.py``
runs them over every registered method; a method registered by another package can call :func:`check_method` from
its own tests.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import numpy as np
import torch

from prunebench.catalog.hparams import HParam, format_value
from prunebench.cli import main
from prunebench.core.errors import UsageError
from prunebench.datasets import get_dataset
from prunebench.grid.experiment import Experiment, Text
from prunebench.grid.grid_choices import parse_setting
from prunebench.grid.result_store import ResultStore
from prunebench.methods.method_registry import MethodSpec, combinations, get_method
from prunebench.pruning.keep_budget import LAYERWISE_SCOPES, keep_budget, layer_densities
from prunebench.pruning.saved_masks import MASK_KEY, read_mask, unpack
from prunebench.run.example_outcomes import OUTCOMES_KEY
from prunebench.run.run_checkpoint import RunCheckpoint, RunInterrupted
from prunebench.run.run_config import RunConfig
from prunebench.run.run_record import problem
from prunebench.run.runner import execute
from prunebench.zoo.model_zoo import build_model

PRESET = "synthetic-tiny"
EPOCHS = 2
SPARSITY = 0.9
STRUCTURED_MODEL = "cnn_bn"
"""The structured track's model: ``synthetic-tiny``'s LeNet-5 has no BatchNorm, which Network Slimming and
MaskSparsity score."""
STRUCTURED_TARGET = "channels:0.5"
CPU = torch.device("cpu")
TIMING = ("wall_time_s", "finished_at")
"""Record fields that differ between two runs of one config."""
LATENCY = ("latency_", "speedup_batch1", "speedup_throughput")
"""Prefixes of the structured record's timed fields (two runs of one config time differently)."""


@dataclass(frozen=True)
class Case:
    """One method in one scope: a run the contract checks."""

    method: str
    """The name the method is listed under (an alias, a criterion's name or ``criterion@schedule``)."""
    scope: str
    """One of the method's scopes (``none`` for the dense baseline, which has none)."""
    first: bool
    """Whether ``scope`` is the first the method declares (the quick contract runs those only)."""

    @property
    def id(self) -> str:
        return f"{self.method}-{self.scope}"


def cases() -> list[Case]:
    """Every criterion under every schedule it declares (aliases included once, under the name they are listed by),
    in every scope it declares: no (criterion, schedule, scope) twice."""
    return [
        Case(spec.name, scope, index == 0)
        for spec in combinations()
        for index, scope in enumerate(spec.scopes or ("none",))
    ]


def contract_config(method: str, scope: str, settings: dict[str, list[str]] | None = None) -> RunConfig:
    """The run of ``method`` in ``scope`` as ``bench run`` plans it on the contract's preset; ``settings`` as
    ``--set`` gives them (name -> values typed on the command line)."""
    spec = get_method(method)
    structured = spec.track == "structured"
    experiment = Experiment(
        preset=PRESET,
        model=STRUCTURED_MODEL if structured else None,
        methods=spec.name,
        scopes="all" if scope == "none" else scope,
        sparsity=None if structured else [SPARSITY],
        track=spec.track,
        target=STRUCTURED_TARGET if structured else None,
        seeds=1,
    )
    experiment.set("recipe", "epochs", [EPOCHS])
    for name, values in (settings or {}).items():
        experiment.set(spec.name, name, [Text(v) for v in values])
    (config,) = [c for c in experiment.configs() if c.method == spec.name]
    return config


def run(config: RunConfig, workdir: Path, checkpoint: RunCheckpoint | None = None) -> dict[str, Any]:
    """``config``'s record (with its packed mask), executed on the CPU with its caches under ``workdir``."""
    return execute(config, CPU, workdir / "cache", checkpoint=checkpoint)


# 1. Exact target ---------------------------------------------------------------------------------------------------
def target_problems(config: RunConfig, record: dict[str, Any]) -> list[str]:
    """Where the final model misses ``config``'s target (see the module docstring for the rule of each scope)."""
    if config.method == "dense":
        return []
    if config.track.name == "structured":
        return _channel_target_problems(config, record)
    if MASK_KEY not in record:
        return ["the record carries no mask of the final weights"]
    masks = unpack(record[MASK_KEY])
    nonzero = {name: int(mask.sum()) for name, mask in masks.items()}
    shapes = {name: mask.shape for name, mask in masks.items()}
    total = sum(math.prod(shape) for shape in shapes.values())
    keep, kept = keep_budget(total, config.sparsity), sum(nonzero.values())
    problems = []
    if config.scope in LAYERWISE_SCOPES:
        densities = layer_densities(shapes, config.sparsity, config.scope)
        for name, count in nonzero.items():
            target = math.prod(shapes[name]) * densities[name]
            if abs(count - target) > 1:
                problems.append(
                    f"layer {name} keeps {count} weights, its {config.scope} target is {target:.2f}"
                )
        if abs(kept - keep) > len(nonzero):
            problems.append(f"{kept} non-zero weights, the target keeps {keep} (within one per layer)")
    elif kept != keep:
        problems.append(f"{kept} non-zero weights, the target keeps exactly {keep} of {total}")
    listed = {layer["name"]: layer["nonzero"] for layer in record.get("layers", [])}
    if listed != nonzero:
        problems.append(
            f"the record's per-layer non-zero counts {listed} are not the final weights' {nonzero}"
        )
    return problems


def _channel_target_problems(config: RunConfig, record: dict[str, Any]) -> list[str]:
    """Structured: the channels kept, counted from the output channels of the physically smaller model's layers."""
    dataset = get_dataset(config.dataset)
    dense = {
        n: p.shape[0]
        for n, p in build_model(config.model, dataset.input_shape, dataset.num_classes).named_parameters()
    }
    pruned = {layer["name"]: layer["shape"][0] for layer in record["layers"]}
    groups = [f"{group['name']}.weight" for group in record["structured"]["groups"]]
    total = sum(dense[name] for name in groups)
    keep = total - round(total * config.sparsity)
    kept = sum(pruned[name] for name in groups)
    return [] if kept == keep else [f"{kept} of {total} channels kept, the target keeps exactly {keep}"]


# 2. A valid record -------------------------------------------------------------------------------------------------
def record_problems(config: RunConfig, record: dict[str, Any], workdir: Path) -> list[str]:
    """What is wrong with ``record`` once written and read back through the results store."""
    store = ResultStore(workdir / "store")
    try:
        path = store.save(dict(record))
    except ValueError as error:
        return [str(error)]
    written = json.loads(path.read_text())
    problems = [reason] if (reason := problem(written)) is not None else []
    if config.method != "dense" and config.track.name != "structured":  # a structured run saves no mask
        try:
            read_mask(store.root, config.run_id)
        except UsageError as error:
            problems.append(f"the saved mask does not read back: {error}")
    expected = {
        "run_id": config.run_id,
        "status": "ok",
        "method": config.method,
        "scope": config.scope,
        "sparsity": config.sparsity,
        "hparams": json.loads(json.dumps(config.hparams, default=str)),
    }
    problems += [
        f"{k} is {written.get(k)!r}, the run's is {v!r}" for k, v in expected.items() if written.get(k) != v
    ]
    return problems


# 3. Bit-identical resume -------------------------------------------------------------------------------------------
class _Boundaries(RunCheckpoint):
    """A checkpoint that keeps nothing and never stops, and notes the phase of every step boundary it is asked at."""

    def __init__(self) -> None:
        super().__init__(None, stop=lambda: False)
        self.phases: list[str] = []

    def after_step(self, trainer: Any, phase: str, epoch_end: bool) -> None:
        self.phases.append(phase)
        super().after_step(trainer, phase, epoch_end)


def stop_points(phases: list[str], every_phase: bool = True) -> list[int]:
    """The step boundaries (1-based, in the order they come) in the middle of each phase of ``phases``; without
    ``every_phase``, of the first, a middle and the last phase only (IMP's rounds are many)."""
    middles, start = [], 0
    for _, group in itertools.groupby(phases):
        length = len(list(group))
        middles.append(start + (length + 1) // 2)
        start += length
    if every_phase or len(middles) <= 3:
        return middles
    return [middles[0], middles[len(middles) // 2], middles[-1]]


def resume_problems(
    config: RunConfig, workdir: Path, reference: dict[str, Any], every_phase: bool = True
) -> list[str]:
    """How ``config``'s run, stopped in the middle of its training phases (:func:`stop_points`) and resumed from its
    checkpoint, differs from ``reference``, its uninterrupted record; for a structured run, how a rerun differs.

    Each stopped run starts without caches, so that a stop can fall in the shared dense pre-training too."""
    if config.track.name == "structured":
        differences = record_differences(run(config, workdir / "rerun"), reference)
        return [f"a rerun differs in {', '.join(differences)}"] if differences else []
    boundaries = _Boundaries()
    differences = record_differences(run(config, workdir / "boundaries", boundaries), reference)
    problems = [f"a run under a checkpoint differs in {', '.join(differences)}"] if differences else []
    for stop_at in stop_points(boundaries.phases, every_phase):
        where = f"stopped at step boundary {stop_at} of {len(boundaries.phases)} ({boundaries.phases[stop_at - 1]})"
        resumed = _stopped_then_resumed(config, workdir / f"stop-{stop_at}", stop_at)
        differences = [] if resumed is None else record_differences(resumed, reference)
        if resumed is None:
            problems.append(f"{where}, the run did not stop")
        elif differences:
            problems.append(f"{where} and resumed, the record differs in {', '.join(differences)}")
    return problems


def _stopped_then_resumed(config: RunConfig, workdir: Path, stop_at: int) -> dict[str, Any] | None:
    """The record of ``config`` stopped at its ``stop_at``-th step boundary, then resumed from the checkpoint saved
    there (``None`` if it ran to the end without stopping)."""
    path = workdir / "checkpoint.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    calls = itertools.count(1)
    try:
        run(config, workdir, RunCheckpoint(path, stop=lambda: next(calls) == stop_at))
        return None
    except RunInterrupted:
        pass
    return run(config, workdir, RunCheckpoint(path, stop=lambda: False))


def record_differences(a: dict[str, Any], b: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """The fields in which two records of one config differ, timing (and ``ignore``) aside; the masks compared layer
    by layer, the per-example outcomes bit for bit where both records hold them (a record read back from its file
    does not), the structured track's latencies aside."""
    skip = {*TIMING, *ignore, MASK_KEY, OUTCOMES_KEY}
    differences = [
        key
        for key in sorted(a.keys() | b.keys())
        if key not in skip and _comparable(a, key) != _comparable(b, key)
    ]
    masks = [unpack(r[MASK_KEY]) if MASK_KEY in r else None for r in (a, b)]
    if (masks[0] is None) != (masks[1] is None) or masks[0] is not None and _arrays_differ(*masks):
        differences.append("the mask")
    outcomes = [r.get(OUTCOMES_KEY) for r in (a, b)]
    if None not in outcomes and _arrays_differ(*outcomes):
        differences.append("the per-example outcomes")
    return differences


def _arrays_differ(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> bool:
    """Whether two sets of named arrays differ in their names or in any array."""
    return first.keys() != second.keys() or any(not np.array_equal(first[k], second[k]) for k in first)


def _comparable(record: dict[str, Any], key: str) -> Any:
    value = record.get(key)
    if key == "structured" and isinstance(value, dict):
        return {k: v for k, v in value.items() if not k.startswith(LATENCY)}
    if isinstance(value, float) and math.isnan(value):
        return "nan"  # a run that trains nothing (one-shot without fine-tuning) has no training loss
    return value


# 4. Hyperparameters round-trip ---------------------------------------------------------------------------------------
def another_value(spec: MethodSpec, hparam: HParam) -> tuple[str, Any] | None:
    """A value of ``hparam`` other than its default that ``spec`` accepts, as typed on the command line and as
    parsed; ``None`` when none of the tried values is accepted."""
    for candidate in _candidates(hparam):
        text = format_value(candidate)
        try:
            value = hparam.parse(text)
            spec.resolve({hparam.name: value})
        except UsageError:
            continue
        if value != hparam.default:
            return text, value
    return None


def _candidates(hparam: HParam) -> Iterator[Any]:
    """Values to try, near the default first."""
    base, default = hparam.base, hparam.default
    if base is bool:
        yield not default
    elif base is int:
        yield from ([default + 1, default * 2, default - 1] if default is not None else []) + [1, 2, 10]
    elif base is float:
        near = [default * 2, default / 2, default + 0.1, default - 0.1] if default is not None else []
        yield from near + [0.5, 0.25, 0.1, 1.0, 2.0]
    elif base is str:
        yield f"{default}-other"
    elif get_origin(base) is Literal:
        yield from get_args(base)
    elif get_origin(base) is tuple:
        yield from [(1, 28, 28), (3, 32, 32), (1,), (0.5,)]
    if hparam.optional:
        yield None


def hparam_problems(method: str) -> list[str]:
    """Which hyperparameters of ``method`` do not round-trip through ``--set`` into the run's hyperparameters and
    id."""
    spec = get_method(method)
    scope = (spec.scopes or ("none",))[0]
    default = contract_config(spec.name, scope)
    problems = []
    for name, hparam in spec.hparams.items():
        found = another_value(spec, hparam)
        if found is None:
            problems.append(f"{name}: no value other than the default {hparam.default!r} was accepted")
            continue
        text, value = found
        owner, key, values = parse_setting(f"{spec.name}.{name}={text}")
        if (owner, key) != (spec.name, name):
            problems.append(f"--set {spec.name}.{name}={text} is read as {owner}.{key}")
            continue
        config = contract_config(spec.name, scope, {key: values})
        if config.hparams.get(name) != value:
            problems.append(f"--set {name}={text} gives {name}={config.hparams.get(name)!r}, not {value!r}")
        if config.run_id == default.run_id:
            problems.append(f"--set {name}={text} leaves the run id unchanged")
    return problems


# 5. Listed -----------------------------------------------------------------------------------------------------------
def listing_problems(method: str) -> list[str]:
    """Which hyperparameters of ``method`` ``bench list methods --details METHOD`` does not name."""
    spec = get_method(method)
    out = io.StringIO()
    with _wide_terminal(), contextlib.redirect_stdout(out):
        status = main(["list", "methods", "--details", spec.name])
    if status != 0:
        return [f"bench list methods --details {spec.name} exited with {status}"]
    words = set(out.getvalue().replace("│", " ").replace("┃", " ").split())
    return [f"{name} is not listed" for name in spec.hparams if name not in words]


@contextlib.contextmanager
def _wide_terminal() -> Iterator[None]:
    """A terminal wide enough that no hyperparameter's name is wrapped in the listing's table."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "200"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


# All of it -------------------------------------------------------------------------------------------------------------
def run_problems(method: str, scope: str, workdir: Path, every_phase: bool = True) -> list[str]:
    """The contract's checks of one run of ``method`` in ``scope``: exact target, valid record, resume (stopped in
    every phase, or, without ``every_phase``, in three: see :func:`stop_points`)."""
    config = contract_config(method, scope)
    try:
        reference = run(config, workdir)
    except Exception as error:  # noqa: BLE001  (any failure of the run breaks the contract; say which)
        return [f"the run failed: {type(error).__name__}: {error}"]
    return [
        *target_problems(config, reference),
        *record_problems(config, reference, workdir),
        *resume_problems(config, workdir, reference, every_phase),
    ]


def check_method(method: str, workdir: Path, scopes: tuple[str, ...] | None = None) -> list[str]:
    """Every problem of ``method`` with the contract, those of a run prefixed by its scope; ``scopes`` (default:
    every scope the method declares) limits the runs. ``workdir`` holds the runs' caches and checkpoints."""
    spec = get_method(method)
    problems = [*hparam_problems(spec.name), *listing_problems(spec.name)]
    for scope in scopes or spec.scopes or ("none",):
        problems += [f"{scope}: {p}" for p in run_problems(spec.name, scope, workdir / scope)]
    return problems
