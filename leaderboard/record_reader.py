"""Reading run records from one or more results directories, merged, with every skipped file reported.

Every record field the leaderboard reads beyond the required ones goes through the accessors here, so that a change
of the record layout is handled in one place. A leaderboard row is (method, variant, scope): ``variant`` is a short
label of a run's non-default hyperparameters (``samples=4``) and of the setup fields that tell its runs apart from
others of the table (``epochs=3``, :mod:`prunebench.leaderboard.setups`), empty for the defaults and for records that
predate it.
"""

from __future__ import annotations

import contextlib
import gc
import json
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunebench.core.errors import UsageError
from prunebench.run.run_record import from_legacy, problem

STATUSES = ("ok", "failed", "diverged")
DENSE = "dense"
"""The method name of the dense baseline."""
PER_LAYER = "per_layer"
"""The default comparison group inside a layer (its highest scores), which records leave out."""
_PATTERN = re.compile(r"\d+:\d+")


class RecordWarning(UserWarning):
    """A record that was skipped (malformed, truncated, of another record version) or found more than once."""


def _warn(message: str) -> None:
    warnings.warn(message, RecordWarning, stacklevel=3)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _read(path: Path) -> dict[str, Any] | None:
    """The record in ``path`` (a format-1 record read as it is, marked ``_legacy``), or ``None`` after a warning
    naming the path and the reason. Records are checked with :func:`prunebench.run.run_record.problem`, as resume does."""
    try:
        record = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        _warn(f"skipped {path}: not a readable record ({type(error).__name__}: {error})")
        return None
    legacy = from_legacy(record)  # checked by from_legacy itself
    if legacy is not None:
        record = {**legacy, "_legacy": True}
    reason = problem(record) if legacy is None else None
    if reason:
        _warn(f"skipped {path}: {reason}")
        return None
    record["_path"] = str(path)
    return record


def _run_of(record: dict[str, Any]) -> tuple:
    """What a record measured, whatever its format: its cell, seed and budget."""
    keys = ("dataset", "model", "method", "variant", "scope", "sparsity", "seed")
    return (*(record[k] for k in keys), budget_epochs(record))


