"""What tells apart the runs of one (dataset, model) besides their method, scope, sparsity and seed: their setup.

A run's identity (:attr:`prunebench.run.run_config.RunConfig.identity`) is everything that changes its result. A leaderboard
cell pools runs that differ in their seed only, so runs whose recipe (``--epochs``, ``--set recipe.*``),
prunable-set options (``--keep-first-dense``), data, model or harness version, method versions or hyperparameters
differ are different rows, labelled like hyperparameter variants by the fields that differ within the (dataset,
model): ``gmp[epochs=3] (global)``, ``gmp[recipe.optim.lr=0.1] (global)``, ``dense[keep_first_dense]``. A label
leaves out a field's reference value (the registered preset's where all the runs name one, else the most common
value; a prunable-set option off), and a field that the fields labelled before it already determine
(``recipe.finetune_epochs``, which ``--epochs`` rescales); two rows never share a label, and a table whose runs share
one setup keeps its plain labels. The allocation control and the track are not part of the setup: they have tables
of their own.

:func:`label_setups` annotates each record with its row's label (``_row_variant``, what
:func:`prunebench.leaderboard.record_reader.variant` returns) and with the label of its setup alone (``_setup``, the variant
of the dense baseline the run is compared with).
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from prunebench.core.errors import UsageError
from prunebench.leaderboard.record_reader import variant
from prunebench.zoo.presets import get_preset

MISSING = "<missing>"
"""The value of a field a record does not have (older or hand-written records)."""

PRUNABLE = "prunable."
"""The prefix of the prunable-set options among the common fields (``prunable.keep_first_dense``)."""
COMMON_ORDER = ("epochs", "recipe.", PRUNABLE, "dataset.version", "model.version", "harness_version")
"""The order in which the fields shared by every method are labelled: the budget first, then the other recipe fields,
the prunable-set options, the versions."""


def _flat(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as dotted names (``optim.lr``); lists and tuples become JSON text, so that every value is
    hashable and a tuple equals the list JSON reads it back as."""
    found: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            found.update(_flat(item, f"{prefix}{key}."))
        else:
            found[f"{prefix}{key}"] = json.dumps(item) if isinstance(item, list | tuple) else item
    return found


def recipe_of(record: dict[str, Any]) -> dict[str, Any]:
    """The run's recipe as the record stores it (``config.recipe``; ``config.preset`` in format-1 records)."""
    config = record.get("config") or {}
    recipe = config.get("recipe") or (config["preset"] if isinstance(config.get("preset"), dict) else {})
    return recipe if isinstance(recipe, dict) else {}


def prunable_of(record: dict[str, Any]) -> dict[str, Any]:
    """The prunable-set options the run changed from their defaults (``keep_first_dense: true``)."""
    options = (record.get("config") or {}).get("prunable") or {}
    return options if isinstance(options, dict) else {}


def common_fields(record: dict[str, Any]) -> Mapping[str, Any]:
    """The fields of a run's identity that every method shares: recipe (``epochs``, ``recipe.optim.lr``, ...),
    prunable-set options (by name), dataset and model versions, harness version. Kept in the record as ``_common``
    (read-only, shared by the runs of one setup), so that the labels and the commands read each record once: a
    record's configuration does not change once read."""
    if "_common" not in record:
        config = record.get("config") or {}
        versions = [
            config[part].get("version", MISSING) if isinstance(config.get(part), dict) else MISSING
            for part in ("dataset", "model")
        ]
        shared = [recipe_of(record), prunable_of(record), *versions, config.get("harness_version", MISSING)]
        record["_common"] = _common_fields(json.dumps(shared))
    return record["_common"]


@functools.lru_cache(maxsize=4096)
def _common_fields(shared: str) -> Mapping[str, Any]:
    """:func:`common_fields` of the JSON text of [recipe, prunable-set options, dataset version, model version,
    harness version], read-only since it is shared."""
    recipe, prunable, *versions = json.loads(shared)
    fields = {("epochs" if name == "epochs" else f"recipe.{name}"): v for name, v in _flat(recipe).items()}
    fields.update({f"{PRUNABLE}{name}": on for name, on in prunable.items() if on is not False})
    for name, value in zip(("dataset.version", "model.version", "harness_version"), versions, strict=True):
        if value != MISSING:
            fields[name] = value
    return MappingProxyType(fields)


