"""Leaderboard cells whose seeds ran on different machines (CPU instruction set, CPU model or CUDA device), or were
trained by different engines (alone, or batched: :mod:`prunebench.run.batched_engine`), which do not give
bit-identical results (docs/results.md, "Reproducibility").

A cell is the records of one method, variant, scope and sparsity of one section, over seeds. A record's machine is
its ``machine`` field (:func:`prunebench.core.environment.machine`); records written before that field existed are
``unknown`` and never make a cell mixed by themselves: a cell is mixed when two of its records that do say differ.
A record's engine is always known (:func:`engine_of`): without an ``engine`` field its run trained alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prunebench.leaderboard.record_reader import DENSE, variant

FACETS = (("cpu_capability", "CPU capability"), ("cpu", "CPU"), ("cuda_device", "CUDA device"))
"""What a cell's records must share, as (``machine`` field, label), most telling first: the instruction set torch's
CPU kernels dispatch to, the CPU model, the CUDA device."""


@dataclass(frozen=True)
class MixedCell:
    """A cell whose records ran on different machines: per facet that differs, its distinct values."""

    dataset: str
    model: str
    method: str
    variant: str
    scope: str
    sparsity: float
    control: str
    differences: tuple[tuple[str, tuple[str, ...]], ...]
    """(label, distinct values) of each facet of :data:`FACETS` whose known values differ."""

    @property
    def label(self) -> str:
        """``magnitude [end=0.5] (global) 0.9``: the cell as the tables name it (``, shuffle control`` for a
        control's; ``dense baseline`` for the dense runs)."""
        if self.method == DENSE:
            return "dense baseline"
        shown = f" [{self.variant}]" if self.variant else ""
        control = f", {self.control} control" if self.control else ""
        return f"{self.method}{shown} ({self.scope}{control}) {self.sparsity:g}"


def _cell(record: dict[str, Any]) -> tuple:
    structured = record.get("structured") or {}
    return (
        record["dataset"],
        record["model"],
        record.get("track") or "unstructured",
        structured.get("unit") if isinstance(structured, dict) else None,
        record.get("control") or "",
        record["method"],
        variant(record),
        record["scope"],
        float(record["sparsity"]),
    )


def engine_of(record: dict[str, Any]) -> str:
    """``alone``, or the batched engine with the phases it trained: ``vmap (pretrain, finetune)``."""
    engine = record.get("engine")
    if not isinstance(engine, dict):
        return "alone"
    return f"{engine.get('name', 'batched')} ({', '.join(engine.get('phases') or ())})"


def _differences(records: list[dict[str, Any]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    found = []
    for field, label in FACETS:
        values = {
            str(machine[field])
            for machine in (r.get("machine") for r in records)
            if isinstance(machine, dict) and machine.get(field) not in (None, "")
        }
        if len(values) > 1:
            found.append((label, tuple(sorted(values))))
    engines = {engine_of(record) for record in records}
    if len(engines) > 1:
        found.append(("engine", tuple(sorted(engines))))
    return tuple(found)


def mixed_cells(records: Iterable[dict[str, Any]]) -> list[MixedCell]:
    """The cells of ``records`` whose known machines differ, in (dataset, model, method, variant, scope, sparsity)
    order. The cells are those of finished runs (status ``ok``), the ones the tables average."""
    cells: dict[tuple, list[dict[str, Any]]] = {}
    for record in records:
        if record.get("status") == "ok":
            cells.setdefault(_cell(record), []).append(record)
    mixed = []
    for key, found in cells.items():
        differences = _differences(found)
        if differences:
            dataset, model, _, _, control, method, label, scope, sparsity = key
            mixed.append(MixedCell(dataset, model, method, label, scope, sparsity, control, differences))
    return sorted(
        mixed, key=lambda c: (c.dataset, c.model, c.method, c.variant, c.scope, c.sparsity, c.control)
    )
