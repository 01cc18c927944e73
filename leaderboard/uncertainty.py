"""Two levels of uncertainty: over seeds alone, and over seeds and the test set's examples together.

A leaderboard accuracy is measured on one test set of N examples, the same for every run. The seed-level tests of
:mod:`prunebench.leaderboard.stats` treat the test set as fixed: they answer "would *a new seed* give a difference,
on this test set?". The functions here also treat the test examples as a sample, and answer "would a new seed give
it on *a new test set* of the same size?":

- :func:`two_level_comparison`: two cells compared over seeds and test examples from their per-example outcomes
  (:mod:`prunebench.run.example_outcomes`), paired on both: the variance of the mean difference from the two-way
  analysis of variance of the seeds and the examples, which are crossed (every run is evaluated on the same
  examples), and Student's t with the seeds' degrees of freedom;
- :func:`binomial_interval` and :func:`outcome_interval`: a cell's 95% interval with the test set's sampling error
  added to the between-seed one.

``docs/statistics.md`` says why these estimators and not others, with the references.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from prunebench.leaderboard.stats import ACCURACY_RANGE, CONFIDENCE, Summary, smallest_p, t_quantile

SEED_LEVEL = "a new seed, this test set"
"""What the seed-level tests (paired t over seeds) answer."""
TWO_LEVEL = "a new seed, a new test set"
"""What the comparison over seeds and test examples answers."""


@dataclass(frozen=True)
class TwoLevel:
    """``a - b`` over seeds and test examples: the mean difference of top-1 in points, its interval, the two-sided
    p, the seeds and the examples it was computed from."""

    difference: float
    low: float
    high: float
    pvalue: float
    n: int
    examples: int


def _paired_differences(a: Mapping[Any, np.ndarray], b: Mapping[Any, np.ndarray]) -> np.ndarray | None:
    """The per-example differences ``a - b`` (-1, 0 or 1), one row per seed; ``None`` where the two cells do not
    pair: other seeds, fewer than two, or test sets of different sizes."""
    seeds = sorted(a)
    if seeds != sorted(b) or len(seeds) < 2:
        return None
    first = [np.asarray(a[s], dtype=np.int8).reshape(-1) for s in seeds]
    second = [np.asarray(b[s], dtype=np.int8).reshape(-1) for s in seeds]
    if len({len(row) for row in first + second}) != 1:
        return None
    return np.stack(first) - np.stack(second)


def two_level_comparison(
    a: Mapping[Any, np.ndarray], b: Mapping[Any, np.ndarray], confidence: float = CONFIDENCE
) -> TwoLevel | None:
    """Compare two cells over seeds and test examples from their per-example top-1 correctness keyed by seed.

    The per-example differences ``d = a - b`` (seeds x examples, -1, 0 or 1) have two crossed random factors, the
    seeds and the examples (every run is evaluated on the same examples). The variance of their mean is estimated
    from the two-way analysis of variance, as in :func:`outcome_interval`: the seeds' share ``s_d**2 / n`` (``s_d``
    the sample deviation of the seeds' mean differences, exactly the seed-level paired t test's) plus the test set's
    share ``(MS_examples - MS_residual) / (n N)``, kept at 0 or above. The interval and the two-sided p are Student's
    t with ``n - 1`` degrees of freedom, the seed-level test's: the test set's share only widens the interval, so a
    difference significant at this level is significant at the seed level too (the reverse need not hold). Where
    both shares are 0 (every example and seed agree) the p is the smallest a sign-flip test over the seeds allows,
    or 1 for identical cells. ``None`` where the cells do not pair (other seeds, fewer than two, or test sets of
    different sizes).
    """
    differences = _paired_differences(a, b)
    if differences is None:
        return None
    n, examples = differences.shape
    data = differences.astype(float)
    variance = 100.0**2 * (float(data.mean(axis=1).var(ddof=1)) / n + example_excess(data) / (n * examples))
    difference = 100.0 * float(data.mean())
    if variance == 0:
        pvalue = 1.0 if difference == 0 else smallest_p(n)
        return TwoLevel(difference, difference, difference, pvalue, n, examples)
    half = t_quantile(confidence, n - 1) * math.sqrt(variance)
    pvalue = float(2 * special.stdtr(n - 1, -abs(difference) / math.sqrt(variance)))
    return TwoLevel(difference, difference - half, difference + half, pvalue, n, examples)


def example_excess(data: np.ndarray) -> float:
    """``MS_examples - MS_residual`` of the two-way analysis of variance of ``data`` (seeds x examples, crossed), kept
    at 0 or above: divided by ``n N``, the test set's share of the variance of the mean."""
    n, examples = data.shape
    seeds, items = data.mean(axis=1), data.mean(axis=0)
    residual = data - seeds[:, None] - items[None, :] + data.mean()
    ms_items = n * float(items.var(ddof=1)) if examples > 1 else 0.0
    ms_residual = float((residual**2).sum()) / ((n - 1) * (examples - 1)) if n > 1 and examples > 1 else 0.0
    return max(ms_items - ms_residual, 0.0)