def method_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The fields of a run's identity that belong to its method: every hyperparameter (by name), criterion,
    schedule and algorithm versions (``version.snip``)."""
    method = (record.get("config") or {}).get("method") or {}
    hparams = (
        method.get("hparams") if isinstance(method.get("hparams"), dict) else record.get("hparams") or {}
    )
    fields = _flat(hparams) if isinstance(hparams, dict) else {}
    for name in ("criterion", "schedule"):
        if name in method:
            fields[name] = method[name]
    fields.update({f"version.{k}": v for k, v in (method.get("versions") or {}).items()})
    return fields


def _common_rank(name: str) -> tuple[int, str]:
    """Where ``name`` comes in :data:`COMMON_ORDER` (by name within one kind)."""
    for rank, prefix in enumerate(COMMON_ORDER):
        if name == prefix or (prefix.endswith(".") and name.startswith(prefix)):
            return rank, name
    return len(COMMON_ORDER), name


def labelled_fields(
    setups: Iterable[Mapping[str, Any]], order: list[str], given: tuple[str, ...] = ()
) -> list[str]:
    """The fields of ``order`` that a label of ``setups`` must show: those that differ and that the fields ``given``
    and those chosen before do not determine. Equal labels then mean equal values of every field."""
    rows = {frozenset(s.items()): s for s in setups}.values()  # every value is hashable (:func:`_flat`)
    chosen: list[str] = []
    for name in order:
        seen: dict[tuple, Any] = {}
        for row in rows:
            key = tuple(row.get(f, MISSING) for f in (*given, *chosen))
            if seen.setdefault(key, row.get(name, MISSING)) != row.get(name, MISSING):
                chosen.append(name)
                break
    return chosen


def text(value: Any) -> str:
    """A field's value as a label and ``--set`` write it: ``0.1``, ``true``, ``none``, ``(0.5,0.75)``."""
    if isinstance(value, str) and value.startswith("["):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return "(" + ",".join(text(v) for v in value) + ")"
    return json.dumps(value) if isinstance(value, bool) else str(value)


def part(name: str, value: Any, reference: Any) -> str:
    """One field in a label, ``""`` where it has the table's reference value: ``epochs=3``, ``keep_first_dense``
    for a prunable-set option that is on, ``epochs=unknown`` for a field the record lacks."""
    if value == reference:
        return ""
    if name.startswith(PRUNABLE):
        name = name[len(PRUNABLE) :]
        return name if value is True else f"{name}={text(value)}"
    return f"{name}=unknown" if value == MISSING else f"{name}={text(value)}"


def _label(fields: Mapping[str, Any], names: list[str], references: dict[str, Any]) -> list[str]:
    return [p for p in (part(name, fields.get(name, MISSING), references[name]) for name in names) if p]


@functools.cache
def preset_fields(name: str, epochs: Any = None) -> dict[str, Any] | None:
    """The dataset, model and common fields (:func:`common_fields`) that preset ``name`` gives, at ``epochs`` as
    ``--epochs`` rescales its recipe; ``None`` for a preset not registered here."""
    try:
        preset = get_preset(name)
        recipe = preset.recipe if epochs is None else preset.recipe.with_epochs(int(epochs))
    except (UsageError, TypeError, ValueError):
        return None
    return {
        **common_fields({"config": {"recipe": recipe.to_dict()}}),
        "dataset": preset.dataset,
        "model": preset.model,
    }


def _mode(values: Iterable[Any]) -> Any:
    """The most common of ``values`` (the first in text order on a tie)."""
    counts = Counter(json.dumps(v, default=str) for v in values)
    return json.loads(min(counts, key=lambda text: (-counts[text], text)))


def _references(
    runs: list[dict[str, Any]], fields: list[Mapping[str, Any]], names: list[str]
) -> dict[str, Any]:
    """The value of each field that its labels leave out: off for a prunable-set option; the registered preset's
    where every run names the same one; otherwise the most common value, so the usual runs keep plain labels."""
    presets = {str(r.get("preset")) for r in runs}
    preset = preset_fields(presets.pop()) if len(presets) == 1 else None
    references = {}
    for name in names:
        if name.startswith(PRUNABLE):
            references[name] = MISSING
        elif preset is not None and name in preset:
            references[name] = preset[name]
        else:
            references[name] = _mode(f.get(name, MISSING) for f in fields)
    return references


def label_setups(records: list[dict[str, Any]]) -> None:
    """Annotate every record with ``_row_variant`` (its hyperparameter variant and the setup fields that differ
    within its (dataset, model)) and ``_setup`` (the common fields alone, as its dense baseline is labelled)."""
    by_table: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        by_table.setdefault((record["dataset"], record["model"]), []).append(record)
    for runs in by_table.values():
        common = [common_fields(r) for r in runs]
        shown = labelled_fields(common, sorted({n for f in common for n in f}, key=_common_rank))
        references = _references(runs, common, shown)
        by_method: dict[str, list[int]] = {}
        for index, record in enumerate(runs):
            by_method.setdefault(record["method"], []).append(index)
        for indices in by_method.values():
            own = [{**method_fields(runs[i]), "variant": str(runs[i].get("variant") or "")} for i in indices]
            own_shown = labelled_fields(own, sorted({n for f in own for n in f} - {"variant"}), ("variant",))
            own_references = {name: _mode(f.get(name, MISSING) for f in own) for name in own_shown}
            for i, fields in zip(indices, own, strict=True):
                setup = _label(common[i], shown, references)
                parts = [fields["variant"], *_label(fields, own_shown, own_references), *setup]
                runs[i]["_setup"] = ",".join(setup)
                runs[i]["_row_variant"] = ",".join(p for p in parts if p)


def row_setups(records: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """The setup label of each (method, variant) row of labelled records: the variant of its dense baseline."""
    return {(r["method"], variant(r)): str(r.get("_setup", "")) for r in records}
