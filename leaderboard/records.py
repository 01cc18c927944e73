"""Reading run records from one or more results directories, merged, with every skipped file reported."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from prunebench.errors import UsageError
from prunebench.results import RECORD_VERSION

REQUIRED = ("run_id", "dataset", "model", "method", "scope", "sparsity", "seed", "status")
"""Fields every record has, whatever its status."""

NUMERIC_OK = ("top1", "top5", "achieved_sparsity", "compression_ratio", "speedup")
"""Numeric fields a record of a run that finished ``ok`` has in addition (and ``collapsed``)."""

STATUSES = ("ok", "failed", "diverged")
DENSE = "dense"
"""The method name of the dense baseline."""


class RecordWarning(UserWarning):
    """A record that was skipped (malformed, truncated, of another record version) or found more than once."""


def _warn(message: str) -> None:
    warnings.warn(message, RecordWarning, stacklevel=3)


def _problem(record: Any) -> str | None:
    """Why ``record`` is not a usable record of this version, or ``None`` when it is."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("version") != RECORD_VERSION:
        return f"record version {record.get('version')!r}, this prunebench reads version {RECORD_VERSION}"
    missing = [key for key in REQUIRED if key not in record]
    if record.get("status") == "ok":
        missing += [key for key in (*NUMERIC_OK, "collapsed") if record.get(key) is None]
    if missing:
        return f"malformed record (missing {', '.join(missing)})"
    if record["status"] not in STATUSES:
        return f"malformed record (unknown status {record['status']!r})"
    numeric = ("seed", *NUMERIC_OK) if record["status"] == "ok" else ("seed",)
    wrong = [key for key in numeric if not _is_number(record[key])]
    if record["sparsity"] is not None and not _is_number(record["sparsity"]):
        wrong.append("sparsity")
    if wrong:
        return f"malformed record (not a number: {', '.join(wrong)})"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _read(path: Path) -> dict[str, Any] | None:
    """The record in ``path``, or ``None`` after a warning naming the path and the reason."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        _warn(f"skipped {path}: not a readable record ({type(error).__name__}: {error})")
        return None
    problem = _problem(record)
    if problem:
        _warn(f"skipped {path}: {problem}")
        return None
    record["_path"] = str(path)
    return record


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
    return list(by_run.values())


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
