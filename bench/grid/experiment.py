"""An experiment as data: the grid that ``bench run``'s flags or an experiment file describe, expanded into runs.

Flags and files describe the same :class:`Experiment`; flags given beside a file override its keys (``--set``
overrides the same hyperparameter). An experiment file is TOML::

    preset = "mnist5k-lenet300"          # where dataset, model and recipe start from
    model = "torchvision:resnet18"       # optional: another model (or dataset = ...)
    methods = ["magnitude", "gmp"]       # or "all"
    scopes = ["global", "uniform"]       # or "all"
    sparsity = [0.9, 0.95]               # numbers in (0, 1), or N:M patterns such as "2:4"
    groups = ["per_layer", "per_output"] # optional: where each layer's count goes inside it (default per_layer)
    seeds = "0-2"                        # N, "A-B", or a list [0, 1, 2]
    controls = ["shuffle", "reinit"]     # optional: allocation controls of every run (prunebench.run.allocation_controls)
    keep_first_dense = false

    # track = "structured"               # channels instead of weights (then target, not sparsity):
    # target = "flops:0.3,0.5"           # UNIT:FRACTIONS removed, UNIT channels or flops

    [recipe]                             # any recipe field; a list sweeps
    epochs = 20
    optim.lr = 0.05

    [hparams.gmp]                        # a method's hyperparameters; a list sweeps
    end = [0.5, 0.8]

    [run]                                # how it executes; never part of a run's id
    out = "results"
    jobs = "auto"

Everything is checked before any work starts (:meth:`Experiment.plan`); an error names the key (and its line in the
file).
"""

from __future__ import annotations

import itertools
import math
import re
import sys
import types
import typing
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin

from prunebench.catalog.hparams import HParam
from prunebench.core.environment import available_cpus, resolve_device
from prunebench.core.errors import UsageError
from prunebench.grid.grid_choices import (
    check_sparsities,
    parse_groups,
    parse_methods,
    parse_scopes,
    parse_seeds,
    parse_target,
)
from prunebench.grid.scheduler import RunnerSettings
from prunebench.methods.method_registry import MethodSpec, get_method
from prunebench.pruning.allocation import LAYERWISE_SCOPES, keep_budget, layer_keep_counts
from prunebench.run.allocation_controls import parse_controls, with_controls
from prunebench.run.recipe import apply_recipe_settings, recipe_fields
from prunebench.run.run_checkpoint import CheckpointPolicy
from prunebench.run.run_config import PrunableOptions, RunConfig, Track, settings_tuple
from prunebench.zoo.presets import DEFAULT_PRESET, STRUCTURED_PRESET, get_preset

if TYPE_CHECKING:
    import torch

    from prunebench.grid.result_store import ResultStore
    from prunebench.run.run_context import RunOptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class _KeyError(UsageError):
    """A usage error about one key of the experiment (``recipe.optim.lr``, ``hparams.gmp.end``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class Text(str):
    """A value as typed on the command line, read by the declared type (``"4"`` is an int for an int hyperparameter)."""


@dataclass
class Execution:
    """How a grid executes: where results go, the device, worker processes, the loader. Not part of any run id."""

    out: str = "results"
    device: str = "auto"
    jobs: str | int = "auto"
    loader: str = "auto"
    data_root: str | None = None
    compile: bool = False
    force: bool = False
    executor: str = "local"
    devices: str | None = None
    per_device: int = 1
    checkpoint_every: str | int = "1"
    claim_timeout: float = 600.0
    deterministic: bool = False
    wait: bool = False
    batch: str | int = "auto"
    slurm: dict[str, Any] = field(default_factory=dict)
    """``[run.slurm]``: the Slurm options of :mod:`prunebench.grid.slurm_executor` (partition, time, gpus, ...)."""


def parse_batch(value: str | int) -> int | None:
    """``--batch``: a positive number of runs, or ``auto`` (``None``: by the model and device)."""
    text = str(value).strip().lower()
    if text == "auto":
        return None
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise UsageError(f"--batch takes a positive number of runs or auto, got {value!r}")


DEFAULT_SPARSITY = (0.9, 0.95, 0.99)
STRUCTURED_TARGET = "channels:0.3,0.5"
"""The structured track's default target: 30% and 50% of the group channels removed."""

