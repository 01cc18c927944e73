"""Source fingerprints: which code wrote a record, so that resume can say when that code changed under one version.

A run's id holds the algorithm versions of its method and schedule and :data:`~prunebench.run.run_config.HARNESS_VERSION`,
which their authors bump when a change alters what runs compute. A change without a bump keeps the id, and resume
reuses the old records. So every record also keeps, under ``source``, two fingerprints (16 hex digits of a SHA-256
over module names and file contents, as :func:`~prunebench.core.hashing.stable_hash`):

* ``method``: the source files of the method (:func:`method_sources`): the module that defines its class, those
  that define its bases in a method package (``prunebench.methods``, or a plugin's own top-level package), the
  modules of a method package they import, and, for a scoring criterion, its schedule's module and implementation;
* ``harness``: the source files of :data:`HARNESS_MODULES`, the training semantics every method shares.

On resume, :func:`stale_source_warnings` compares the fingerprints of the finished records with the current ones. A
difference is reported, never acted on: the record is reused, since a change may as well be a comment, and the user
decides whether to bump a version or rerun with ``--force``. Records written before fingerprints existed have none
and are not compared. Each fingerprint is computed once per process.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import inspect
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunebench.run.criterion_schedules import SCHEDULE_CLASSES
from prunebench.run.run_config import HARNESS_VERSION

if TYPE_CHECKING:
    from prunebench.methods.method_registry import MethodSpec
    from prunebench.run.run_config import RunConfig

HARNESS_MODULES = (
    "prunebench.run.trainer",
    "prunebench.run.fused_step",
    "prunebench.pruning.mask_application",
    "prunebench.pruning.allocation",
    "prunebench.pruning.keep_budget",
    "prunebench.pruning.prunable",
    "prunebench.pruning.accounting",
    "prunebench.run.recipe",
    "prunebench.run.run_context",
    "prunebench.run.phases",
    "prunebench.run.schedule_plans",
    "prunebench.run.runner",
    "prunebench.run.run_checkpoint",
    "prunebench.run.allocation_controls",
    "prunebench.run.control_plans",
    "prunebench.structured.structured_run",
    "prunebench.structured.channels",
)
"""The modules whose source is the harness fingerprint: the training loop and optimizer steps, masks, allocation,
the prunable set, accounting, the recipe, the run's context, its phases and each schedule's plan of them (``at_init``,
``after_training``, ``during_training`` and the dense pre-training), checkpoints, allocation controls and the
structured track. Models and datasets have versions of their own."""

SCHEDULE_MODULES = {
    "gradual": "prunebench.run.gradual_schedule",
    "iterative": "prunebench.run.iterative_schedule",
}
"""The modules that run a criterion under a schedule of its own, part of the fingerprint of the methods that use it
(the other schedules are planned by :mod:`prunebench.run.schedule_plans`, part of the harness)."""

METHOD_PACKAGE = "prunebench.methods"
NOT_METHOD_SOURCE = frozenset({"prunebench.methods", "prunebench.methods.method_registry"})
"""Modules of the method package that name methods without computing anything: a change there warns of nothing."""


def method_sources(spec: MethodSpec) -> dict[str, Path]:
    """The source files of ``spec``'s method, by module name (see the module docstring); empty when the file of the
    method's own class cannot be found (a class defined interactively)."""
    return dict(_method_sources(spec.cls, spec.schedule))


def method_fingerprint(spec: MethodSpec) -> str | None:
    """The fingerprint of :func:`method_sources`; ``None`` when they cannot be found."""
    sources = _method_sources(spec.cls, spec.schedule)
    return _fingerprint(sources) if sources else None


def harness_fingerprint() -> str:
    """The fingerprint of the sources of :data:`HARNESS_MODULES`."""
    return _fingerprint(_harness_sources())


def source_fingerprints(config: RunConfig) -> dict[str, str]:
    """A record's ``source``: ``{"method": ..., "harness": ...}``, without ``method`` when the run's method cannot be
    resolved or its source found (the record of a run whose method failed to import must still be written)."""
    fingerprints = {"harness": harness_fingerprint()}
    try:
        method = method_fingerprint(config.spec)
    except Exception:  # noqa: BLE001  (an unregistered or broken method: its failure record says why)
        method = None
    if method is not None:
        fingerprints["method"] = method
    return fingerprints


def stale_source_warnings(finished: Iterable[tuple[RunConfig, Mapping[str, Any] | None]]) -> list[str]:
    """One line per method whose finished records (pairs of a run and its record) were written by another source of
    the method than the current one, and one for the harness; empty when nothing differs.

    A record without ``source`` (written before it existed) is not compared. The version of a record's method is
    the current one (it is part of the run id the record was found under), so a difference is an edit without a
    version bump.
    """
    methods: Counter[str] = Counter()
    specs: dict[str, MethodSpec] = {}
    harness = 0
    for config, record in finished:
        stored = record.get("source") if record is not None else None
        if not isinstance(stored, Mapping):
            continue
        current = source_fingerprints(config)
        if "method" in stored and "method" in current and stored["method"] != current["method"]:
            methods[config.spec.name] += 1
            specs[config.spec.name] = config.spec
        if "harness" in stored and stored["harness"] != current["harness"]:
            harness += 1
    lines = [_method_line(name, count, specs[name]) for name, count in sorted(methods.items())]
    if harness:
        lines.append(
            f"{_records(harness)} {_were(harness)} written by a different source of the harness under the same "
            f"HARNESS_VERSION ({HARNESS_VERSION}); {_they(harness)} reused: bump prunebench.run.run_config.HARNESS_VERSION "
            "if the change alters what runs compute, or rerun with --force"
        )
    return lines


