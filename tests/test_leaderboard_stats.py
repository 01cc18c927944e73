"""Leaderboard statistics against scipy and hand computations: intervals, clipping, paired tests, the exact
permutation tests of differences with no spread, Holm."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from prunebench.core.errors import UsageError
from prunebench.leaderboard.stats import (
    bootstrap_interval,
    compare,
    holm,
    sign_flip_p,
    smallest_p,
    t_interval,
    without_spread,
)


def test_t_interval_matches_scipy():
    sample = [71.2, 72.9, 70.4, 73.3]
    expected = stats.t.interval(0.95, len(sample) - 1, loc=np.mean(sample), scale=stats.sem(sample))
    summary = t_interval(sample)
    assert summary.mean == pytest.approx(np.mean(sample))
    assert summary.std == pytest.approx(np.std(sample, ddof=1))
    assert (summary.low, summary.high) == pytest.approx(expected)


def test_intervals_are_clipped_to_what_an_accuracy_can_be():
    sample = [80.0, 93.9]  # two seeds: the t interval is (-1.36, 175.26)
    low, high = stats.t.interval(0.95, 1, loc=86.95, scale=stats.sem(sample))
    assert low < 0 and high > 100
    summary = t_interval(sample)
    assert (summary.mean, summary.low, summary.high) == pytest.approx((86.95, 0.0, 100.0))
    assert t_interval(sample, clip=None).high == pytest.approx(high)
    five = [71.2, 72.9, 70.4, 73.3, 69.8]
    assert bootstrap_interval(five, clip=(0.0, 72.0)).high == 72.0


def test_bootstrap_interval_matches_scipy():
    sample = [71.2, 72.9, 70.4, 73.3, 69.8]
    expected = stats.bootstrap(
        (np.array(sample),),
        np.mean,
        n_resamples=9999,
        method="percentile",
        random_state=np.random.default_rng(0),
    ).confidence_interval
    summary = bootstrap_interval(sample)
    assert (summary.low, summary.high) == pytest.approx((expected.low, expected.high))


def test_bootstrap_is_refused_under_five_seeds():
    with pytest.raises(UsageError, match=r"at least 5 seeds per cell .* a cell here has 3: use --ci t"):
        bootstrap_interval([53.8, 50.1, 57.5])
    assert bootstrap_interval([85.0]).low == 85.0  # one seed has no interval to refuse


def test_one_seed_has_no_interval():
    summary = t_interval([85.0])
    assert summary.mean == summary.low == summary.high == 85.0 and math.isnan(summary.std)


def test_paired_comparison_matches_ttest_rel_and_a_hand_computation():
    a = {2: 91.3, 0: 93.5, 1: 91.8}  # keyed by seed, in any order
    b = {0: 92.9, 1: 91.0, 2: 90.6}
    result = compare(a, b)
    x, y = [93.5, 91.8, 91.3], [92.9, 91.0, 90.6]
    reference = stats.ttest_rel(x, y)
    bounds = reference.confidence_interval(0.95)
    assert (result.test, result.n) == ("paired", 3)
    assert result.pvalue == pytest.approx(reference.pvalue)
    assert (result.low, result.high) == pytest.approx((bounds.low, bounds.high))
    # by hand: differences 0.6, 0.8, 0.7; mean 0.7; sd sqrt(((-.1)^2 + .1^2 + 0^2) / 2) = 0.1
    mean, sd = 0.7, 0.1
    t = mean / (sd / math.sqrt(3))
    assert result.difference == pytest.approx(mean)
    assert result.pvalue == pytest.approx(2 * stats.t.sf(t, 2))
    assert result.high - mean == pytest.approx(stats.t.ppf(0.975, 2) * sd / math.sqrt(3))
    assert (
        result.pvalue < 0.05 < stats.ttest_ind(x, y, equal_var=False).pvalue
    )  # pairing finds what Welch misses


def test_incomplete_pairs_fall_back_to_welch():
    a = {0: 93.5, 1: 92.1, 2: 91.0}
    b = {0: 92.9, 1: 91.0, 3: 90.6, 4: 90.2}
    result = compare(a, b)
    reference = stats.ttest_ind(list(a.values()), list(b.values()), equal_var=False)
    bounds = reference.confidence_interval(0.95)
    assert (result.test, result.n) == ("welch", 3)
    assert result.pvalue == pytest.approx(reference.pvalue)
    assert (result.low, result.high) == pytest.approx((bounds.low, bounds.high))


def test_too_few_seeds_are_not_tested():
    result = compare({0: 90.0}, {0: 91.0})
    assert result.test == "" and result.difference == pytest.approx(-1.0) and math.isnan(result.pvalue)


def _sign_patterns_p(differences: list[float]) -> float:
    """The sign-flip p by enumeration: every one of the 2^n sign patterns, |sum| at least the observed one."""
    observed = abs(sum(differences))
    hits = [
        abs(sum(s * d for s, d in zip(signs, differences, strict=True))) >= observed - 1e-9
        for signs in itertools.product((1, -1), repeat=len(differences))
    ]
    return sum(hits) / len(hits)


def test_sign_flip_p_is_exact_against_an_enumeration_by_hand():
    # n = 3, identical differences: of the 8 patterns only +++ and --- reach |sum| = 0.3
    assert sign_flip_p([0.1, 0.1, 0.1]) == pytest.approx(2 / 8) == _sign_patterns_p([0.1, 0.1, 0.1])
    # n = 3, (1, -2, 3), observed sum 2: |sums| are 6, 4, 2, 0, each twice; 6 of the 8 reach 2
    assert sign_flip_p([1.0, -2.0, 3.0]) == pytest.approx(6 / 8) == _sign_patterns_p([1.0, -2.0, 3.0])
    # n = 5, identical: 2 of 32; (1, 1, 1, 1, -1), observed 3: the patterns with at most one or at least four
    # minus signs, 1 + 5 + 5 + 1 = 12 of 32
    assert sign_flip_p([0.4] * 5) == pytest.approx(2 / 32) == _sign_patterns_p([0.4] * 5)
    assert sign_flip_p([1.0, 1.0, 1.0, 1.0, -1.0]) == pytest.approx(12 / 32)
    assert _sign_patterns_p([1.0, 1.0, 1.0, 1.0, -1.0]) == pytest.approx(12 / 32)
    mixed = [0.3, -0.1, 0.7, 0.2, 0.5]
    assert sign_flip_p(mixed) == pytest.approx(_sign_patterns_p(mixed))
    assert sign_flip_p([0.0, 0.0, 0.0]) == 1.0  # no difference at all
    assert [smallest_p(n) for n in (2, 3, 5, 6)] == pytest.approx([0.5, 0.25, 1 / 16, 1 / 32])


def test_equal_differences_get_the_sign_flip_p_not_a_manufactured_zero():
    """The audit's case: steps of 0.1 point, every seed 0.1 apart; a zero variance used to give p = 0."""
    a, b = {0: 93.1, 1: 93.3, 2: 92.9}, {0: 93.0, 1: 93.2, 2: 92.8}
    result = compare(a, b)
    assert (result.test, result.n, result.difference) == ("paired", 3, pytest.approx(0.1))
    assert result.pvalue == pytest.approx(0.25)  # 2 / 2^3, whatever the correction
    assert holm([result.pvalue, 0.01])[0] >= 0.25
    # the interval inverts the test: below 6 seeds no shift can be rejected at 5%, so it is unbounded
    assert (result.low, result.high) == (-math.inf, math.inf) and without_spread(result.low, result.high)
    six = compare({s: 90.0 + s for s in range(6)}, {s: 89.5 + s for s in range(6)})
    assert six.pvalue == pytest.approx(2 / 64) and six.low == six.high == pytest.approx(0.5)
    same = compare({0: 94.1, 1: 94.2}, {0: 94.1, 1: 94.2})
    assert same.pvalue == 1.0 and same.difference == 0.0
    ordinary = compare({0: 93.5, 1: 91.8, 2: 91.3}, {0: 92.9, 1: 91.0, 2: 90.6})
    assert not without_spread(ordinary.low, ordinary.high)