EXECUTORS = ("local", "slurm")
MAX_AUTO_JOBS = 8
"""``--jobs auto`` on the CPU runs one worker per core, at most this many."""


def parse_jobs(text: str, device: torch.device) -> int:
    """``auto``: one worker per core (at most :data:`MAX_AUTO_JOBS`) on the CPU, one on a GPU; else a positive
    integer no larger than the CPUs this process may use (each worker needs one, and more only cost memory)."""
    text = str(text)
    cpus = available_cpus()
    if text == "auto":
        return 1 if device.type == "cuda" else max(1, min(cpus, MAX_AUTO_JOBS))
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"--jobs takes a positive integer or `auto`, got {text!r}")
    if int(text) > cpus:
        raise UsageError(
            f"--jobs {int(text)} is more than the {cpus} CPUs this process may use; give at most {cpus}"
        )
    return int(text)


def parse_devices(text: str, per_device: int) -> list[torch.device]:
    """``--devices``: ``auto`` (every visible GPU, else the CPU) or a comma list (``cuda:0,cuda:1``, ``cpu,cpu``),
    each entry repeated ``per_device`` times: one worker each."""
    import torch

    if not isinstance(per_device, int) or isinstance(per_device, bool) or per_device < 1:
        raise UsageError(f"--per-device takes a positive integer, got {per_device!r}")
    if str(text).strip() == "auto":
        count = torch.cuda.device_count()
        names = [f"cuda:{i}" for i in range(count)] or ["cpu"]
    else:
        names = [part.strip() for part in str(text).split(",") if part.strip()]
    if not names:
        raise UsageError("--devices: no device given; e.g. auto, cuda:0,cuda:1 or cpu,cpu")
    devices = []
    for name in names:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise UsageError(f"--devices: {name!r} is not a device; e.g. cuda:0 or cpu") from None
        if device.type == "cuda":
            if device.index is None:
                device = torch.device("cuda", 0)
            if device.index >= torch.cuda.device_count():
                raise UsageError(
                    f"--devices: {name} asked for, but PyTorch sees {torch.cuda.device_count()} CUDA device(s)"
                )
        elif device.type != "cpu":
            raise UsageError(f"--devices: {name!r}: only cpu and cuda:N are supported")
        devices.append(device)
    return [device for device in devices for _ in range(per_device)]


@dataclass(frozen=True)
class Plan:
    """An experiment checked and ready to run: its runs, and how they execute."""

    configs: list[RunConfig]
    device: torch.device
    jobs: int
    options: RunOptions
    store: ResultStore
    devices: list[torch.device] | None = None
    """One worker per entry (``--devices``, ``--per-device``); ``None``: ``jobs`` workers on ``device``."""
    settings: RunnerSettings | None = None
    executor: str = "local"


@dataclass(frozen=True)
class _Axes:
    """The axes of a grid, parsed and checked (:meth:`Experiment._axes`)."""

    preset: str
    dataset: str
    model: str
    recipes: list
    methods: list
    scopes: list
    groups: list[str]
    track: Track
    sparsities: list[float | str]
    seeds: list[int]
    variants: dict


