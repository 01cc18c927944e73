"""Sparsity schedules shared by the during-training methods."""

from __future__ import annotations


def cubic_keep_fraction(
    progress: float, final_keep: float, start: float, end: float, initial_keep: float = 1.0
) -> float:
    """The cubic schedule of the kept fraction (Zhu & Gupta 2017, Eq. 1, written for the kept fraction).

    ``keep = final + (initial - final) * (1 - (progress - start) / (end - start))**3`` for ``start <= progress <= end``,
    ``initial`` before ``start`` and ``final`` after ``end``; ``progress`` is the fraction of training done.
    ProbMask (``ts=0.16, te=0.6``) and movement pruning (initial and final warm-up) use the same form.
    """
    if end <= start:
        raise ValueError(f"schedule end ({end}) must come after its start ({start})")
    if progress <= start:
        return initial_keep
    if progress >= end:
        return final_keep
    remaining = 1.0 - (progress - start) / (end - start)
    return final_keep + (initial_keep - final_keep) * remaining**3
