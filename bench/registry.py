"""One registry helper for the four things users extend: methods, models, datasets and presets.

A :class:`Registry` maps names to entries. Entries come from the package itself (registered when its modules are
imported) and from other packages through a Python entry-point group (``prunebench.methods``, ``prunebench.models``,
``prunebench.datasets``, ``prunebench.presets``): each entry point names a module that registers its entries when
imported. The entry points are imported on first use of the registry. A plugin that fails to import gives one
:class:`PluginWarning` naming it and its error; everything else keeps working.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from prunebench.errors import unknown

T = TypeVar("T")


class PluginWarning(UserWarning):
    """A plugin (an entry point of a ``prunebench.*`` group) could not be imported, so its entries are missing."""


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
        self._loaded = False

    def add(self, name: str, entry: T, *, same: Callable[[T, T], bool] | None = None) -> T:
        """Register ``entry`` under ``name``; re-registering an equal entry (a module imported twice) is allowed."""
        if name in self._entries:
            current = self._entries[name]
            equal = same(current, entry) if same is not None else current == entry
            if not equal:
                raise ValueError(f"{self.kind} {name!r} is already registered ({current!r})")
        self._entries[name] = entry
        return entry

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
            except Exception as error:  # noqa: BLE001  (a broken plugin must not break the others)
                warnings.warn(
                    f"{self.kind} plugin {entry.name!r} ({entry.value}) failed to import and is skipped: "
                    f"{type(error).__name__}: {error}",
                    PluginWarning,
                    stacklevel=2,
                )

    def get(self, name: str) -> T:
        """The entry ``name``; a :class:`~prunebench.errors.UsageError` listing the registered names otherwise."""
        self.load()
        if name not in self._entries:
            raise unknown(self.kind, name, list(self._entries))
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._entries

    def names(self) -> list[str]:
        self.load()
        return sorted(self._entries)

    def entries(self) -> list[T]:
        """Every entry, ordered by name."""
        return [self._entries[name] for name in self.names()]

    def discard(self, names: Iterable[str]) -> None:
        """Remove entries (tests that register temporary ones clean up with it)."""
        for name in names:
            self._entries.pop(name, None)