@dataclass
class Experiment:
    """A grid: the dataset, model and recipe (from a preset, optionally replaced), methods with their
    hyperparameters, scopes, sparsities, seeds and prunable-set options.

    ``recipe`` and ``hparams`` hold value lists: one value sets, several sweep (the grid takes every combination).
    ``track`` ``structured`` prunes channels (:mod:`prunebench.structured.channels`) to ``target`` (``UNIT:FRACTIONS``, default
    :data:`STRUCTURED_TARGET`) instead of weights to ``sparsity``; its default preset is
    :data:`~prunebench.zoo.presets.STRUCTURED_PRESET`.
    """

    preset: str | None = None
    dataset: str | None = None
    model: str | None = None
    methods: str | list[str] = "all"
    scopes: str | list[str] = "all"
    sparsity: list[float | str] | None = None
    """Default :data:`DEFAULT_SPARSITY`. An N:M pattern (``"2:4"``) is a sparsity of ``1 - N/M`` in the pattern's
    group, under the ``uniform`` scope, for the methods that support comparison groups."""
    groups: str | list[str] = "per_layer"
    """Comparison groups inside each layer (:mod:`prunebench.pruning.comparison_groups`), ``all`` or names; the
    groups other than ``per_layer`` run only for the methods that support them."""
    track: str = "unstructured"
    target: str | None = None
    seeds: str | int | list[int] = 3
    recipe: dict[str, list[Any]] = field(default_factory=dict)
    hparams: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    keep_first_dense: bool = False
    keep_last_dense: bool = False
    prune_embeddings: bool = False
    controls: str | list[str] = field(default_factory=list)
    """Allocation controls added for every pruned run (:mod:`prunebench.run.allocation_controls`): ``shuffle``, ``reinit``."""
    execution: Execution = field(default_factory=Execution)
    source: str | None = None
    """The experiment file this came from, for error messages."""

    def set(self, owner: str, name: str, values: list[Any]) -> None:
        """Set ``owner.name`` (``owner`` a method, or ``recipe``) to ``values`` (several: a sweep)."""
        if owner == "recipe":
            self.recipe[name] = list(values)
        else:
            self.hparams.setdefault(owner, {})[name] = list(values)

    def configs(self) -> list[RunConfig]:
        """Every run of the grid, checked: per recipe and seed the dense baseline, then each method variant in each
        requested scope it supports at each sparsity; with ``controls``, the random baselines and the controls
        (:func:`prunebench.run.allocation_controls.with_controls`). A run asked for twice appears once.

        Each sparsity is checked on the model (built once on the ``meta`` device): it must keep at least one of the
        prunable weights, and each layer-wise scope must be able to split it across the layers (see
        :meth:`_unreachable`)."""
        axes = self._axes()
        plan = self._plan(axes.methods, axes.variants, axes.scopes)
        numbers = [s for s in axes.sparsities if not isinstance(s, str)]
        prunable = PrunableOptions(self.keep_first_dense, self.keep_last_dense, self.prune_embeddings)
        unreachable: set[tuple[float, str]] = set()
        if axes.track.name != "structured":  # a structured target is checked by each run's allocation
            with self._key("sparsity"):
                unreachable = self._unreachable(
                    axes.dataset, axes.model, prunable, numbers, {scope for *_, scope in plan}
                )
        common = {"dataset": axes.dataset, "model": axes.model, "prunable": prunable, "preset": axes.preset}
        configs: dict[str, RunConfig] = {}
        for recipe, seed in itertools.product(axes.recipes, axes.seeds):
            dense = RunConfig(recipe=recipe, method="dense", scope="none", sparsity=0.0, seed=seed, **common)
            configs.setdefault(dense.run_id, dense)
            for (sparsity, group), (spec, settings, scope) in itertools.product(
                _targets(axes.sparsities, axes.groups), plan
            ):
                if (sparsity, scope) in unreachable or not _group_fits(spec, scope, group):
                    continue
                config = RunConfig(
                    recipe=recipe,
                    method=spec.name,
                    scope=scope,
                    sparsity=sparsity,
                    seed=seed,
                    settings=settings_tuple(settings),
                    track=axes.track,
                    group=group,
                    **common,
                )
                configs.setdefault(config.run_id, config)
        with self._key("controls"):
            return with_controls(list(configs.values()), parse_controls(self.controls))

    def _structured(self) -> bool:
        """Whether the grid is of the structured track, its target and sparsity checked against that."""
        with self._key("track"):
            from prunebench.methods.method_registry import TRACKS

            if self.track not in TRACKS:
                raise UsageError(f"unknown track {self.track!r}; known: {', '.join(TRACKS)}")
            structured = self.track == "structured"
            if structured and self.sparsity is not None:
                raise UsageError(
                    "the structured track takes a target (--target channels:0.5), not a sparsity"
                )
            if not structured and self.target is not None:
                raise UsageError(
                    "a target (--target) belongs to the structured track; add --track structured"
                )
        return structured

    def _axes(self) -> _Axes:
        """The grid's axes, each parsed and checked under its key."""
        structured = self._structured()
        with self._key("preset"):
            preset = get_preset(self.preset or (STRUCTURED_PRESET if structured else DEFAULT_PRESET))
        dataset, model = self.dataset or preset.dataset, self.model or preset.model
        with self._key("dataset"):
            from prunebench.datasets import get_dataset

            get_dataset(dataset)
        with self._key("model"):
            from prunebench.zoo.model_zoo import get_model

            get_model(model)
        with self._key("recipe"):
            recipes = [
                apply_recipe_settings(preset.recipe, combination)
                for combination in _combinations(self.recipe, recipe_fields(), "recipe")
            ]
        with self._key("methods"):
            methods = parse_methods(self.methods, self.track)
        with self._key("scopes"):
            scopes = parse_scopes(self.scopes)
        with self._key("groups"):
            groups = parse_groups(self.groups)
        track = Track()
        if structured:
            with self._key("target"):
                unit, sparsities = parse_target(self.target or STRUCTURED_TARGET)
            track = Track("structured", unit)
        else:
            with self._key("sparsity"):
                sparsities = check_sparsities(DEFAULT_SPARSITY if self.sparsity is None else self.sparsity)
        with self._key("seeds"):
            seeds = parse_seeds(self.seeds)
        with self._key("hparams"):
            variants = self._variants(methods)
        return _Axes(
            preset.name, dataset, model, recipes, methods, scopes, groups, track, sparsities, seeds, variants
        )

    def plan(self) -> Plan:
        """The runs (:meth:`configs`) and how they execute, everything checked before any work starts: the models
        against their data, the device, the worker count, the loader, the data each dataset needs on disk for that
        loader (nothing is downloaded), and the results directory (created, and writable)."""
        from prunebench.datasets import get_dataset
        from prunebench.datasets.dataset_registry import LoaderRequest
        from prunebench.grid.grid_choices import check_models
        from prunebench.grid.result_store import ResultStore

        configs = self.configs()
        check_models(
            configs
        )  # one dry forward per (dataset, model): a model unfit for its data is refused here
        execution = self.execution
        device, jobs, devices = self._devices()
        settings = self._settings()
        options = self._options()
        request = LoaderRequest(
            batch_size=1, seed=0, device=device, data_root=options.data_root, loader=options.loader
        )
        with self._key("dataset"):
            for name in dict.fromkeys(config.dataset for config in configs):
                get_dataset(name).check(request)
        with self._key("run.out"):
            if not str(execution.out).strip():
                raise UsageError("--out is empty; give the results directory (default: results)")
            store = ResultStore(Path(execution.out))
            store.ensure_writable()
        return Plan(configs, device, jobs, options, store, devices, settings, execution.executor)

    def _devices(self) -> tuple[torch.device, int, list[torch.device] | None]:
        """The device, the worker count and the devices of ``--devices``, checked."""
        execution = self.execution
        with self._key("run.device"):
            device = resolve_device(execution.device)
        with self._key("run.jobs"):
            jobs = parse_jobs(execution.jobs, device)
        devices = None
        if execution.devices is not None:
            with self._key("run.devices"):
                if str(execution.jobs) != "auto":
                    raise UsageError(
                        "give --jobs or --devices, not both (--devices with --per-device sets the workers)"
                    )
                devices = parse_devices(execution.devices, execution.per_device)
                device = devices[0]
        elif execution.per_device != 1:
            with self._key("run.per_device"):
                raise UsageError("--per-device needs --devices (e.g. --devices auto --per-device 4)")
        return device, jobs, devices

    def _settings(self) -> RunnerSettings:
        """How the runners work (executor, checkpoints, claims, determinism), checked."""
        execution = self.execution
        with self._key("run.executor"):
            if execution.executor not in EXECUTORS:
                raise UsageError(
                    f"unknown executor {execution.executor!r}; choose one of {', '.join(EXECUTORS)}"
                )
        with self._key("run.checkpoint_every"):
            policy = CheckpointPolicy.parse(execution.checkpoint_every)
        with self._key("run.claim_timeout"):
            if not isinstance(execution.claim_timeout, int | float) or execution.claim_timeout <= 0:
                raise UsageError(
                    f"--claim-timeout takes a positive number of seconds, got {execution.claim_timeout!r}"
                )
        with self._key("run.batch"):
            batch = parse_batch(execution.batch)
        if execution.executor == "slurm":
            from prunebench.grid.slurm_executor import SlurmOptions

            with self._key("run.slurm"):
                SlurmOptions.from_mapping(execution.slurm)
        return RunnerSettings(
            checkpoint=policy,
            stale_after_s=float(execution.claim_timeout),
            deterministic=bool(execution.deterministic),
            batch=batch,
        )

    def _options(self) -> RunOptions:
        """How the runs execute (loader, data root, compile), checked."""
        from prunebench.datasets.data_files import LOADERS
        from prunebench.run.run_context import RunOptions

        execution = self.execution
        with self._key("run.loader"):
            if execution.loader not in LOADERS:
                raise UsageError(f"unknown loader {execution.loader!r}; known: {', '.join(LOADERS)}")
        return RunOptions(
            loader=execution.loader,
            data_root=Path(execution.data_root) if execution.data_root else None,
            compile=execution.compile,
        )

    def _unreachable(
        self, dataset: str, model: str, prunable: PrunableOptions, sparsities: list[float], scopes: set[str]
    ) -> set[tuple[float, str]]:
        """The (sparsity, scope) cells a layer-wise scope cannot split across the model's layers (``uniform_plus``
        at 99% on ResNet-50, whose last layer alone holds more than the budget at 80% sparsity).

        Where the scopes were asked for by name, such a cell is an error; under ``all`` it is left out of the grid
        with a warning. A sparsity that keeps no weight at all is an error in any scope.
        """
        cells = _unreachable_cells(dataset, model, prunable, sparsities, scopes)
        for (sparsity, scope), reason in cells.items():
            message = f"sparsity {sparsity} cannot be reached on {model} in scope {scope}: {reason}"
            if self.scopes != "all":
                raise UsageError(message)
            warnings.warn(f"{message}; those runs are left out of the grid", stacklevel=3)
        return set(cells)

    def _variants(self, methods: list[MethodSpec]) -> dict[str, list[dict[str, Any]]]:
        """Per method (by key), the hyperparameter settings of each variant; unknown names are errors."""
        by_key = {spec.key: spec for spec in methods}
        given: dict[str, dict[str, list[Any]]] = {}
        for name, values in self.hparams.items():
            spec = get_method(name)
            if spec.key not in by_key:
                raise UsageError(
                    f"hyperparameters are set for {spec.name}, which is not in the grid "
                    f"(methods: {', '.join(s.name for s in methods)})"
                )
            given.setdefault(spec.key, {}).update(values)
        variants = {}
        for key, spec in by_key.items():
            combos = list(_combinations(given.get(key, {}), spec.hparams, spec.name))
            for settings in combos:
                spec.resolve(settings)
            variants[key] = combos
        return variants

    def _plan(
        self, methods: list[MethodSpec], variants: dict[str, list[dict[str, Any]]], scopes: list[str]
    ) -> list[tuple[MethodSpec, dict[str, Any], str]]:
        explicit = self.methods != "all"
        plan = []
        for spec in methods:
            chosen = [s for s in spec.scopes if s in scopes]
            if not chosen and explicit:
                raise UsageError(
                    f"method {spec.name} supports scopes {', '.join(spec.scopes)}; "
                    f"none of {', '.join(scopes)} was asked for"
                )
            plan += [(spec, settings, scope) for settings in variants[spec.key] for scope in chosen]
        return plan

    @contextmanager
    def _key(self, key: str) -> Iterator[None]:
        """Errors raised inside name the experiment file and the key (and its line) when there is a file."""
        try:
            yield
        except UsageError as error:
            if self.source is None:
                raise
            key = getattr(error, "key", key)
            raise UsageError(f"{self.source}: {key}{_line_suffix(self.source, key)}: {error}") from None

    @classmethod
    def from_toml(cls, path: Path) -> Experiment:
        """The experiment of a TOML file; an invalid file is a one-line error naming the key (and line)."""
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as error:
            raise UsageError(f"cannot read experiment file {path}: {error.strerror or error}") from None
        except UnicodeDecodeError as error:
            raise UsageError(
                f"{path}: not UTF-8 text (byte {error.start}); an experiment file is TOML, which is UTF-8"
            ) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise UsageError(f"{path}: not valid TOML: {error}") from None
        return _from_mapping(data, str(path))


