"""The method registry: one decorator, one place that knows every method.

A method is a class registered with :func:`register`, which declares *when* it prunes (its schedules) and *how the
global budget may be split across layers* (the scopes it supports). The harness owns everything else: data, training,
mask application, accounting and records.

Criterion x schedule. A scoring criterion (a :class:`~prunebench.methods.base.ScoringMethod`) is written once and
declares every schedule it supports (:mod:`prunebench.run.criterion_schedules`); its name alone means its first schedule, and
``criterion@schedule`` any other (``magnitude@iterative``). :func:`alias` gives a combination a name of its own
(``gmp`` is ``magnitude@gradual``); a combination with an alias is shown under the alias wherever it was asked for.

Each method declares its hyperparameters in its ``__init__`` signature (:mod:`prunebench.catalog.hparams`) and its algorithm
``version``, an integer bumped whenever a change to its code changes what it computes; both enter a run's id.

Methods from other packages register through the ``prunebench.methods`` entry-point group: each entry names a module
that is imported on first use of the registry, and that module calls :func:`register`.

Reading the registry imports no method module (and so no torch): the package's own methods, their aliases and
their hyperparameters are declared from the registry index (:mod:`prunebench.catalog.registry_index`), and a method's class is
imported when something needs it (an instance, a run's hyperparameters). Importing it checks that it registers what
the index states. A module of the package that the index does not list is imported on first use of the registry.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from prunebench.catalog.hparams import HParam, declared_hparams, format_value
from prunebench.catalog.registry_index import Record, declare_modules, stale, tuples
from prunebench.core.errors import UsageError
from prunebench.core.extension_registry import Registry
from prunebench.run.criterion_schedules import SCHEDULE_CLASSES, SCHEDULES, SCORING_SCHEDULES, Schedule

if TYPE_CHECKING:
    from prunebench.methods.base import Method

SCOPES = ("global", "uniform", "uniform_plus", "erk", "learned", "owl")
"""How a global budget is split across layers. ``learned`` means the method learns the allocation itself; ``owl``
(outlier-weighted, from calibration activations) is allocated by the ``one_shot`` schedule only."""

ONE_SHOT_ONLY_SCOPES = ("owl",)
"""Scopes that need calibration data: a method declaring one runs in it under ``one_shot`` only (its specs under
its other schedules leave it out)."""

TRACKS = ("unstructured", "structured")
"""What a method prunes: single weights (``unstructured``) or whole channels (``structured``, see
:mod:`prunebench.structured.channels`). A grid runs the methods of one track."""

SEPARATOR = "@"
"""Between a criterion and a schedule in a method name: ``magnitude@gradual``."""


@dataclass(frozen=True)
class ListedHParam:
    """A hyperparameter as ``bench list methods --details`` shows it (and the registry index stores it)."""

    name: str
    type_name: str
    default: Any
    help: str

    @classmethod
    def of(cls, hparam: HParam) -> ListedHParam:
        return cls(hparam.name, hparam.type_name, hparam.default, hparam.help)


def listed(cls: type) -> tuple[ListedHParam, ...]:
    """The hyperparameters ``cls`` declares, as listed."""
    return tuple(ListedHParam.of(hparam) for hparam in declared_hparams(cls).values())


@dataclass(frozen=True)
class MethodSpec:
    """What the registry knows of one method: a criterion (or learned-mask method) under one schedule."""

    name: str
    """The name users type and records show (an alias, the criterion's name, or ``criterion@schedule``)."""
    schedule: str
    scopes: tuple[str, ...]
    paper: str
    summary: str
    criterion: str
    """The name ``cls`` is registered under (``magnitude`` for ``gmp``)."""
    version: int
    """The algorithm version of ``cls``."""
    track: str = "unstructured"

    @functools.cached_property
    def cls(self) -> type[Method]:
        """The method's class (its module is imported on first use)."""
        return _class_of(self.criterion)

    @property
    def key(self) -> str:
        """``criterion@schedule``: what the method computes, whatever name it was asked for by."""
        return f"{self.criterion}{SEPARATOR}{self.schedule}"

    @property
    def supports_groups(self) -> bool:
        """Whether the method runs in comparison groups other than ``per_layer`` (``per_output``, N:M patterns;
        :mod:`prunebench.pruning.comparison_groups`): a one-shot method, and a scoring criterion whose masks the
        harness makes from its scores (one that makes its own masks in rounds, SynFlow, runs ``per_layer`` only)."""
        import prunebench.methods.base as base

        cls = self.cls
        if issubclass(cls, getattr(base, "OneShotMethod", ())):
            return True
        return issubclass(cls, base.ScoringMethod) and cls.masks is base.ScoringMethod.masks

    @property
    def schedule_class(self) -> type[Schedule] | None:
        """The schedule's hyperparameters and version, for the schedules the harness runs criteria under."""
        return SCHEDULE_CLASSES.get(self.schedule)

    @property
    def versions(self) -> dict[str, int]:
        """The algorithm versions that enter the run id: the method's and its schedule's."""
        versions = {self.criterion: self.version}
        if self.schedule_class is not None:
            versions[f"schedule:{self.schedule}"] = self.schedule_class.version
        return versions

    @functools.cached_property
    def hparams(self) -> dict[str, HParam]:
        """Every hyperparameter of the method, then of its schedule (their names never collide)."""
        return self._with_schedule(declared_hparams(self.cls))

    def listed_hparams(self) -> dict[str, ListedHParam]:
        """:attr:`hparams` as listings show them: the method's from the registry index while its module is not
        imported, so that ``bench list methods --details`` imports no torch (from the class once it is imported,
        and for a method registered by importing its module, a plugin's); then its schedule's."""
        entry = _CLASSES.get(self.criterion)
        own = entry.hparams if entry.cls is None else listed(entry.cls)
        schedule = listed(self.schedule_class) if self.schedule_class is not None else ()
        return {hparam.name: hparam for hparam in (*own, *schedule)}

    def _with_schedule(self, own: dict[str, HParam]) -> dict[str, HParam]:
        declared = dict(own)
        if self.schedule_class is not None:
            declared.update(declared_hparams(self.schedule_class))
        return declared

    def resolve(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """All hyperparameters: the defaults, overridden by ``given`` (checked and canonical).

        An unknown name, a value of the wrong type or a value the method rejects is a
        :class:`~prunebench.core.errors.UsageError` naming the method and what it accepts.
        """
        given = dict(given or {})
        unknown_names = [name for name in given if name not in self.hparams]
        if unknown_names:
            accepted = ", ".join(self.hparams) or "none"
            raise UsageError(
                f"{self.name} has no hyperparameter {unknown_names[0]!r}; its hyperparameters: {accepted}"
            )
        resolved = {name: hp.default for name, hp in self.hparams.items()}
        try:
            resolved.update({name: self.hparams[name].coerce(value) for name, value in given.items()})
        except UsageError as error:
            raise UsageError(f"{self.name}: {error}") from None
        self.build(resolved)
        self.schedule_options(resolved)
        return resolved

    def variant(self, hparams: Mapping[str, Any]) -> str:
        """The hyperparameters that differ from the defaults, as a label: ``samples=4,end=0.6`` ('' for none)."""
        return ",".join(
            f"{name}={format_value(value)}"
            for name, value in hparams.items()
            if name in self.hparams and value != self.hparams[name].default
        )

    def _checked(self, make, values: dict[str, Any]):
        try:
            return make(**values)
        except (ValueError, TypeError) as error:
            raise UsageError(f"{self.name}: {error}") from None

    def build(self, hparams: Mapping[str, Any] | None = None) -> Method:
        """An instance with ``hparams`` (its own, not the schedule's; the paper's defaults for those not given)."""
        own = declared_hparams(self.cls)
        return self._checked(self.cls, {k: v for k, v in (hparams or {}).items() if k in own})

    def schedule_options(self, hparams: Mapping[str, Any] | None = None) -> Schedule | None:
        """The schedule's hyperparameters as an object (``None`` for schedules without any)."""
        if self.schedule_class is None:
            return None
        own = declared_hparams(self.schedule_class)
        return self._checked(self.schedule_class, {k: v for k, v in (hparams or {}).items() if k in own})


@dataclass(frozen=True)
class _Entry:
    """A registered class: its schedules (the first is the default), scopes, paper, version and one-line summary.

    ``target`` (``module:Class``) says where the class is; ``cls`` is ``None`` until its module is imported, and
    ``hparams`` (the class's own, as listed) are the index's while it is not.
    """

    target: str
    schedules: tuple[str, ...]
    scopes: tuple[str, ...]
    paper: str
    version: int
    summary: str
    track: str = "unstructured"
    cls: type[Method] | None = field(default=None, compare=False)
    hparams: tuple[ListedHParam, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class _Alias:
    criterion: str
    schedule: str
    scopes: tuple[str, ...] | None
    paper: str | None


_MACHINERY = ("method_registry",)
"""The modules of the package that register no method: the registry itself."""


def package_modules() -> list[str]:
    """The modules of the package that may register methods (all but :data:`_MACHINERY`)."""
    package = importlib.import_module("prunebench.methods")
    return [
        f"prunebench.methods.{module.name}"
        for module in pkgutil.iter_modules(package.__path__)
        if module.name not in _MACHINERY
    ]


def _declare_package_methods() -> None:
    """Declare the package's own methods from the registry index; import a module the index does not list."""
    declare_modules("methods", package_modules(), _declare)


def _declare(module: str, record: Record) -> None:
    """Declare the method of ``record`` (the index's, for ``module``) and its aliases.

    A class its module registered already (imported before the registry loaded) stays, checked against the record.
    """
    name = record["name"]
    hparams = tuple(ListedHParam(**{**hp, "default": tuples(hp["default"])}) for hp in record["hparams"])
    entry = _Entry(
        f"{module}:{record['class']}",
        tuples(record["schedules"]),
        tuples(record["scopes"]),
        record["paper"],
        record["version"],
        record["summary"],
        record["track"],
        hparams=hparams,
    )
    registered = _CLASSES.registered_entry(name)
    if registered is not None and registered.cls is not None and registered.target == entry.target:
        _check_indexed(name, entry, registered)
    else:
        _CLASSES.add(name, entry, same=_same)
    for shown in record["aliases"]:
        alias(
            shown["name"],
            f"{name}{SEPARATOR}{shown['schedule']}",
            scopes=tuples(shown["scopes"]),
            paper=shown["paper"],
        )


def index_records(modules: list[str]) -> dict[str, list[Record]]:
    """The registry index's records (:mod:`prunebench.catalog.registry_index`) of the methods that ``modules`` registered when
    imported, and of their aliases, by module (written by :mod:`prunebench.catalog.index_builder`)."""
    if _CLASSES.loaded:
        raise RuntimeError("the method registry has loaded: build the index in a fresh interpreter")
    records: dict[str, list[Record]] = {module: [] for module in modules}
    for name, entry, _ in _CLASSES.registered():
        module, _, class_name = entry.target.partition(":")
        if module not in records or entry.cls is None:
            continue
        aliases = [
            {"name": shown, "schedule": found.schedule, "scopes": found.scopes, "paper": found.paper}
            for shown, found in sorted(_ALIASES.items())
            if found.criterion == name
        ]
        records[module].append(
            {
                "name": name,
                "class": class_name,
                "summary": entry.summary,
                "schedules": entry.schedules,
                "scopes": entry.scopes,
                "paper": entry.paper,
                "version": entry.version,
                "track": entry.track,
                "hparams": [asdict(hparam) for hparam in listed(entry.cls)],
                "aliases": aliases,
            }
        )
    return records


def _check_indexed(name: str, indexed: _Entry, registered: _Entry) -> None:
    """That the class registered as ``name`` states what the index ``indexed`` for it (hyperparameters included)."""
    stated = [f.name for f in fields(_Entry) if f.compare]
    if indexed != registered:
        raise stale(f"method {name!r}", _fields(registered, stated), _fields(indexed, stated))
    hparams = listed(registered.cls)
    if hparams != indexed.hparams:
        raise stale(f"method {name!r}", _by_name(hparams), _by_name(indexed.hparams))


def _fields(entry: _Entry, names: list[str]) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in names}


def _by_name(hparams: tuple[ListedHParam, ...]) -> dict[str, tuple[str, Any, str]]:
    """Each hyperparameter's type, default and meaning, by name (what an error shows)."""
    return {hparam.name: (hparam.type_name, hparam.default, hparam.help) for hparam in hparams}


_CLASSES: Registry[_Entry] = Registry("method", "prunebench.methods", _declare_package_methods)
_ALIASES: dict[str, _Alias] = {}


def _entry(
    name: str,
    target: str,
    summary: str,
    *,
    scopes: tuple[str, ...],
    paper: str,
    schedule: str | None = None,
    schedules: tuple[str, ...] | None = None,
    version: int = 1,
    track: str = "unstructured",
) -> _Entry:
    """The checked entry of a registration (see :func:`register`)."""
    chosen = schedules if schedules is not None else (schedule,) if schedule is not None else ()
    if not chosen or (schedule is not None and schedules is not None):
        raise ValueError("give either schedule= or schedules=")
    bad = [s for s in chosen if s not in SCHEDULES]
    if bad:
        raise ValueError(f"schedule {bad[0]!r} is not one of {SCHEDULES}")
    several = [s for s in chosen if s not in SCORING_SCHEDULES]
    if len(chosen) > 1 and several:
        raise ValueError(f"only scoring criteria run under several schedules; {several} cannot be combined")
    bad = [s for s in scopes if s not in SCOPES]
    if bad:
        raise ValueError(f"scopes {bad} are not among {SCOPES}")
    if "one_shot" not in chosen and set(scopes) & set(ONE_SHOT_ONLY_SCOPES):
        raise ValueError(
            f"scope {ONE_SHOT_ONLY_SCOPES[0]!r} needs calibration data: only under schedule one_shot"
        )
    if SEPARATOR in name:
        raise ValueError(f"a method name cannot contain {SEPARATOR!r}: {name!r}")
    if track not in TRACKS:
        raise ValueError(f"track {track!r} is not one of {TRACKS}")
    return _Entry(target, tuple(chosen), tuple(scopes), paper, version, summary, track)


def register(
    name: str,
    *,
    scopes: tuple[str, ...],
    paper: str,
    schedule: str | None = None,
    schedules: tuple[str, ...] | None = None,
    version: int = 1,
    track: str = "unstructured",
):
    """Class decorator that registers a pruning method under ``name``.

    ``schedule`` (or ``schedules`` for a scoring criterion that runs under several, the first being what ``name``
    alone means) from :data:`~prunebench.run.criterion_schedules.SCHEDULES`; ``scopes`` a subset of :data:`SCOPES` (empty for
    the dense baseline); ``paper`` the citation shown by ``bench list methods``; ``version`` the algorithm version;
    ``track`` what it prunes (:data:`TRACKS`).
    The first line of the class docstring is the one-line summary (followed, for a criterion with several schedules,
    by the schedule's). Hyperparameters are the ``__init__`` keyword arguments (:mod:`prunebench.catalog.hparams`), written
    by hand or by ``@dataclass``. After adding or changing a registration of the package, run
    ``python scripts/build_index.py`` (:mod:`prunebench.catalog.registry_index`).
    """
    arguments = dict(
        scopes=scopes, paper=paper, schedule=schedule, schedules=schedules, version=version, track=track
    )
    _entry(name, "", "", **arguments)  # check the arguments when the decorator is made

    def decorate(cls: type[Method]) -> type[Method]:
        target = f"{cls.__module__}:{cls.__qualname__}"
        entry = replace(_entry(name, target, _first_line(cls), **arguments), cls=cls)
        # An entry declared from the index is replaced by this one, which has the class, when the index states what
        # it registers; a different class under a taken name is an error.
        indexed = _CLASSES.registered_entry(name)
        if indexed is not None and indexed.cls is None and indexed.target == target:
            _check_indexed(name, indexed, entry)
        _CLASSES.add(name, entry, same=_same)
        cls.name = name
        _check_declarations(name, entry, cls)
        return cls

    return decorate


def _same(current: _Entry, new: _Entry) -> bool:
    """Whether two registrations under one name agree: the same declaration, and the same class once known."""
    return current == new and (current.cls is None or new.cls is None or current.cls is new.cls)


def _class_of(criterion: str) -> type[Method]:
    """The class registered as ``criterion``, importing its module if it was only declared."""
    entry = _CLASSES.get(criterion)
    if entry.cls is None:
        importlib.import_module(entry.target.partition(":")[0])
        entry = _CLASSES.get(criterion)
        if entry.cls is None:
            raise RuntimeError(f"method {criterion!r}: importing {entry.target} did not register its class")
    return entry.cls


def _check_declarations(name: str, entry: _Entry, cls: type[Method]) -> None:
    """Hyperparameters resolve, a criterion's never collide with those of a schedule it runs under, and the
    ``one_shot`` schedule is declared by a one-shot method (that schedule alone) or a scoring criterion."""
    from prunebench.methods.base import OneShotMethod, ScoringMethod

    if issubclass(cls, OneShotMethod) and entry.schedules != ("one_shot",):
        raise ValueError(
            f"{name}: a one-shot method registers schedule='one_shot' only, not {entry.schedules}"
        )
    if "one_shot" in entry.schedules and not issubclass(cls, OneShotMethod | ScoringMethod):
        raise ValueError(f"{name}: schedule one_shot runs one-shot methods and scoring criteria only")
    own = declared_hparams(cls)
    for schedule in entry.schedules:
        if schedule in SCHEDULE_CLASSES:
            clash = set(own) & set(declared_hparams(SCHEDULE_CLASSES[schedule]))
            if clash:
                raise ValueError(
                    f"{name}: hyperparameters {sorted(clash)} collide with schedule {schedule}'s"
                )


def alias(name: str, method: str, *, scopes: tuple[str, ...] | None = None, paper: str | None = None) -> None:
    """Give ``criterion@schedule`` (``method``) a name of its own, optionally with fewer scopes and its own paper."""
    criterion, _, schedule = method.partition(SEPARATOR)
    if not schedule:
        raise ValueError(f"an alias names criterion{SEPARATOR}schedule, got {method!r}")
    if name in _ALIASES and _ALIASES[name] != _Alias(criterion, schedule, scopes, paper):
        raise ValueError(f"method alias {name!r} is already registered")
    _ALIASES[name] = _Alias(criterion, schedule, scopes, paper)


def _alias_of(criterion: str, schedule: str) -> str | None:
    return next((n for n, a in _ALIASES.items() if (a.criterion, a.schedule) == (criterion, schedule)), None)


def _spec(name: str, criterion: str, schedule: str, scopes=None, paper=None) -> MethodSpec:
    entry = _CLASSES.get(criterion)
    if schedule not in entry.schedules:
        raise UsageError(
            f"{criterion} runs under the schedules {', '.join(entry.schedules)}; {schedule!r} is not one of them"
        )
    scopes = tuple(scopes) if scopes is not None else entry.scopes
    if schedule != "one_shot":
        scopes = tuple(scope for scope in scopes if scope not in ONE_SHOT_ONLY_SCOPES)
    return MethodSpec(
        name=name,
        schedule=schedule,
        scopes=scopes,
        paper=paper or entry.paper,
        summary=_summary(entry, schedule),
        criterion=criterion,
        version=entry.version,
        track=entry.track,
    )


def _first_line(obj: object) -> str:
    doc = (obj.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def _summary(entry: _Entry, schedule: str) -> str:
    """The class's one-line summary; for a criterion with several schedules, followed by the schedule's."""
    summary = entry.summary
    if len(entry.schedules) > 1 and schedule in SCHEDULE_CLASSES:
        when = _first_line(SCHEDULE_CLASSES[schedule])
        summary = f"{summary.rstrip('.')}: {when[:1].lower()}{when[1:]}"
    return summary


def get_method(name: str) -> MethodSpec:
    """The method ``name`` (registered, an alias, or ``criterion@schedule``).

    A :class:`~prunebench.core.errors.UsageError` lists the registered names when it is unknown.
    """
    _CLASSES.load()
    if name in _ALIASES:
        found = _ALIASES[name]
        return _spec(name, found.criterion, found.schedule, found.scopes, found.paper)
    criterion, separator, schedule = name.partition(SEPARATOR)
    if criterion not in _CLASSES:
        known = sorted({*_CLASSES.names(), *_ALIASES})
        raise UsageError(f"unknown method {criterion!r}; registered: {', '.join(known)}")
    entry = _CLASSES.get(criterion)
    schedule = schedule if separator else entry.schedules[0]
    shown = _alias_of(criterion, schedule)
    if shown is not None:
        return get_method(shown)
    return _spec(
        criterion if schedule == entry.schedules[0] else f"{criterion}{SEPARATOR}{schedule}",
        criterion,
        schedule,
    )


def all_methods() -> list[MethodSpec]:
    """Every named method (registered names and aliases), the dense baseline first, then by name."""
    _CLASSES.load()
    specs = [get_method(name) for name in {*_CLASSES.names(), *_ALIASES}]
    return sorted(specs, key=lambda spec: (spec.schedule != "dense", spec.name))


def combinations() -> list[MethodSpec]:
    """Every criterion under every schedule it declares (``bench list methods --details`` shows them)."""
    _CLASSES.load()
    specs = []
    for criterion in _CLASSES.names():
        for schedule in _CLASSES.get(criterion).schedules:
            specs.append(get_method(f"{criterion}{SEPARATOR}{schedule}"))
    return sorted(specs, key=lambda spec: (spec.schedule != "dense", spec.name))
