"""Two levels of uncertainty: over seeds alone, and over seeds and the test set's examples together.

A leaderboard accuracy is measured on one test set of N examples, the same for every run. The seed-level tests of
:mod:`prunebench.leaderboard.stats` treat the test set as fixed: they answer "would *a new seed* give a difference,
on this test set?". The functions here also treat the test examples as a sample, and answer "would a new seed give
it on *a new test set* of the same size?":

- :func:`two_level_bootstrap`: two cells compared over seeds and test examples from their per-example outcomes
  (:mod:`prunebench.run.example_outcomes`), paired on both: each resample draws the seeds with replacement and
  the examples with replacement, the same example indices for every drawn seed and for both cells, since every
  run is evaluated on the same examples (the seeds and the examples are crossed, not nested; Owen 2007's
  pigeonhole bootstrap);
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

from prunebench.leaderboard.stats import (
    ACCURACY_RANGE,
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    CONFIDENCE,
    Summary,
    t_quantile,
)

SEED_LEVEL = "a new seed, this test set"
"""What the seed-level tests (paired t over seeds) answer."""
TWO_LEVEL = "a new seed, a new test set"
"""What the comparison over seeds and test examples answers."""


@dataclass(frozen=True)
class TwoLevel:
    """``a - b`` over seeds and test examples: the mean difference of top-1 in points, its percentile interval, the
    two-sided bootstrap p, the seeds and the examples it was computed from."""

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


def bootstrap_differences(
    differences: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> np.ndarray:
    """The bootstrap distribution (in points) of the mean of ``differences`` (seeds x examples: -1, 0 or 1), both
    levels resampled: the seeds' multiplicities ``u ~ Multinomial(n, 1/n)`` and N examples drawn with replacement,
    the same for every seed.

    Drawn this way: for given ``u`` the sum over the drawn seeds of an example's differences, ``u . d[:, i]``, is one
    of the ``2 n + 1`` values ``-n .. n``, so the drawn examples' counts per value are one ``Multinomial(N, share of
    the examples with that value)``: the same distribution as drawing N indices, at a cost that does not grow with
    N. The shares are computed once per distinct ``u`` over the distinct columns of ``differences`` (a few dozen).
    """
    n, examples = differences.shape
    columns = np.ascontiguousarray(differences.T, dtype=np.int8)
    rows = columns.view(np.dtype((np.void, n))).reshape(-1)  # a column's n bytes as one sortable value
    _, first, sizes = np.unique(rows, return_index=True, return_counts=True)
    patterns = columns[first].T.astype(np.int64)
    rng = np.random.default_rng(seed)
    seeds = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples)
    distinct, which = np.unique(seeds, axis=0, return_inverse=True)
    shares = np.zeros((len(distinct), 2 * n + 1))
    np.add.at(shares, (np.arange(len(distinct))[:, None], distinct @ patterns + n), sizes / examples)
    counts = rng.multinomial(examples, shares[which.reshape(-1)])
    return 100.0 * (counts @ np.arange(-n, n + 1)) / (n * examples)


def two_level_bootstrap(
    a: Mapping[Any, np.ndarray],
    b: Mapping[Any, np.ndarray],
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> TwoLevel | None:
    """Compare two cells over seeds and test examples from their per-example top-1 correctness keyed by seed.

    The difference is the mean over seeds and examples of ``a - b`` in points (the difference of the mean top-1),
    the interval the percentile interval of :func:`bootstrap_differences` (fixed generator ``seed``), the p-value
    twice the smaller tail of that distribution on either side of 0, ``(count + 1) / (resamples + 1)`` each, at most
    1: identical cells have a difference of 0 and p = 1. ``None`` where the cells do not pair (other seeds, fewer than
    two, or test sets of different sizes).
    """
    differences = _paired_differences(a, b)
    if differences is None:
        return None
    n, examples = differences.shape
    distribution = bootstrap_differences(differences, resamples, seed)
    low, high = np.quantile(distribution, [(1 - confidence) / 2, (1 + confidence) / 2])
    tails = int(min(np.count_nonzero(distribution <= 0), np.count_nonzero(distribution >= 0)))
    pvalue = min(1.0, 2 * (tails + 1) / (resamples + 1))
    difference = 100.0 * float(differences.mean())
    return TwoLevel(difference, float(low), float(high), pvalue, n, examples)


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
    n, examples = data.shape
    seeds, items = data.mean(axis=1), data.mean(axis=0)
    residual = data - seeds[:, None] - items[None, :] + data.mean()
    ms_items = n * float(items.var(ddof=1)) if examples > 1 else 0.0
    ms_residual = float((residual**2).sum()) / ((n - 1) * (examples - 1)) if n > 1 and examples > 1 else 0.0
    test_variance = 100.0**2 * max(ms_items - ms_residual, 0.0) / (n * examples)
    return _with_test_set(100.0 * seeds, test_variance, confidence, clip)