def _without_superseded_legacy(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop format-1 records of runs that a current record measured again; report the format-1 ones in one line."""
    legacy = [r for r in records if r.get("_legacy")]
    if not legacy:
        return records
    current = {_run_of(r) for r in records if not r.get("_legacy")}
    superseded = [r for r in legacy if _run_of(r) in current]
    _warn(
        f"{len(legacy)} records of format 1 (before run identity) found: "
        f"{len(legacy) - len(superseded)} read as they are, {len(superseded)} replaced by current records "
        "of the same runs; `bench run` does not resume from them"
    )
    return [r for r in records if not (r.get("_legacy") and _run_of(r) in current)]


RESULTS = ("status", "top1", "top5", "loss", "perplexity", "achieved_sparsity", "params_nonzero")
"""What two records of one run must agree on to be the same measurement."""


def _preferred(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Of two records of one run, a finished one over a failed one; of two finished ones, the first found, where
    they agree (:func:`_disagreement`); records that disagree are a :class:`UsageError` naming the run and both
    files, since nothing says which of the two results to publish."""
    if first["status"] == "failed" and second["status"] != "failed":
        return second
    if second["status"] != "failed":
        difference = _disagreement(first, second)
        if difference:
            raise UsageError(
                f"run {first['run_id']} has two records that disagree ({difference}): {first['_path']} and "
                f"{second['_path']}; remove the one not to publish, or write separate leaderboards"
            )
    return first


def _disagreement(first: dict[str, Any], second: dict[str, Any]) -> str:
    """The results of :data:`RESULTS` on which two finished records of one run differ, as ``top1 39.45 / 0.01``;
    ``""`` where they agree."""
    return ", ".join(
        f"{name} {first.get(name)} / {second.get(name)}"
        for name in RESULTS
        if json.dumps(first.get(name)) != json.dumps(second.get(name))  # NaN equals NaN here
    )


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (as found again on leaving): reading creates millions of objects and no
    cycles, and each collection it triggers walks every record read so far (half the time of reading 20,000
    records)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_records(directories: Iterable[Path]) -> list[dict[str, Any]]:
    """Every usable record under ``<dir>/runs/*.json`` of each directory, each run once.

    Unreadable, malformed and other-version records are skipped with a :class:`RecordWarning` naming the path.
    Runs found more than once (same ``run_id``) are counted once each and reported in one warning with their count
    and an example; two finished records of one run whose results differ are a :class:`UsageError`. A directory
    that does not exist is a :class:`UsageError`.
    """
    by_run: dict[str, dict[str, Any]] = {}
    paths: dict[str, list[str]] = {}
    for directory in map(Path, directories):
        if not directory.is_dir():
            raise UsageError(f"{directory} is not a directory")
        with collector_paused():
            for path in sorted(directory.glob("runs/*.json"), key=str):  # str: comparing Paths is slow
                record = _read(path)
                if record is None:
                    continue
                run_id = str(record["run_id"])
                paths.setdefault(run_id, []).append(str(path))
                by_run[run_id] = _preferred(by_run[run_id], record) if run_id in by_run else record
    repeated = sorted(run_id for run_id, found in paths.items() if len(found) > 1)
    if repeated:
        example = repeated[0]
        _warn(
            f"{len(repeated)} runs found more than once (same run id), each counted once, a finished record "
            f"preferred; for example run {example} in {', '.join(paths[example])}"
        )
    return _without_superseded_legacy(list(by_run.values()))


def select(
    records: list[dict[str, Any]], dataset: str | None, model: str | None, methods: Sequence[str] | None
) -> list[dict[str, Any]]:
    """The records of ``dataset``, ``model`` and ``methods`` (``None``: all); the dense baseline always stays.

    A method name that none of the records of ``dataset`` and ``model`` has is a :class:`UsageError`.
    """
    chosen = [
        r
        for r in records
        if (dataset is None or r["dataset"] == dataset) and (model is None or r["model"] == model)
    ]
    if methods:
        present = sorted({r["method"] for r in chosen if r["method"] != DENSE})
        unknown = [m for m in methods if m not in present]
        if unknown:
            raise UsageError(
                f"--methods {', '.join(unknown)}: not in the records; methods present: {', '.join(present) or 'none'}"
            )
        chosen = [r for r in chosen if r["method"] in methods or r["method"] == DENSE]
    return chosen


def variant(record: dict[str, Any]) -> str:
    """The run's row label within its method: its hyperparameter variant, with the setup fields that tell its row
    apart once :func:`prunebench.leaderboard.setups.label_setups` has labelled it (``end=0.5,epochs=3``); ``""``
    for the defaults (and for records that predate variants)."""
    return str(record.get("_row_variant", record.get("variant")) or "")


def budget_epochs(record: dict[str, Any]) -> Any:
    """The run's weight-update budget in epochs (``epochs.budget``), ``None`` where the record lacks it."""
    return (record.get("epochs") or {}).get("budget")


def preset_epochs(record: dict[str, Any]) -> Any:
    """The epochs of the recipe the run was configured with (``config.recipe.epochs``; ``config.preset.epochs`` in
    format-1 records), or ``None``."""
    config = record.get("config") or {}
    recipe = config.get("recipe") or (config["preset"] if isinstance(config.get("preset"), dict) else {})
    return recipe.get("epochs")


def enforcement(record: dict[str, Any]) -> str | None:
    """The step that brought a finished run from the method's own sparsity to the target, ``None`` if none did."""
    return str(record["enforcement"]) if record.get("enforcement") else None


def enforcement_change(record: dict[str, Any]) -> float | None:
    """How much the enforcement step changed the number of kept weights, as a fraction of the kept weights.

    ``|achieved sparsity - the method's own sparsity| / (1 - achieved sparsity)``; ``None`` where either is missing.
    """
    own, achieved = record.get("method_sparsity"), record.get("achieved_sparsity")
    if not (_is_number(own) and _is_number(achieved)) or achieved >= 1:
        return None
    return abs(achieved - own) / (1 - achieved)


@dataclass(frozen=True)
class Layer:
    """One prunable weight of a finished run: its parameter name, shape and achieved density."""

    name: str
    shape: tuple[int, ...]
    density: float


def layers(record: dict[str, Any]) -> list[Layer]:
    """The prunable weights of a finished run in module order (entries without name or density are left out)."""
    return [
        Layer(str(layer["name"]), tuple(int(d) for d in layer.get("shape") or ()), float(layer["density"]))
        for layer in record.get("layers") or []
        if isinstance(layer, dict) and "name" in layer and _is_number(layer.get("density"))
    ]


def group(record: dict[str, Any]) -> str:
    """The run's comparison group inside each layer (``per_output``, an N:M pattern such as ``2:4``): the record's
    ``group``, else its configuration's; :data:`PER_LAYER` for records without one (every run before groups)."""
    found = record.get("group") or (record.get("config") or {}).get("group")
    return str(found) if found else PER_LAYER


def is_pattern(group_name: str) -> bool:
    """Whether a comparison group is an N:M pattern (``2:4``): such runs are columns of their own, not rows."""
    return bool(_PATTERN.fullmatch(group_name))


def row_group(group_name: str) -> str:
    """The group a row of the tables carries: ``""`` for :data:`PER_LAYER` and for an N:M pattern (a column of the
    plain row), the group itself otherwise (``per_output``)."""
    return "" if group_name == PER_LAYER or is_pattern(group_name) else group_name


def criterion_label(method: str, variant: str, group_name: str = "") -> str:
    """``method[variant]``, or ``method`` for the default hyperparameters; ``method · per_output`` for a row of
    another comparison group (``group_name`` as :func:`row_group` gives it)."""
    label = f"{method}[{variant}]" if variant else method
    return f"{label} · {group_name}" if group_name else label


def row_label(method: str, variant: str, scope: str, group_name: str = "") -> str:
    """The label of a leaderboard row: ``method[variant] (scope)``, ``method (scope)``, ``method · per_output
    (scope)``."""
    return f"{criterion_label(method, variant, group_name)} ({scope})"