_TOP_KEYS = {
    "track",
    "target",
    "preset",
    "dataset",
    "model",
    "methods",
    "scopes",
    "groups",
    "sparsity",
    "seeds",
    "keep_first_dense",
    "keep_last_dense",
    "prune_embeddings",
    "controls",
}
_TABLES = {"recipe", "hparams", "run"}
_TYPED_KEYS: dict[str, Any] = {
    "preset": str,
    "dataset": str,
    "model": str,
    "track": str,
    "target": str,
    "seeds": int | str | list[int],
    "keep_first_dense": bool,
    "keep_last_dense": bool,
    "prune_embeddings": bool,
}
"""The top-level keys checked by their type alone (``methods``, ``scopes`` and ``controls`` are checked as names)."""
_TYPE_WORDS = {
    str: ("a string", "strings"),
    bool: ("true or false", "true or false values"),
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
}


def _type_problem(value: Any, accepted: Any) -> str | None:
    """``must be ..., got ...`` when ``value`` (read from TOML) is not of the type ``accepted``, else ``None``.

    ``accepted`` is an annotation made of ``str``, ``bool``, ``int``, ``float`` (an integer is a number too, a
    boolean is neither), ``list[...]``, ``dict[...]`` (a table) and unions of them; ``None`` is left out (TOML has
    no null: a key left out keeps its default)."""
    if _is_of(value, accepted):
        return None
    return f"must be {_described(accepted)}, got {value!r}"