def _method_line(name: str, count: int, spec: MethodSpec) -> str:
    """The warning for ``count`` records of the method ``name`` written by another source of it."""
    schedule = " (or its schedule's)" if spec.schedule_class is not None else ""
    return (
        f"{_records(count)} of {name} {_were(count)} written by a different source of the method under the same "
        f"version ({_versions(spec)}); {_they(count)} reused: bump the method's version{schedule} or rerun with "
        "--force"
    )


def _records(count: int) -> str:
    return f"{count} record" if count == 1 else f"{count} records"


def _were(count: int) -> str:
    return "was" if count == 1 else "were"


def _they(count: int) -> str:
    return "it is" if count == 1 else "they are"


def _versions(spec: MethodSpec) -> str:
    """``magnitude version 3, gradual schedule version 1``: the versions a bump would change."""
    return ", ".join(
        f"{name.removeprefix('schedule:')} schedule version {version}"
        if name.startswith("schedule:")
        else f"{name} version {version}"
        for name, version in spec.versions.items()
    )


@functools.cache
def _harness_sources() -> tuple[tuple[str, Path], ...]:
    """The files of :data:`HARNESS_MODULES`, found once."""
    return tuple((name, _module_file(name)) for name in HARNESS_MODULES)


@functools.cache
def _method_sources(cls: type, schedule: str) -> tuple[tuple[str, Path], ...]:
    """:func:`method_sources` as sorted pairs, worked out once per class and schedule."""
    own = _class_file(cls)
    if own is None:
        return ()
    packages = {METHOD_PACKAGE, cls.__module__.partition(".")[0]} - {"prunebench"}
    sources = {
        base.__module__: path
        for base in cls.__mro__
        if _within(base.__module__, packages) and (path := _class_file(base)) is not None
    }
    sources[cls.__module__] = own
    if schedule in SCHEDULE_CLASSES:
        sources[SCHEDULE_CLASSES[schedule].__module__] = _module_file(SCHEDULE_CLASSES[schedule].__module__)
    if schedule in SCHEDULE_MODULES:
        sources[SCHEDULE_MODULES[schedule]] = _module_file(SCHEDULE_MODULES[schedule])
    pending = list(sources.items())
    while pending:
        name, path = pending.pop()
        for imported in _imports(name, path):
            if imported in sources or imported in NOT_METHOD_SOURCE or not _within(imported, packages):
                continue
            found = _find_file(imported)
            if found is not None:
                sources[imported] = found
                pending.append((imported, found))
    return tuple(sorted(sources.items()))


def _within(module: str, packages: set[str]) -> bool:
    """Whether ``module`` is one of ``packages`` or lies inside one."""
    return any(module == package or module.startswith(f"{package}.") for package in packages)


def _class_file(cls: type) -> Path | None:
    """The source file of ``cls``'s module, or ``None`` (a built-in, a class made in an interactive session)."""
    try:
        found = inspect.getsourcefile(cls)
    except (TypeError, OSError):
        return None
    return Path(found) if found else None


def _find_file(module: str) -> Path | None:
    """The source file of ``module``, found without importing it (its package is imported); ``None`` when it is
    not a module with a source file."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.has_location or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _module_file(module: str) -> Path:
    """The source file of one of prunebench's own modules (always there)."""
    found = _find_file(module)
    if found is None:
        raise RuntimeError(f"{module} has no source file")
    return found


def _is_package(module: str) -> bool:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.submodule_search_locations is not None


def _imports(module: str, path: Path) -> list[str]:
    """The modules ``module`` (at ``path``) imports anywhere in its source, read, not run: ``from a.b import c`` is
    ``a.b.c`` when ``a.b`` is a package (``c`` may be a submodule), ``a.b`` otherwise."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            try:
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            except ImportError:
                continue
            if _is_package(base):
                names += [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]
            names.append(base)
    return names


@functools.cache
def _fingerprint(sources: tuple[tuple[str, Path], ...]) -> str:
    """16 hex digits of the SHA-256 of each module's name and source (line endings made ``\\n``), in the given order:
    the same sources give the same fingerprint on any machine, wherever the checkout lies."""
    digest = hashlib.sha256()
    for name, path in sources:
        text = path.read_bytes().replace(b"\r\n", b"\n")
        digest.update(f"{name}\0{len(text)}\0".encode())
        digest.update(text)
    return digest.hexdigest()[:16]
