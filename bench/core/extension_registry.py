"""One registry helper for the four things users extend: methods, models, datasets and presets.

A :class:`Registry` maps names to entries. Entries come from the package itself (registered when its modules are
imported) and from other packages through a Python entry-point group (``prunebench.methods``, ``prunebench.models``,
``prunebench.datasets``, ``prunebench.presets``): each entry point names a module that registers its entries when
imported. The entry points are imported on first use of the registry. A plugin that fails to import (whatever it
raises, ``SystemExit`` included; Ctrl-C still stops) gives one :class:`PluginWarning` naming it and its error;
everything else keeps working.

The package's own models and datasets are *declared*: their registrations are read from the registry index
(:mod:`prunebench.catalog.registry_index`), so that listing them imports neither those modules nor torch. A declared entry
holds a :class:`Deferred` in place of each callable it registers; :meth:`Registry.get` imports its module, whose
decorator then registers the real entry, checked to state what the index stated.
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from prunebench.catalog.registry_index import stale
from prunebench.core.errors import unknown

T = TypeVar("T")


class PluginWarning(UserWarning):
    """A plugin (an entry point of a ``prunebench.*`` group) could not be imported, so its entries are missing."""


class Deferred:
    """The ``attribute`` callable of the declared entry ``name`` of ``registry``, its module not yet imported.

    Calling it imports the module (through :meth:`Registry.get`) and calls what the module registered.
    """

    def __init__(self, registry: Registry[Any], name: str, attribute: str) -> None:
        self.registry = registry
        self.name = name
        self.attribute = attribute

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.registry.get(self.name), self.attribute)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<{self.attribute} of {self.registry.kind} {self.name!r}, imported on first call>"


def _stated(entry: object) -> dict[str, Any]:
    """The fields of a declared entry that its declaration states (all but those it defers)."""
    return {
        f.name: getattr(entry, f.name)
        for f in dataclasses.fields(entry)  # type: ignore[arg-type]
        if not isinstance(getattr(entry, f.name), Deferred)
    }


def _deferred(entry: object) -> bool:
    return dataclasses.is_dataclass(entry) and any(
        isinstance(getattr(entry, f.name), Deferred) for f in dataclasses.fields(entry)
    )


class Registry(Generic[T]):
    """Named entries of one ``kind`` (``method``, ``model``, ...), with the entry points of ``group``.

    ``builtins`` imports the package's own modules that register entries (called once, before the entry points).
    Registering a second, different entry under a taken name is an error, so two plugins never silently shadow
    each other.
    """

    def __init__(self, kind: str, group: str, builtins: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self.group = group
        self._builtins = builtins
        self._entries: dict[str, T] = {}
        self._modules: dict[str, str] = {}
        """The module that declared or registered each entry, where known."""
        self._loaded = False

    def add(
        self, name: str, entry: T, *, same: Callable[[T, T], bool] | None = None, module: str | None = None
    ) -> T:
        """Register ``entry`` under ``name``; re-registering an equal entry (a module imported twice) is allowed.

        An entry declared under ``name`` is replaced by the one its own ``module`` registers, when that states what
        the declaration stated.
        """
        if name in self._entries:
            current = self._entries[name]
            if _deferred(current) and module == self._modules.get(name):
                self._check_declared(name, current, entry)
            else:
                equal = same(current, entry) if same is not None else current == entry
                if not equal:
                    raise ValueError(f"{self.kind} {name!r} is already registered ({current!r})")
        self._entries[name] = entry
        if module is not None:
            self._modules[name] = module
        return entry

    def declare(self, name: str, entry: T, module: str) -> None:
        """Register ``entry``, read from the index for ``module`` (its callables :class:`Deferred`), under ``name``.

        An entry that ``module`` registered already (it was imported first) stays, checked against ``entry``.
        """
        current = self._entries.get(name)
        if current is not None and not _deferred(current):
            if self._modules.get(name) != module:
                raise ValueError(f"{self.kind} {name!r} is already registered ({current!r})")
            self._check_declared(name, entry, current)
            return
        self.add(name, entry, module=module)

    def _check_declared(self, name: str, declared: T, entry: T) -> None:
        stated = _stated(declared)
        registered = {field: getattr(entry, field) for field in stated}
        if registered != stated:
            raise stale(
                f"{self.kind} {name!r} of {self._modules.get(name, 'its module')}", registered, stated
            )

    def load(self) -> None:
        """Import the package's modules and every entry point of the group, once."""
        if self._loaded:
            return
        self._loaded = True
        if self._builtins is not None:
            self._builtins()
        from importlib.metadata import entry_points

        for entry in entry_points(group=self.group):
            try:
                importlib.import_module(entry.value.partition(":")[0])
            except (Exception, SystemExit) as error:  # noqa: BLE001  (a broken plugin must not break the others)
                warnings.warn(
                    f"{self.kind} plugin {entry.name!r} ({entry.value}) failed to import and is skipped: "
                    f"{type(error).__name__}: {error}",
                    PluginWarning,
                    stacklevel=2,
                )

    def get(self, name: str) -> T:
        """The entry ``name`` (its module imported if it was declared); a
        :class:`~prunebench.core.errors.UsageError` listing the registered names otherwise."""
        self.load()
        if name not in self._entries:
            raise unknown(self.kind, name, list(self._entries))
        if name in self._modules and _deferred(self._entries[name]):
            importlib.import_module(self._modules[name])
            if _deferred(self._entries[name]):
                raise RuntimeError(
                    f"{self.kind} {name!r}: importing {self._modules[name]} did not register it"
                )
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._entries

    def names(self) -> list[str]:
        self.load()
        return sorted(self._entries)

    def registered(self) -> list[tuple[str, T, str | None]]:
        """Each entry registered or declared so far, with its module where known, without loading the registry
        (:mod:`prunebench.catalog.index_builder` reads what importing the package's modules registered)."""
        return [(name, entry, self._modules.get(name)) for name, entry in sorted(self._entries.items())]

    def registered_entry(self, name: str) -> T | None:
        """The entry registered or declared under ``name`` so far (``None``: none), without loading the registry."""
        return self._entries.get(name)

    @property
    def loaded(self) -> bool:
        """Whether :meth:`load` has run."""
        return self._loaded

    def entries(self) -> list[T]:
        """Every entry, ordered by name (a declared one as declared: its module is not imported)."""
        return [self._entries[name] for name in self.names()]

    def discard(self, names: Iterable[str]) -> None:
        """Remove entries (tests that register temporary ones clean up with it)."""
        for name in names:
            self._entries.pop(name, None)