def _is_of(value: Any, accepted: Any) -> bool:
    """Whether ``value`` is of the type ``accepted`` (see :func:`_type_problem`)."""
    origin = get_origin(accepted)
    if origin in (Union, types.UnionType):
        return any(_is_of(value, member) for member in get_args(accepted))
    if origin is list:
        return isinstance(value, list) and all(_is_of(item, get_args(accepted)[0]) for item in value)
    if origin is dict:
        return isinstance(value, dict)
    if accepted in (int, float) and isinstance(value, bool):
        return False
    if accepted is float:
        return isinstance(value, int | float)
    return accepted is not type(None) and isinstance(value, accepted)


def _described(accepted: Any) -> str:
    """How the type ``accepted`` reads in an error: ``a string``, ``a number or a list of numbers``, ``a table``."""
    origin = get_origin(accepted)
    if origin in (Union, types.UnionType):
        words = [_described(member) for member in get_args(accepted) if member is not type(None)]
        return ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0]
    if origin is list:
        return f"a list of {_TYPE_WORDS[get_args(accepted)[0]][1]}"
    if origin is dict:
        return "a table"
    return _TYPE_WORDS[accepted][0]


def _from_mapping(data: Mapping[str, Any], source: str) -> Experiment:
    experiment = Experiment(source=source)

    def fail(key: str, message: str) -> UsageError:
        return UsageError(f"{source}: {key}{_line_suffix(source, key)}: {message}")

    for key, value in data.items():
        if key in _TABLES:
            if not isinstance(value, dict):
                raise fail(key, f"must be a table ([{key}])")
        elif key not in _TOP_KEYS:
            accepted = ", ".join(sorted(_TOP_KEYS | {f"[{t}]" for t in _TABLES}))
            raise fail(key, f"unknown key; an experiment file has {accepted}")
    for key, accepted in _TYPED_KEYS.items():
        if key in data:
            problem = _type_problem(data[key], accepted)
            if problem:
                raise fail(key, problem)
            setattr(experiment, key, data[key])
    if "controls" in data:
        value = data["controls"]
        if not (isinstance(value, str) or isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise fail("controls", f'must be a list of controls such as ["shuffle", "reinit"], got {value!r}')
        experiment.controls = value
    for key in ("methods", "scopes", "groups"):
        if key in data:
            value = data[key]
            if not (value == "all" or isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise fail(key, f'must be "all" or a list of names, got {value!r}')
            setattr(experiment, key, value)
    if "sparsity" in data:
        value = data["sparsity"]
        if not (_is_target(value) or isinstance(value, list) and all(_is_target(v) for v in value)):
            raise fail(
                "sparsity",
                f'must be a number, an N:M pattern such as "2:4", or a list of them, got {value!r}',
            )
        experiment.sparsity = value
    if isinstance(experiment.sparsity, int | float | str):
        experiment.sparsity = [experiment.sparsity]
    for name, value in _flatten(data.get("recipe", {})).items():
        experiment.set("recipe", name, [value])
    for method, table in data.get("hparams", {}).items():
        if not isinstance(table, dict):
            raise fail(f"hparams.{method}", "must be a table of hyperparameters ([hparams.METHOD])")
        for name, value in table.items():
            experiment.set(method, name, [value])
    run = data.get("run", {})
    declared = typing.get_type_hints(Execution)
    for key, value in run.items():
        if key not in declared:
            raise fail(f"run.{key}", f"unknown key; [run] has {', '.join(sorted(declared))}")
        problem = _type_problem(value, declared[key])
        if problem:
            raise fail(f"run.{key}", problem)
    experiment.execution = replace(
        experiment.execution, **{k: v if k != "jobs" else str(v) for k, v in run.items()}
    )
    return experiment


def _prunable_shapes(dataset: str, model: str, prunable: PrunableOptions) -> dict[str, tuple[int, ...]]:
    """The shapes of the prunable weights of ``model`` on ``dataset``, built on the ``meta`` device (no memory, no
    initialization cost), or on the CPU where the model's code cannot run on ``meta``."""
    from prunebench.datasets import get_dataset
    from prunebench.pruning.prunable import prunable_weights
    from prunebench.zoo.model_zoo import build_model, build_model_shapes

    data = get_dataset(dataset)
    try:
        network = build_model_shapes(model, data.input_shape, data.num_classes)
    except Exception:  # noqa: BLE001  (the model's own code may need real tensors: build it on the CPU)
        try:
            network = build_model(model, data.input_shape, data.num_classes)
        except Exception as error:  # noqa: BLE001  (user code: its failure is reported, not a traceback)
            raise UsageError(
                f"model {model} cannot be built for {dataset} {data.input_shape}: {type(error).__name__}: {error}"
            ) from None
    weights = prunable_weights(network, **vars(prunable))
    return {name: tuple(weight.shape) for name, weight in weights.items()}


def _unreachable_cells(
    dataset: str, model: str, prunable: PrunableOptions, sparsities: list[float], scopes: set[str]
) -> dict[tuple[float, str], str]:
    """Why each (sparsity, layer-wise scope) that cannot be reached on the model cannot be. A sparsity whose budget
    ``round(N (1 - s))`` keeps none of the ``N`` prunable weights raises a :class:`UsageError`: no scope helps."""
    if not scopes:
        return {}
    shapes = _prunable_shapes(dataset, model, prunable)
    total = sum(math.prod(shape) for shape in shapes.values())
    if total == 0:
        raise UsageError(f"{model} has no prunable weight (the weight of a Conv or Linear layer) to prune")
    cells = {}
    for sparsity in sparsities:
        try:
            keep_budget(total, sparsity)
        except UsageError:
            raise UsageError(
                f"sparsity {sparsity} keeps none of the {total} prunable weights of {model} "
                f"(it must stay below {1 - 0.5 / total:.10g})"
            ) from None
        for scope in sorted(scopes & set(LAYERWISE_SCOPES)):
            try:
                layer_keep_counts(shapes, sparsity, scope)
            except UsageError as error:
                cells[(sparsity, scope)] = str(error)
    return cells


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 0.1}}`` -> ``{"optim.lr": 0.1}``."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _combinations(
    given: Mapping[str, list[Any]], declared: Mapping[str, HParam], owner: str
) -> Iterator[dict[str, Any]]:
    """Every combination of the values of ``given`` (one value sets, several sweep), each value checked.

    ``owner`` is ``recipe`` or a method's name. A list where the declared type is a tuple is one value; several
    tuples (a list of lists) sweep.
    """
    names, choices = [], []
    for name, values in given.items():
        key = f"recipe.{name}" if owner == "recipe" else f"hparams.{owner}.{name}"
        if name not in declared:
            accepted = ", ".join(declared) or "none"
            if owner == "recipe":
                raise _KeyError(key, f"the recipe has no field {name!r}; its fields: {accepted}")
            raise _KeyError(key, f"{owner} has no hyperparameter {name!r}; its hyperparameters: {accepted}")
        hparam = declared[name]
        if len(values) == 1 and isinstance(values[0], list) and not _is_tuple(hparam, values[0]):
            values = values[0]
        try:
            checked = [hparam.parse(v) if isinstance(v, Text) else hparam.coerce(v) for v in values]
        except UsageError as error:
            raise _KeyError(key, f"{owner}: {error}") from None
        names.append(name)
        choices.append(list(dict.fromkeys(checked)))
    for combination in itertools.product(*choices):
        yield dict(zip(names, combination, strict=True))


