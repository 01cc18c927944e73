"""Power of the scope comparisons: the difference a paired t test over n seeds resolves, and the seeds a difference needs.

The scope table tests each difference by a paired t test over seeds, Holm-adjusted over the m differences of its
column. Holm's first step compares the smallest p with ``alpha / m`` and stops at the first it cannot reject, so a
difference whose p is below ``alpha / m`` is found whatever the others do, and one above it may not be: ``alpha / m``
is the worst case, and the level the power is computed at. The power of a two-sided paired t test of a true difference ``delta`` with standard deviation
``sigma`` of the paired differences over ``n`` seeds is ``P(|T| > t_crit)`` with ``T`` noncentral t of ``n - 1``
degrees of freedom and noncentrality ``delta / sigma * sqrt(n)`` (``scipy.stats.nct``; the same computation as
statsmodels' ``TTestPower``, which the tests check it against). The observed ``sigma`` of a grid is itself estimated
from few seeds, so the figures are a guide to the order of magnitude, not a guarantee (``docs/statistics.md``).

Differences with no spread (``sigma = 0``) are tested by the exact sign-flip test
(:func:`prunebench.leaderboard.stats.sign_flip_p`), which resolves any difference once ``2 / 2**n`` is below the level
and none before. This module imports ``scipy.stats`` (about a second): ``bench power`` and the README's headline use
it, the leaderboard does not.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from prunebench.core.errors import UsageError
from prunebench.leaderboard.controls_table import split_controls
from prunebench.leaderboard.record_reader import criterion_label, load_records
from prunebench.leaderboard.scopes import scope_pairs
from prunebench.leaderboard.section_tables import comparison_label
from prunebench.leaderboard.setups import label_setups
from prunebench.leaderboard.stats import ALPHA, EXACT, compare, smallest_p
from prunebench.leaderboard.structured_section import split
from prunebench.leaderboard.tidy_table import seed_values

POWER = 0.8
"""The conventional power: a true difference of the size asked for is found significant 4 times in 5."""
MAX_SEEDS = 1000
"""The most seeds :func:`seeds_for_effect` looks at (``bench run`` refuses more)."""
_KEYS = ["dataset", "model", "sparsity"]
"""A column of the scope table: the family of its Holm correction."""


def paired_power(effect: float, n: float, alpha: float) -> float:
    """The power of the two-sided paired t test at level ``alpha`` over ``n`` pairs for a true standardized
    difference ``effect`` (difference / standard deviation of the paired differences)."""
    df = n - 1
    critical = stats.t.isf(alpha / 2, df)
    noncentrality = effect * math.sqrt(n)
    # the far tail P(T < -t_crit) as P(T' > t_crit) of the mirrored noncentrality: nct.cdf is NaN where it is tiny
    return float(stats.nct.sf(critical, df, noncentrality) + stats.nct.sf(critical, df, -noncentrality))


@functools.cache
def detectable_effect(n: float, alpha: float, power: float = POWER) -> float:
    """The smallest standardized difference the paired t test over ``n`` pairs finds at level ``alpha`` with
    probability ``power``."""
    high = 1.0
    while paired_power(high, n, alpha) < power:
        high *= 2
    return float(optimize.brentq(lambda d: paired_power(d, n, alpha) - power, 0.0, high, xtol=1e-12))


def seeds_for_effect(effect: float, alpha: float, power: float = POWER) -> float:
    """The number of pairs (continuous, at least 2) at which the paired t test finds a standardized difference
    ``effect`` at level ``alpha`` with probability ``power``; ``inf`` beyond :data:`MAX_SEEDS`."""
    if paired_power(abs(effect), 2, alpha) >= power:
        return 2.0
    if paired_power(abs(effect), MAX_SEEDS, alpha) < power:
        return math.inf

    def gap(n: float) -> float:
        return paired_power(abs(effect), n, alpha) - power

    return float(optimize.brentq(gap, 2.0, MAX_SEEDS, xtol=1e-12))


def minimum_detectable_difference(sd: float, n: int, alpha: float, power: float = POWER) -> float:
    """The smallest difference (in the units of ``sd``, the standard deviation of the paired differences) that
    ``n`` seeds resolve at level ``alpha`` with probability ``power``; with no spread (``sd == 0``), 0 where the
    sign-flip test can reach the level with ``n`` seeds, else ``inf``."""
    if sd == 0:
        return 0.0 if smallest_p(n) < alpha else math.inf
    return sd * detectable_effect(n, alpha, power)


def seeds_needed(difference: float, sd: float, alpha: float, power: float = POWER) -> float:
    """The whole number of seeds that resolves ``difference`` at level ``alpha`` with probability ``power`` given
    ``sd``; with no spread, the fewest the sign-flip test can reach the level with; ``inf`` beyond
    :data:`MAX_SEEDS`."""
    if sd == 0:
        return float(math.floor(math.log2(2 / alpha)) + 1)
    needed = seeds_for_effect(difference / sd, alpha, power)
    return float(math.ceil(needed - 1e-9)) if math.isfinite(needed) else math.inf


def comparable_records(directory: Path) -> list[dict[str, Any]]:
    """The records of a results directory that the scope table compares: labelled by setup, without the allocation
    controls and the structured track (as :func:`prunebench.leaderboard.write_leaderboard` reads them)."""
    records = load_records([Path(directory)])
    label_setups(records)
    records, _ = split_controls(records)
    records, _ = split(records)
    return records


def _spread(differences: list[float]) -> float:
    """The standard deviation of paired differences; 0 where they are equal up to float noise (as
    :func:`prunebench.leaderboard.stats.compare` counts them), NaN for fewer than two."""
    if len(differences) < 2:
        return math.nan
    sd = float(np.std(differences, ddof=1))
    return 0.0 if np.ptp(differences) <= EXACT else sd


def comparison_power(
    records: list[dict[str, Any]], difference: float = 1.0, power: float = POWER, alpha: float = ALPHA
) -> pd.DataFrame:
    """Per scope comparison (criterion, pair of scopes, sparsity) with two or more seeds in common: the seeds, the
    standard deviation of the paired differences, the comparisons of its column (the Holm family), the worst-case
    level ``alpha / m``, the seeds that resolve ``difference`` points and the difference its seeds resolve."""
    rows = []
    for pair in scope_pairs(records):
        a, b = seed_values(pair.runs_a, pair.metric), seed_values(pair.runs_b, pair.metric)
        common = sorted(set(a) & set(b))
        rows.append(
            {
                "dataset": pair.dataset,
                "model": pair.model,
                "method": pair.method,
                "variant": pair.variant,
                "scope_a": pair.scope_a,
                "scope_b": pair.scope_b,
                "group_a": pair.group_a,
                "group_b": pair.group_b,
                "sparsity": pair.sparsity,
                "tested": bool(compare(a, b).test),
                "n": len(common),
                "sd": _spread([a[s] - b[s] for s in common]),
            }
        )
    frame = pd.DataFrame(
        rows,
        columns=[
            *_KEYS,
            "method",
            "variant",
            "scope_a",
            "scope_b",
            "group_a",
            "group_b",
            "tested",
            "n",
            "sd",
        ],
    )
    frame["comparisons"] = frame.groupby(_KEYS)["tested"].transform("sum").astype(int)
    frame = frame[frame["n"] >= 2].drop(columns="tested").reset_index(drop=True)
    frame["alpha_holm"] = alpha / frame["comparisons"].clip(lower=1)
    frame["seeds_needed"] = [seeds_needed(difference, r.sd, r.alpha_holm, power) for r in frame.itertuples()]
    frame["detectable"] = [
        minimum_detectable_difference(r.sd, r.n, r.alpha_holm, power) for r in frame.itertuples()
    ]
    return frame


def resolution(records: list[dict[str, Any]], power: float = POWER, alpha: float = ALPHA) -> pd.DataFrame:
    """Per (dataset, model, sparsity): "at ``n`` seeds this grid resolves differences of about ``detectable``
    points", with ``n`` the most common seed count of its comparisons (the smallest on a draw), ``sd`` the median
    over them of the standard deviation of their paired differences (a typical comparison's: a few with collapsed
    runs have sds ten times the others') and the level Holm's worst case gives with ``comparisons`` differences."""
    found = comparison_power(records, power=power, alpha=alpha)
    rows = []
    for (dataset, model, sparsity), column in found.groupby(_KEYS, sort=True):
        sd = float(column["sd"].median())
        n = int(column["n"].mode().min())
        level = float(column["alpha_holm"].iloc[0])
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "sparsity": sparsity,
                "n": n,
                "comparisons": int(column["comparisons"].iloc[0]),
                "alpha_holm": level,
                "sd": sd,
                "detectable": minimum_detectable_difference(sd, n, level, power),
            }
        )
    columns = [*_KEYS, "n", "comparisons", "alpha_holm", "sd", "detectable"]
    return pd.DataFrame(rows, columns=columns)


def power_report(
    directory: Path, difference: float, power: float, alpha: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``bench power``'s two tables for a results directory: :func:`comparison_power` and :func:`resolution`; a
    missing directory or one with no comparable cells is a :class:`UsageError`."""
    _check_levels(difference, power, alpha)
    records = comparable_records(Path(directory))
    found = comparison_power(records, difference, power, alpha)
    if found.empty:
        raise UsageError(
            f"no criterion in {directory} ran in two scopes at one sparsity with two or more seeds in common: "
            "nothing to compute the power of"
        )
    return found, resolution(records, power, alpha)


def _check_levels(difference: float, power: float, alpha: float) -> None:
    """``--difference``, ``--power`` and ``--alpha`` in range, else a one-line :class:`UsageError`."""
    if not (difference > 0 and math.isfinite(difference)):
        raise UsageError(f"--difference {difference:g}: give a difference in top-1 points above 0, e.g. 1.0")
    if not 0 < power < 1:
        raise UsageError(f"--power {power:g}: give a probability strictly between 0 and 1, e.g. 0.8")
    if not 0 < alpha < 1:
        raise UsageError(f"--alpha {alpha:g}: give a level strictly between 0 and 1, e.g. 0.05")


def _seeds_text(value: float) -> str:
    return f"{value:.0f}" if math.isfinite(value) else f"> {MAX_SEEDS}"


def _points_text(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "none"


def format_report(found: pd.DataFrame, columns: pd.DataFrame, difference: float, power: float) -> str:
    """``bench power``'s text: per scope comparison the seeds that resolve ``difference`` points, then per column
    the difference the current seeds resolve."""
    per_comparison = pd.DataFrame(
        {
            "dataset/model": found["dataset"] + "/" + found["model"],
            "sparsity": found["sparsity"].map("{:g}".format),
            "criterion": [
                criterion_label(m, v) for m, v in zip(found["method"], found["variant"], strict=True)
            ],
            "scopes": [
                comparison_label(row).replace("−", "-")
                for row in found[["scope_a", "scope_b", "group_a", "group_b"]].to_dict("records")
            ],
            "n": found["n"],
            "sd": found["sd"].map("{:.2f}".format),
            "alpha/m": found["alpha_holm"].map("{:.2g}".format),
            f"seeds for {difference:g} pt": found["seeds_needed"].map(_seeds_text),
        }
    )
    per_column = pd.DataFrame(
        {
            "dataset/model": columns["dataset"] + "/" + columns["model"],
            "sparsity": columns["sparsity"].map("{:g}".format),
            "n": columns["n"],
            "comparisons": columns["comparisons"],
            "alpha/m": columns["alpha_holm"].map("{:.2g}".format),
            "median sd": columns["sd"].map("{:.2f}".format),
            "detectable": columns["detectable"].map(_points_text),
        }
    )
    return "\n".join(
        [
            f"Seeds a paired t test needs to resolve a difference of top-1 of {difference:g} (percentage points) with power "
            f"{power:g}, at Holm's worst-case level alpha/m (m: the comparisons of the column); sd: of the paired "
            "differences over the seeds both scopes share",
            per_comparison.to_string(index=False),
            "",
            f"Smallest difference (points) the current seeds resolve with power {power:g}, per column, at the "
            "median sd of its comparisons",
            per_column.to_string(index=False),
        ]
    )