def _with_test_set(
    accuracies: np.ndarray, test_variance: float, confidence: float, clip: tuple[float, float] | None
) -> Summary:
    """The t interval of the mean of ``accuracies`` with ``test_variance`` (the test set's share of the variance of
    the mean, points squared) added to the between-seed ``s**2 / n``; Welch-Satterthwaite degrees of freedom, the
    test set's share counting as known."""
    mean = float(accuracies.mean())
    if len(accuracies) < 2:
        return Summary(mean, math.nan, mean, mean)
    std = float(accuracies.std(ddof=1))
    between = std**2 / len(accuracies)
    total = between + test_variance
    if total == 0:
        return Summary(mean, std, mean, mean)
    df = total**2 * (len(accuracies) - 1) / between**2 if between > 0 else math.inf
    half = t_quantile(confidence, df) * math.sqrt(total)
    low, high = mean - half, mean + half
    if clip is not None:
        low, high = max(low, clip[0]), min(high, clip[1])
    return Summary(mean, std, low, high)


def binomial_interval(
    accuracies: Sequence[float],
    examples: int,
    confidence: float = CONFIDENCE,
    clip: tuple[float, float] | None = ACCURACY_RANGE,
) -> Summary:
    """The interval of a cell's mean top-1 (points) over seeds on a shared test set of ``examples``, without
    per-example outcomes: variance ``s**2 / n + p (1 - p) / N`` with ``p`` the mean accuracy as a fraction.

    ``p (1 - p) / N`` is the largest the test set's share can be, reached when every seed gets the same examples
    right: a test set shared by the seeds does not average out over them. One seed: no interval (the between-seed
    share is unknown).
    """
    data = np.asarray(accuracies, dtype=float)
    p = float(data.mean()) / 100.0
    return _with_test_set(data, 100.0**2 * p * (1 - p) / examples, confidence, clip)


def outcome_interval(
    correct: np.ndarray, confidence: float = CONFIDENCE, clip: tuple[float, float] | None = ACCURACY_RANGE
) -> Summary:
    """The interval of a cell's mean top-1 (points) from its per-example correctness, seeds x examples (booleans).

    The seeds and the examples are crossed random factors; the variance of the mean is estimated without bias from
    the two-way analysis of variance (mean squares of the seeds, the examples and the residual):
    ``(MS_seeds + MS_examples - MS_residual) / (n N)``, where ``MS_seeds / (n N)`` is ``s**2 / n`` of the seeds'
    accuracies and the test set's share ``(MS_examples - MS_residual) / (n N)`` is kept at 0 or above.
    """
    data = np.asarray(correct, dtype=float)
    test_variance = 100.0**2 * example_excess(data) / data.size
    return _with_test_set(100.0 * data.mean(axis=1), test_variance, confidence, clip)