def test_constant_unpaired_sides_get_the_exact_relabelling_p():
    a, b = {0: 90.0, 1: 90.0, 2: 90.0}, {3: 80.0, 4: 80.0, 5: 80.0}
    result = compare(a, b)
    pooled = [90.0, 90.0, 90.0, 80.0, 80.0, 80.0]
    observed = 10.0
    hits = [
        abs(np.mean([pooled[i] for i in chosen]) - np.mean([pooled[i] for i in range(6) if i not in chosen]))
        >= observed - 1e-9
        for chosen in itertools.combinations(range(6), 3)
    ]
    assert result.test == "welch" and result.pvalue == pytest.approx(sum(hits) / len(hits)) == pytest.approx(
        0.1
    )
    assert math.isinf(result.high)  # 0.1 > 0.05: no shift is rejected
    uneven = compare({0: 90.0, 1: 90.0}, {3: 80.0, 4: 80.0, 5: 80.0})
    assert uneven.pvalue == pytest.approx(1 / 10)  # only the observed split of C(5, 2) = 10
    assert compare({0: 90.0, 1: 90.0}, {3: 90.0, 4: 90.0}).pvalue == 1.0


def test_holm_by_hand():
    # sorted tested p: 0.005, 0.01, 0.03, 0.04 (m = 4) -> 4 x 0.005, 3 x 0.01, 2 x 0.03, max(0.06, 1 x 0.04)
    adjusted = holm([0.01, 0.04, 0.03, math.nan, 0.005])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(adjusted[3]) and adjusted[4] == pytest.approx(0.02)
    assert holm([0.6, 0.5]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []


def test_holm_matches_statsmodels_where_installed():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(0).uniform(0, 0.2, size=12)
    assert holm(list(p)) == pytest.approx(list(multitest.multipletests(p, method="holm")[1]))
