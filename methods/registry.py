"""The method registry: one decorator, one place that knows every method.

A method is a class registered with :func:`register`, which declares *when* it prunes (its schedules) and *how the
global budget may be split across layers* (the scopes it supports). The harness owns everything else: data, training,
mask application, accounting and records.

Criterion x schedule. A scoring criterion (a :class:`~prunebench.methods.base.ScoringMethod`) is written once and
declares every schedule it supports (:mod:`prunebench.schedules`); its name alone means its first schedule, and
``criterion@schedule`` any other (``magnitude@iterative``). :func:`alias` gives a combination a name of its own
(``gmp`` is ``magnitude@gradual``); a combination with an alias is shown under the alias wherever it was asked for.

Each method declares its hyperparameters in its ``__init__`` signature (:mod:`prunebench.hparams`) and its algorithm
``version``, an integer bumped whenever a change to its code changes what it computes; both enter a run's id.

Methods from other packages register through the ``prunebench.methods`` entry-point group: each entry names a module
that is imported on first use of the registry, and that module calls :func:`register`.

Reading the registry imports no method module (and so no torch): the package's own modules are read, not run
(:mod:`prunebench.declarations` reads their ``@register`` and ``alias`` calls from the source), and a
method's class is imported when something needs it (its hyperparameters, an instance). A module whose registrations
cannot be read that way (an argument that is not a literal) is imported on first use of the registry, as before.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunebench.declarations import init_from_source, read_declarations
from prunebench.errors import UsageError
from prunebench.hparams import HParam, declared_hparams, format_value
from prunebench.registry import Registry
from prunebench.schedules import SCHEDULE_CLASSES, SCHEDULES, SCORING_SCHEDULES, Schedule

if TYPE_CHECKING:
    from prunebench.methods.base import Method

SCOPES = ("global", "uniform", "uniform_plus", "erk", "learned")
"""How a global budget is split across layers. ``learned`` means the method learns the allocation itself."""

TRACKS = ("unstructured", "structured")
"""What a method prunes: single weights (``unstructured``) or whole channels (``structured``, see
:mod:`prunebench.channels`). A grid runs the methods of one track."""

SEPARATOR = "@"
"""Between a criterion and a schedule in a method name: ``magnitude@gradual``."""


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

    def listed_hparams(self) -> dict[str, HParam]:
        """:attr:`hparams` as listings show them: read from the ``__init__`` in the class's source while its module
        is not imported (:func:`~prunebench.declarations.init_from_source`), so that ``bench list methods
        --details`` imports no torch; from the class when it is imported or its source cannot be read so."""
        entry = _CLASSES.get(self.criterion)
        init = None
        if entry.cls is None and entry.source is not None:
            init = init_from_source(entry.source, entry.target.partition(":")[2])
        if init is None:
            return self.hparams
        try:
            return self._with_schedule(declared_hparams(type(self.criterion, (), {"__init__": init})))
        except TypeError:  # an annotation that needs a name of the module
            return self.hparams

    def _with_schedule(self, own: dict[str, HParam]) -> dict[str, HParam]:
        declared = dict(own)
        if self.schedule_class is not None:
            declared.update(declared_hparams(self.schedule_class))
        return declared

    def resolve(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """All hyperparameters: the defaults, overridden by ``given`` (checked and canonical).

        An unknown name, a value of the wrong type or a value the method rejects is a
        :class:`~prunebench.errors.UsageError` naming the method and what it accepts.
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

    ``target`` (``module:Class``) says where the class is; ``cls`` is ``None`` until its module is imported.
    """

    target: str
    schedules: tuple[str, ...]
    scopes: tuple[str, ...]
    paper: str
    version: int
    summary: str
    track: str = "unstructured"
    cls: type[Method] | None = field(default=None, compare=False)
    source: Path | None = field(default=None, compare=False)
    """The file the registration was read from (``None`` for a class registered by importing its module)."""


@dataclass(frozen=True)
class _Alias:
    criterion: str
    schedule: str
    scopes: tuple[str, ...] | None
    paper: str | None


_MACHINERY = ("registry",)
"""The modules of the package that register no method: the registry itself."""


def _declare_package_methods() -> None:
    """Register the package's own methods from their source; import only a module that cannot be read so."""
    package = importlib.import_module("prunebench.methods")
    for module in pkgutil.iter_modules(package.__path__):
        if module.name in _MACHINERY:
            continue
        qualified = f"prunebench.methods.{module.name}"
        source = Path(module.module_finder.path) / f"{module.name}.py"
        found = read_declarations(source)
        if found is None:
            importlib.import_module(qualified)
            continue
        for declared in found.registrations:
            entry = _entry(
                declared.name, f"{qualified}:{declared.class_name}", declared.summary, **declared.arguments
            )
            entry = replace(entry, source=source)
            if declared.name in _CLASSES and _CLASSES.get(declared.name).cls is not None:
                entry = replace(entry, cls=_CLASSES.get(declared.name).cls)  # imported before the registry
            _CLASSES.add(declared.name, entry, same=_same)
        for arguments in found.aliases:
            alias(*arguments.args, **arguments.kwargs)


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
    alone means) from :data:`~prunebench.schedules.SCHEDULES`; ``scopes`` a subset of :data:`SCOPES` (empty for
    the dense baseline); ``paper`` the citation shown by ``bench list methods``; ``version`` the algorithm version;
    ``track`` what it prunes (:data:`TRACKS`).
    The first line of the class docstring is the one-line summary (followed, for a criterion with several schedules,
    by the schedule's). Hyperparameters are the ``__init__`` keyword
    arguments (:mod:`prunebench.hparams`). Write the arguments as literals (or module-level constants holding
    literals), so that the registry can read them without importing the module.
    """
    arguments = dict(
        scopes=scopes, paper=paper, schedule=schedule, schedules=schedules, version=version, track=track
    )
    _entry(name, "", "", **arguments)  # check the arguments when the decorator is made

    def decorate(cls: type[Method]) -> type[Method]:
        target = f"{cls.__module__}:{cls.__qualname__}"
        entry = _entry(name, target, _first_line(cls), **arguments)
        # A declared entry (read from the source) is replaced by this one, which has the class; a different
        # class under a taken name is an error.
        _CLASSES.add(name, replace(entry, cls=cls), same=_same)
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
    """Hyperparameters resolve, and a criterion's never collide with those of a schedule it runs under."""
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
    return MethodSpec(
        name=name,
        schedule=schedule,
        scopes=tuple(scopes) if scopes is not None else entry.scopes,
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

    A :class:`~prunebench.errors.UsageError` lists the registered names when it is unknown.
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
