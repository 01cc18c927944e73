"""Statistics over seeds: 95% intervals of a mean, comparisons of two cells paired by seed, Holm's correction.

Every method sees the same initial weights and data order for a given seed, so two cells of one grid are compared
seed by seed: a paired t-test where both have the same seeds, Welch's unpaired test where they do not (the
statistics of ``scipy.stats.ttest_rel`` and ``ttest_ind(equal_var=False)``, which the tests check them against).
Where the values have no spread (every paired difference the same, or both sides constant) the t statistic is
undefined and the p-value is the exact permutation test's instead, which needs no variance: sign flips of the
paired differences, relabellings of the two unpaired sides. It cannot go below :func:`smallest_p` (``2 / 2**n`` for
n pairs): an accuracy measured in steps of 0.1 point makes equal differences common, and calling them significant
at any level, as a zero variance would, manufactures significance. Intervals of accuracies are clipped to [0, 100].

The Student t distribution comes from ``scipy.special`` (``stdtr``, ``stdtrit``): importing ``scipy.stats`` takes
about a second, longer than the whole leaderboard otherwise; it is imported only for the bootstrap interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from prunebench.core.errors import UsageError

CONFIDENCE = 0.95
ALPHA = 0.05
"""A difference is significant when its Holm-adjusted p-value is below this level."""
ACCURACY_RANGE = (0.0, 100.0)
"""What an accuracy in percent can be: the intervals of accuracies are clipped to it."""
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0
MIN_BOOTSTRAP_SEEDS = 5
"""Below this many seeds a percentile bootstrap interval is far too narrow (it only resamples what was seen)."""
FEW_SEEDS = 3
"""Cells with fewer seeds than this are flagged: their interval and tests say little."""
INTERVALS = ("t", "bootstrap")
PAIRED, UNPAIRED = "paired", "welch"
"""The test of a :class:`Comparison`; an empty test: too few seeds to test."""
EXACT = 1e-9
"""Differences of accuracies (in percent) this small are float noise: equal values."""


def t_quantile(confidence: float, df: float) -> float:
    """The two-sided ``confidence`` quantile of Student's t with ``df`` degrees of freedom (``t.ppf(0.5 + c/2, df)``)."""
    return float(special.stdtrit(df, 0.5 + confidence / 2))


