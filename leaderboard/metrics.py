"""The primary metric of a leaderboard section and its direction: top-1 (higher is better) or perplexity (lower).

A section (dataset x model) whose finished records have ``perplexity`` (language models: ``exp`` of the mean token
NLL) ranks, marks and compares its cells by perplexity, lower being better; every other section by top-1 accuracy.
This module is the one place that decides it (:func:`section_metric`); the tables, the scope comparisons and the
plots ask the :class:`Metric` it returns for the field, the direction, the range of the intervals and the wording.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from prunebench.leaderboard.stats import ACCURACY_RANGE

METRIC_COLUMN = "metric"
"""The tidy table's column naming each cell's primary metric, present only where some section uses perplexity."""


@dataclass(frozen=True)
class Metric:
    """A primary metric: its record field (the tidy table's column prefix), direction and wording."""

    field: str
    higher_is_better: bool
    clip: tuple[float, float]
    """What a value can be: the intervals of the mean are clipped to it."""
    title: str
    """The primary table's title."""
    unit: str
    """How the dense baseline line names the metric (``Dense baseline (top-1 %)``)."""

    def best(self, values: pd.Series) -> float:
        """The best of ``values``: the largest, or the smallest where lower is better."""
        return float(values.max() if self.higher_is_better else values.min())

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is strictly better than ``b``."""
        return a > b if self.higher_is_better else a < b

    def axis_label(self) -> str:
        """The y-axis label of the plots."""
        return "top-1 (%)" if self.higher_is_better else "perplexity (log scale, lower is better)"


TOP1 = Metric("top1", True, ACCURACY_RANGE, "Top-1 accuracy (%)", "top-1 %")
PERPLEXITY = Metric("perplexity", False, (1.0, math.inf), "Perplexity (lower is better)", "perplexity")
METRICS = {metric.field: metric for metric in (TOP1, PERPLEXITY)}


def has_perplexity(record: dict[str, Any]) -> bool:
    """Whether a finished record has a numeric perplexity (a language-model run)."""
    value = record.get("perplexity")
    return record.get("status") == "ok" and isinstance(value, int | float) and not isinstance(value, bool)


def section_metric(records: Iterable[dict[str, Any]]) -> Metric:
    """The primary metric of the records of one section: perplexity where any finished one has it, else top-1."""
    return PERPLEXITY if any(map(has_perplexity, records)) else TOP1


def cells_metric(cells: pd.DataFrame) -> Metric:
    """The primary metric of the tidy cells of one section, as :func:`section_metric` chose it for their records."""
    if METRIC_COLUMN not in cells or cells.empty:
        return TOP1
    return METRICS[str(cells[METRIC_COLUMN].iloc[0])]
