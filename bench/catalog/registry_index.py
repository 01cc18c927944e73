"""The registry index: what the package's own modules register, read without importing them (and so without torch).

``bench list methods`` (``--details`` included), ``bench list models``, ``bench list datasets`` and the leaderboard
need each entry's declared fields (a method's schedules, scopes, paper, version, summary and hyperparameters; a
model's or dataset's summary, source, shape and version), not its code. ``registry_index.json``, next to this
module, holds them as plain data, by registering module; :mod:`prunebench.catalog.index_builder` writes it by importing the
real modules (``python scripts/build_index.py``), and ``tests/test_index.py`` fails while the committed file is not
what that command writes.

A registry declares the entries the index lists for each of its modules, and imports a module that the index does
not list (one added since the index was written). The module of a declared entry is imported on first use, and what
it then registers is checked against the index: a stale index is an error naming the command that refreshes it.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

INDEX_FILE = Path(__file__).with_name("registry_index.json")
REBUILD = "python scripts/build_index.py"
"""The command that rewrites :data:`INDEX_FILE` (run from the repository's root)."""

KINDS = ("methods", "models", "datasets")

Record = dict[str, Any]
"""One entry of the index: the fields its registration states, as JSON data."""

_NONE = object()
"""A field one side of :func:`stale` lacks."""


@functools.cache
def read_index() -> dict[str, dict[str, list[Record]]]:
    """The index: for each of :data:`KINDS`, each registering module's records (an empty list: it registers none)."""
    try:
        index = json.loads(INDEX_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RuntimeError(
            f"the registry index {INDEX_FILE.name} cannot be read ({error}): run `{REBUILD}`"
        ) from None
    missing = [kind for kind in KINDS if not isinstance(index.get(kind), dict)]
    if missing:
        raise RuntimeError(f"the registry index {INDEX_FILE.name} has no {missing[0]}: run `{REBUILD}`")
    return index


def declare_modules(
    kind: str,
    modules: Iterable[str],
    declare: Callable[[str, Record], None],
    index: Mapping[str, list[Record]] | None = None,
) -> None:
    """Call ``declare(module, record)`` for each record the index lists for each of ``modules`` (``kind``: one of
    :data:`KINDS`); import a module the index does not list, so that its decorators register its entries.

    ``index`` replaces the committed index's records of ``kind`` (tests declare modules of their own with it).
    """
    listed = read_index()[kind] if index is None else index
    for module in modules:
        if module in listed:
            for record in listed[module]:
                declare(module, record)
        else:
            importlib.import_module(module)


def stale(what: str, registered: Mapping[str, object], indexed: Mapping[str, object]) -> ValueError:
    """The error for an entry whose module registers other than the index states (the fields that differ)."""
    differ = [
        key for key in {**indexed, **registered} if registered.get(key, _NONE) != indexed.get(key, _NONE)
    ]

    def shown(fields: Mapping[str, object]) -> str:
        return ", ".join(f"{key}={fields[key]!r}" if key in fields else f"no {key}" for key in differ)

    return ValueError(
        f"{what} registers {shown(registered)}, but the registry index ({INDEX_FILE.name}) states "
        f"{shown(indexed)}: the index is stale; run `{REBUILD}`"
    )


def tuples(value: Any) -> Any:
    """``value`` read from JSON with its arrays as tuples (the registries' sequences are tuples)."""
    return tuple(tuples(item) for item in value) if isinstance(value, list) else value