def _is_tuple(hparam: HParam, value: list[Any]) -> bool:
    """Whether a list is one value of a tuple-typed hyperparameter (not a sweep)."""
    return "tuple" in hparam.type_name and not any(isinstance(v, list) for v in value)


def _line_suffix(source: str, key: str) -> str:
    """`` (line N)`` where ``key`` (dotted: ``hparams.gmp.end``) is set in the file ``source``, else ''."""
    try:
        lines = Path(source).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    parts = key.split(".")
    table = ""
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        header = re.fullmatch(r"\[+\s*([^\]]+?)\s*\]+", stripped)
        if header:
            table = header.group(1)
            if table == key:
                return f" (line {number})"
            continue
        name = re.match(r"([A-Za-z0-9_.\"-]+)\s*=", stripped)
        if name:
            full = ".".join(p for p in (table, name.group(1).replace('"', "")) if p)
            if full == key or (table == "" and parts[0] == full):
                return f" (line {number})"
    return ""


def _is_target(value: Any) -> bool:
    """Whether ``value`` (read from TOML) is a sparsity: a number (not a boolean) or an N:M pattern's text."""
    from prunebench.pruning.comparison_groups import nm_pattern

    if isinstance(value, str):
        return nm_pattern(value) is not None
    return isinstance(value, int | float) and not isinstance(value, bool)


