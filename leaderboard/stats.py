"""Statistics over seeds: 95% intervals (Student t or bootstrap) and the Welch test that decides ties."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05
"""Two cells are tied when Welch's t-test does not reject equal means at this level."""
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0
INTERVALS = ("t", "bootstrap")


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (NaN for one value) and the interval ``[low, high]`` of the mean."""

    mean: float
    std: float
    low: float
    high: float


def _summarize(
    values: Sequence[float], bounds: Callable[[np.ndarray, float, float], tuple[float, float]]
) -> Summary:
    """Mean, std and ``bounds(data, mean, std)``; one value or equal values have no interval (``low == high``)."""
    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if len(data) < 2:
        return Summary(mean, math.nan, mean, mean)
    std = float(data.std(ddof=1))
    if std == 0:
        return Summary(mean, std, mean, mean)
    low, high = bounds(data, mean, std)
    return Summary(mean, std, float(low), float(high))


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Summary:
    """The Student-t interval of the mean; with one value, that value and no interval (``low == high``)."""

    def bounds(data: np.ndarray, mean: float, std: float) -> tuple[float, float]:
        return stats.t.interval(confidence, len(data) - 1, loc=mean, scale=std / math.sqrt(len(data)))

    return _summarize(values, bounds)


def bootstrap_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Summary:
    """The percentile bootstrap interval of the mean (``scipy.stats.bootstrap``, fixed seed, 9,999 resamples)."""

    def bounds(data: np.ndarray, mean: float, std: float) -> tuple[float, float]:
        result = stats.bootstrap(
            (data,),
            np.mean,
            n_resamples=BOOTSTRAP_RESAMPLES,
            confidence_level=confidence,
            method="percentile",
            random_state=np.random.default_rng(BOOTSTRAP_SEED),
        )
        return result.confidence_interval.low, result.confidence_interval.high

    return _summarize(values, bounds)


def interval(values: Sequence[float], kind: str = "t") -> Summary:
    """The 95% interval of the mean of ``values``: ``kind`` is ``t`` (Student) or ``bootstrap``."""
    if kind == "t":
        return t_interval(values)
    if kind == "bootstrap":
        return bootstrap_interval(values)
    raise ValueError(f"unknown interval {kind!r}; choose from {', '.join(INTERVALS)}")


def welch_pvalue(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``); NaN below two values."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.std() == 0 and y.std() == 0:
        return 1.0 if x.mean() == y.mean() else 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's precision note when one side is constant
        return float(stats.ttest_ind(x, y, equal_var=False).pvalue)


def tied(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> bool:
    """Whether Welch's test cannot tell the means apart at ``alpha``; never with fewer than two values a side."""
    p = welch_pvalue(a, b)
    return not math.isnan(p) and p >= alpha
