"""prunebench: compare neural-network pruning methods on one harness, at fixed sparsities, over seeds.

The public API (``prune``, ``apply_masks``, ``list_methods``, ``prunable_set``, ``load_mask``, and ``sparsify`` for a
training loop of one's own) is imported lazily so that ``import prunebench`` and ``bench --help`` stay fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "apply_masks", "list_methods", "load_mask", "prunable_set", "prune", "sparsify"]


def __getattr__(name: str) -> Any:
    if name in ("prune", "apply_masks", "list_methods", "prunable_set", "load_mask"):
        return getattr(import_module("prunebench.pruning.public_api"), name)
    if name == "sparsify":
        return import_module("prunebench.pruning.sparsify").sparsify
    raise AttributeError(f"module 'prunebench' has no attribute {name!r}")