def _targets(sparsities: list[float | str], groups: list[str]) -> list[tuple[float, str]]:
    """Each (sparsity, comparison group) of the grid: a number in every group asked for, an N:M pattern at its own
    sparsity ``1 - N/M`` in its own group."""
    from prunebench.pruning.comparison_groups import nm_pattern

    targets = []
    for sparsity in sparsities:
        if isinstance(sparsity, str):
            n, m = nm_pattern(sparsity)
            targets.append((1.0 - n / m, sparsity))
        else:
            targets += [(sparsity, group) for group in groups]
    return targets


def _group_fits(spec: MethodSpec, scope: str, group: str) -> bool:
    """Whether ``spec`` runs in comparison group ``group`` under ``scope``: ``per_layer`` always; another group only
    for a method that supports groups (:attr:`MethodSpec.supports_groups`); an N:M pattern only under ``uniform``
    (each layer exactly N/M dense) and with a schedule that prunes once."""
    from prunebench.pruning.comparison_groups import nm_pattern

    if group == "per_layer":
        return True
    if not spec.supports_groups:
        return False
    return nm_pattern(group) is None or (scope == "uniform" and spec.schedule in ONCE_SCHEDULES)


ONCE_SCHEDULES = ("at_init", "after_training", "one_shot")
"""The schedules that prune once, where an N:M pattern can be met exactly (a gradual or iterative schedule passes
through sparsities no pattern has)."""
