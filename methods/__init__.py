"""Pruning methods: the registry and one module per method (imported on first use of the registry)."""

from prunebench.methods.method_registry import (
    SCHEDULES,
    SCOPES,
    MethodSpec,
    all_methods,
    get_method,
    register,
)

__all__ = ["SCHEDULES", "SCOPES", "MethodSpec", "all_methods", "get_method", "register"]