def _two_sided_p(t: float, df: float) -> float:
    """The two-sided p-value of ``t`` under Student's t with ``df`` degrees of freedom."""
    return float(2 * special.stdtr(df, -abs(t)))


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (NaN for one value) and the interval ``[low, high]`` of the mean."""

    mean: float
    std: float
    low: float
    high: float


def _summarize(
    values: Sequence[float],
    bounds: Callable[[np.ndarray, float, float], tuple[float, float]],
    clip: tuple[float, float] | None,
) -> Summary:
    """Mean, std and ``bounds(data, mean, std)`` clipped to ``clip``; one or equal values have ``low == high``."""
    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if len(data) < 2:
        return Summary(mean, math.nan, mean, mean)
    std = float(data.std(ddof=1))
    if std == 0:
        return Summary(mean, std, mean, mean)
    low, high = bounds(data, mean, std)
    if clip is not None:
        low, high = max(low, clip[0]), min(high, clip[1])
    return Summary(mean, std, float(low), float(high))


def t_interval(
    values: Sequence[float], confidence: float = CONFIDENCE, clip: tuple[float, float] | None = ACCURACY_RANGE
) -> Summary:
    """The Student-t interval of the mean, clipped to ``clip``; with one value, that value and no interval."""

    def bounds(data: np.ndarray, mean: float, std: float) -> tuple[float, float]:
        half = t_quantile(confidence, len(data) - 1) * std / math.sqrt(len(data))
        return mean - half, mean + half

    return _summarize(values, bounds, clip)


def bootstrap_interval(
    values: Sequence[float], confidence: float = CONFIDENCE, clip: tuple[float, float] | None = ACCURACY_RANGE
) -> Summary:
    """The percentile bootstrap interval of the mean (``scipy.stats.bootstrap``, fixed seed, 9,999 resamples).

    Refused (:class:`UsageError`) for 2 to 4 values: resampling so few seeds gives intervals far narrower than the
    t interval (3 seeds: ± 4.65 where t gives ± 11.71).
    """
    if 2 <= len(values) < MIN_BOOTSTRAP_SEEDS:
        raise UsageError(
            f"--ci bootstrap needs at least {MIN_BOOTSTRAP_SEEDS} seeds per cell (a bootstrap of fewer gives "
            f"intervals far too narrow); a cell here has {len(values)}: use --ci t"
        )

    def bounds(data: np.ndarray, mean: float, std: float) -> tuple[float, float]:
        from scipy import stats

        result = stats.bootstrap(
            (data,),
            np.mean,
            n_resamples=BOOTSTRAP_RESAMPLES,
            confidence_level=confidence,
            method="percentile",
            random_state=np.random.default_rng(BOOTSTRAP_SEED),
        )
        return result.confidence_interval.low, result.confidence_interval.high

    return _summarize(values, bounds, clip)


def interval(
    values: Sequence[float], kind: str = "t", clip: tuple[float, float] | None = ACCURACY_RANGE
) -> Summary:
    """The 95% interval of the mean of ``values`` (accuracies unless told), clipped to ``clip`` ([0, 100] for an
    accuracy): ``kind`` is ``t`` or ``bootstrap``."""
    if kind == "t":
        return t_interval(values, clip=clip)
    if kind == "bootstrap":
        return bootstrap_interval(values, clip=clip)
    raise ValueError(f"unknown interval {kind!r}; choose from {', '.join(INTERVALS)}")


@dataclass(frozen=True)
class Comparison:
    """``a - b``: difference of the means, its 95% interval, the two-sided p-value and the test that gave them.

    ``test`` is ``paired`` (same seeds on both sides; ``n`` pairs) or ``welch`` (different seeds; ``n`` is the smaller
    side), or empty when a side has fewer than two values: then only ``difference`` is defined, the rest is NaN.
    Values with no spread have the exact permutation p and the interval that inverts it: the single point
    ``difference`` where that test can reject a shift at the level, else unbounded (``-inf, inf``); either way an
    interval no t test gives, which :func:`without_spread` tells apart.
    """

    difference: float
    low: float
    high: float
    pvalue: float
    test: str
    n: int


def _constant(values: np.ndarray) -> bool:
    return bool(np.ptp(values) <= EXACT)


MAX_ENUMERATED_SEEDS = 16
"""The exact sign-flip test enumerates every one of the ``2**n`` sign patterns up to this many pairs."""


def smallest_p(n_seeds: int) -> float:
    """The smallest two-sided p the exact sign-flip test can give ``n_seeds`` pairs: ``2 / 2**n`` (0.25 for 3 seeds),
    reached when every pair differs by the same amount; a difference with no spread is never more significant."""
    return math.ldexp(1.0, 1 - n_seeds)


def sign_flip_p(differences: Sequence[float]) -> float:
    """The exact two-sided sign-flip (paired permutation) p-value of paired ``differences``.

    Under the null hypothesis each difference is as likely negated; p is the fraction of the ``2**n`` sign patterns
    whose sum is at least as far from 0 as the observed one (ties counted). Differences that are all equal have a
    closed form for any ``n``: only the two uniform patterns reach the observed sum, ``p = 2 / 2**n`` (1 when they
    are 0); other differences are enumerated, up to :data:`MAX_ENUMERATED_SEEDS` pairs.
    """
    d = np.asarray(differences, dtype=float)
    if len(d) == 0:
        raise ValueError("sign_flip_p needs at least one difference")
    if _constant(d):
        return 1.0 if abs(float(d.mean())) <= EXACT else smallest_p(len(d))
    if len(d) > MAX_ENUMERATED_SEEDS:
        raise ValueError(
            f"sign_flip_p enumerates at most {MAX_ENUMERATED_SEEDS} unequal differences, got {len(d)}"
        )
    patterns = 1 - 2 * ((np.arange(2 ** len(d))[:, None] >> np.arange(len(d))) & 1)
    return float(np.mean(np.abs(patterns @ d) >= abs(float(d.sum())) - EXACT))


def relabel_p(n_a: int, n_b: int, equal: bool) -> float:
    """The exact two-sided permutation p of two constant samples of ``n_a`` and ``n_b`` values (``equal``: the same
    value): of the ``C(n_a + n_b, n_a)`` relabellings only the observed one (and its mirror when ``n_a == n_b``)
    separates two different values as far as observed."""
    return 1.0 if equal else (1 + (n_a == n_b)) / math.comb(n_a + n_b, n_a)


def _no_spread(
    difference: float, pvalue: float, floor: float, test: str, n: int, confidence: float
) -> Comparison:
    """The comparison of values with no spread: the exact ``pvalue``, and the interval that inverts the test (a shift
    other than ``difference`` leaves differences that are all equal and non-zero, whose p is ``floor``)."""
    low, high = (difference, difference) if floor <= 1 - confidence else (-math.inf, math.inf)
    return Comparison(difference, low, high, pvalue, test, n)


def without_spread(low: float, high: float) -> bool:
    """Whether the interval ``[low, high]`` of a tested :class:`Comparison` is that of values with no spread (a single
    point or unbounded): the difference was the same on every seed and its p is the exact permutation test's."""
    return not 0 < high - low < math.inf


def compare(a: Mapping[int, float], b: Mapping[int, float], confidence: float = CONFIDENCE) -> Comparison:
    """Compare the values of two cells keyed by seed: paired by seed when both have the same seeds, else Welch;
    with no spread to estimate a variance from, the exact permutation test (:func:`sign_flip_p`, :func:`relabel_p`)."""
    x = np.array([a[seed] for seed in sorted(a)], dtype=float)
    y = np.array([b[seed] for seed in sorted(b)], dtype=float)
    difference = float(x.mean() - y.mean()) if len(x) and len(y) else math.nan
    paired = sorted(a) == sorted(b)
    n = len(x) if paired else min(len(x), len(y))
    if n < 2:
        return Comparison(difference, math.nan, math.nan, math.nan, "", n)
    if paired and _constant(x - y):
        return _no_spread(difference, sign_flip_p(x - y), smallest_p(n), PAIRED, n, confidence)
    if not paired and _constant(x) and _constant(y):
        pvalue = relabel_p(len(x), len(y), abs(difference) <= EXACT)
        return _no_spread(difference, pvalue, relabel_p(len(x), len(y), False), UNPAIRED, n, confidence)
    if paired:
        se, df = float((x - y).std(ddof=1)) / math.sqrt(n), n - 1
    else:
        vx, vy = float(x.var(ddof=1)) / len(x), float(y.var(ddof=1)) / len(y)
        se = math.sqrt(vx + vy)
        df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))  # Welch-Satterthwaite
    half = t_quantile(confidence, df) * se
    pvalue = _two_sided_p(difference / se, df)
    return Comparison(
        difference, difference - half, difference + half, pvalue, PAIRED if paired else UNPAIRED, n
    )


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values; NaN (untested) stays NaN and is not in the family.

    The i-th smallest of m p-values becomes ``max over j <= i of min(1, (m - j + 1) * p_(j))``; rejecting where the
    adjusted value is below alpha controls the family-wise error rate at alpha.
    """
    p = np.asarray(pvalues, dtype=float)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    adjusted = np.full(len(p), math.nan)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()
