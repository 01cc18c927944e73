"""User code given by reference, ``package.module:attribute`` (a model or dataset factory), and its version.

A referenced factory is part of a run's identity through :func:`reference_version`: the module's ``__version__``
when it declares one, else a hash of the module's source file. Editing that file re-runs the runs that use it (code
the module imports from elsewhere is not seen: declare a ``__version__`` and bump it when it matters).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import sys
from collections.abc import Callable
from typing import Any

from prunebench.core.errors import UsageError


def load_reference(reference: str, kind: str) -> Callable[..., Any]:
    """The callable named by ``package.module:attribute``; a one-line usage error when it cannot be found."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"a {kind} given by reference reads package.module:factory, got {reference!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001  (any import failure of user code is the user's to fix)
        raise UsageError(
            f"cannot import {module_name!r} for {kind} {reference!r}: {type(error).__name__}: {error}"
        ) from None
    found = getattr(module, attribute, None)
    if not callable(found):
        raise UsageError(f"{module_name} has no callable {attribute!r} for {kind} {reference!r}")
    return found


def reference_version(factory: Callable[..., Any]) -> str:
    """``__version__`` of the factory's module, else ``sha256:`` and the first 16 hex digits of its source."""
    module = sys.modules.get(getattr(factory, "__module__", ""), None)
    declared = getattr(module, "__version__", None)
    if declared is not None:
        return str(declared)
    try:
        source = inspect.getsource(module) if module is not None else inspect.getsource(factory)
    except (OSError, TypeError):
        return "unversioned"
    return "sha256:" + hashlib.sha256(source.encode()).hexdigest()[:16]
