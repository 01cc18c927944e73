"""Reading run records from one or more results directories, merged, with every skipped file reported."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from prunebench.errors import UsageError
from prunebench.record import from_legacy, problem

STATUSES = ("ok", "failed", "diverged")
DENSE = "dense"
"""The method name of the dense baseline."""


class RecordWarning(UserWarning):
    """A record that was skipped (malformed, truncated, of another record version) or found more than once."""


def _warn(message: str) -> None:
    warnings.warn(message, RecordWarning, stacklevel=3)


def method_label(record: dict[str, Any]) -> str:
    """The method as the leaderboard shows it: with the hyperparameters that differ from the defaults,
    ``probmask[samples=4]``, so that variants of a method are kept apart."""
    variant = record.get("variant") or ""
    return f"{record['method']}[{variant}]" if variant else record["method"]


def _read(path: Path) -> dict[str, Any] | None:
    """The record in ``path`` (a version-1 record read as it is, marked ``_legacy``), or ``None`` after a warning
    naming the path and the reason."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        _warn(f"skipped {path}: not a readable record ({type(error).__name__}: {error})")
        return None
    legacy = from_legacy(record)
    if legacy is not None:
        record = {**legacy, "_legacy": True}
    reason = problem(record)
    if reason:
        _warn(f"skipped {path}: {reason}")
        return None
    record["_path"] = str(path)
    return record


def _run_of(record: dict[str, Any]) -> tuple:
    """What a record measured, whatever its format: cell, seed and budget."""
    budget = (record.get("epochs") or {}).get("budget")
    keys = ("dataset", "model", "method", "variant", "scope", "sparsity", "seed")
    return (*(record[k] for k in keys), budget)


def _without_superseded_legacy(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop version-1 records of runs that a current record measured again; report the legacy ones kept."""
    current = {_run_of(r) for r in records if not r.get("_legacy")}
    legacy = [r for r in records if r.get("_legacy")]
    superseded = [r for r in legacy if _run_of(r) in current]
    if legacy:
        _warn(
            f"{len(legacy)} records of format 1 (before run identity) found: "
            f"{len(legacy) - len(superseded)} read as they are, {len(superseded)} replaced by current records "
            "of the same runs; `bench run` does not resume from them"
        )
    return [r for r in records if not (r.get("_legacy") and _run_of(r) in current)]


def _preferred(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Of two records of one run, a finished one over a failed one; otherwise the first found."""
    if first["status"] == "failed" and second["status"] != "failed":
        return second
    return first


def load_records(directories: Iterable[Path]) -> list[dict[str, Any]]:
    """Every usable record under ``<dir>/runs/*.json`` of each directory, each run once.

    Unreadable, malformed and other-version records are skipped with a :class:`RecordWarning` naming the path.
    A run found more than once (same ``run_id``) is counted once and reported once with all its paths.
    A directory that does not exist is a :class:`UsageError`.
    """
    by_run: dict[str, dict[str, Any]] = {}
    paths: dict[str, list[str]] = {}
    for directory in map(Path, directories):
        if not directory.is_dir():
            raise UsageError(f"{directory} is not a directory")
        for path in sorted(directory.glob("runs/*.json")):
            record = _read(path)
            if record is None:
                continue
            run_id = str(record["run_id"])
            paths.setdefault(run_id, []).append(str(path))
            by_run[run_id] = _preferred(by_run[run_id], record) if run_id in by_run else record
    for run_id, found in paths.items():
        if len(found) > 1:
            _warn(
                f"run {run_id} found {len(found)} times ({', '.join(found)}); "
                f"counted once, from {by_run[run_id]['_path']}"
            )
    return _without_superseded_legacy(list(by_run.values()))


def select(
    records: list[dict[str, Any]], dataset: str | None, model: str | None, methods: Sequence[str] | None
) -> list[dict[str, Any]]:
    """The records of ``dataset``, ``model`` and ``methods`` (``None``: all); the dense baseline always stays."""
    return [
        r
        for r in records
        if (dataset is None or r["dataset"] == dataset)
        and (model is None or r["model"] == model)
        and (not methods or r["method"] in methods or r["method"] == DENSE)
    ]


def warn_mixed_budgets(records: list[dict[str, Any]]) -> None:
    """Warn about a (dataset, model) whose finished runs had different budgets: its cells pool them."""
    budgets: dict[tuple[str, str], set[str]] = {}
    for r in records:
        if r["status"] == "ok":
            budget = (r.get("epochs") or {}).get("budget")
            budgets.setdefault((r["dataset"], r["model"]), set()).add(f"{r.get('preset')}: {budget} epochs")
    for (dataset, model), found in sorted(budgets.items()):
        if len(found) > 1:
            _warn(
                f"{dataset} / {model} pools runs of different budgets ({'; '.join(sorted(found))}); "
                "write their leaderboards from separate directories to compare like with like"
            )
