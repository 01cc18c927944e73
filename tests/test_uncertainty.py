"""Two levels of uncertainty and power: per-example outcome files, the comparison over seeds and test examples, cell
intervals with the test set's error, the scope table's second level, and the power of the scope comparisons."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from prunebench.cli import main
from prunebench.core.errors import UsageError
from prunebench.leaderboard.power import (
    detectable_effect,
    paired_power,
    power_report,
    resolution,
    seeds_for_effect,
    seeds_needed,
)
from prunebench.leaderboard.record_reader import load_records
from prunebench.leaderboard.scopes import COLUMNS, TWO_LEVEL_COLUMNS, scope_comparisons
from prunebench.leaderboard.section_tables import LEVELS_DIFFER, scope_table
from prunebench.leaderboard.uncertainty import binomial_interval, outcome_interval, two_level_comparison
from prunebench.run.example_outcomes import outcomes_path, pack_outcomes, read_outcomes, write_outcomes

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = json.loads((ROOT / "examples" / "default-grid" / "runs" / "00b0959e79394f3b.json").read_text())
"""A record of the default grid (snip, uniform, 0.95, seed 2): every record here is a copy of it with a few fields
changed."""


def _record(scope: str, sparsity: float, seed: int, top1: float, **fields) -> dict:
    record = copy.deepcopy(TEMPLATE)
    record["config"].update(scope=scope, sparsity=sparsity, seed=seed)
    record.update(
        run_id=f"snip_{scope}_{round(sparsity * 100)}_{seed}",
        scope=scope,
        sparsity=sparsity,
        seed=seed,
        top1=top1,
        **fields,
    )
    return record


def _write(root: Path, records: list[dict], outcomes: dict[str, np.ndarray] | None = None) -> Path:
    """Records into ``root/runs``, with the outcome files of the run ids in ``outcomes``."""
    (root / "runs").mkdir(parents=True, exist_ok=True)
    for record in records:
        (root / "runs" / f"{record['run_id']}.json").write_text(json.dumps(record))
    for run_id, bits in (outcomes or {}).items():
        write_outcomes(outcomes_path(root, run_id), pack_outcomes(bits))
    return root


# Outcome files


def test_outcome_files_round_trip_bit_for_bit(tmp_path):
    rng = np.random.default_rng(0)
    top1 = rng.random(1001) < 0.9  # 1001 examples: the packed bits have a ragged end
    top5 = top1 | (rng.random(1001) < 0.5)
    record = _record("uniform", 0.95, 2, 100.0 * top1.sum() / 1001, top5=100.0 * top5.sum() / 1001)
    _write(tmp_path, [{**record, "test_examples": 1001}])
    path = outcomes_path(tmp_path, record["run_id"])
    write_outcomes(path, pack_outcomes(top1, top5))
    found = read_outcomes(tmp_path, record["run_id"])
    assert set(found) == {"top1", "top5"}
    assert found["top1"].dtype == bool and np.array_equal(found["top1"], top1)
    assert np.array_equal(found["top5"], top5)
    assert path == tmp_path / "runs" / f"{record['run_id']}.outcomes.npz" and path.stat().st_size < 1500
    write_outcomes(path, pack_outcomes(top1))
    assert set(read_outcomes(tmp_path, record["run_id"])) == {"top1"}
    assert read_outcomes(tmp_path, "0123456789abcdef") is None  # no file: no outcomes


def _damage(tmp_path: Path, arrays: dict[str, np.ndarray], record: dict) -> str:
    """The one-line error of reading ``arrays`` as the outcome file of ``record``."""
    _write(tmp_path, [record])
    write_outcomes(outcomes_path(tmp_path, record["run_id"]), arrays)
    with pytest.raises(UsageError) as error:
        read_outcomes(tmp_path, record["run_id"])
    message = str(error.value)
    assert "\n" not in message and str(outcomes_path(tmp_path, record["run_id"])) in message
    return message


def test_damaged_or_disagreeing_outcome_files_are_one_line_errors(tmp_path):
    bits = np.arange(1000) % 10 != 0  # 900 of 1000 right: 90.0%
    record = _record("uniform", 0.95, 2, 90.0, top5=99.1)
    good = pack_outcomes(bits)
    one_more = bits.copy()
    one_more[0] = True  # 901 right: 90.1%
    assert "its top1 is 90.1000%, the run's record says 90.0" in _damage(
        tmp_path, pack_outcomes(one_more), record
    )
    assert "it holds 1000 examples, the run's record test_examples 999" in _damage(
        tmp_path, good, {**record, "test_examples": 999}
    )
    ragged = pack_outcomes(bits[:999])  # 999 examples in 125 bytes: the last bit is padding
    ragged["top1"] = ragged["top1"].copy()
    ragged["top1"][-1] |= 1
    ninety = {**record, "top1": 100.0 * 899 / 999}
    assert "top1 has bits set after its 999 examples" in _damage(tmp_path, ragged, ninety)
    assert "count holds float64" in _damage(tmp_path, {**good, "count": np.array(1000.0)}, record)
    assert "top1 holds uint8 of shape (125,), not of shape (250,)" in _damage(
        tmp_path, {**good, "count": np.array(2000)}, record
    )
    assert "not count, top1 and optionally top5" in _damage(tmp_path, {**good, "top10": good["top1"]}, record)
    path = outcomes_path(tmp_path, record["run_id"])
    write_outcomes(path, good)
    path.write_bytes(path.read_bytes()[:-40])  # cut short
    with pytest.raises(UsageError, match="is not a readable outcome file"):
        read_outcomes(tmp_path, record["run_id"])
    with pytest.raises(UsageError, match="is not a run id"):
        read_outcomes(tmp_path, "../elsewhere")


# The comparison over seeds and test examples


def _cells(seed: int, n: int = 3, examples: int = 80) -> tuple[dict, dict]:
    """Two cells of ``n`` seeds on one test set: examples hard for both, and seed-to-seed noise on each."""
    rng = np.random.default_rng(seed)
    easy = rng.random(examples) < 0.8
    a = {s: np.where(rng.random(examples) < 0.15, ~easy, easy) for s in range(n)}
    b = {s: np.where(rng.random(examples) < 0.25, ~easy, easy) for s in range(n)}
    return a, b


def _by_hand(a: dict, b: dict) -> tuple[float, float]:
    """The textbook two-way random-effects analysis of d = a - b (seeds x examples), one sum at a time: the mean
    difference in points and the estimated variance of that mean."""
    seeds = sorted(a)
    n, examples = len(seeds), len(a[seeds[0]])
    d = [[int(a[s][i]) - int(b[s][i]) for i in range(examples)] for s in seeds]
    grand = sum(sum(row) for row in d) / (n * examples)
    rows = [sum(row) / examples for row in d]
    columns = [sum(d[s][i] for s in range(n)) / n for i in range(examples)]
    ss_rows = examples * sum((r - grand) ** 2 for r in rows)
    ss_columns = n * sum((c - grand) ** 2 for c in columns)
    ss_residual = sum(
        (d[s][i] - rows[s] - columns[i] + grand) ** 2 for s in range(n) for i in range(examples)
    )
    ms_rows, ms_columns = ss_rows / (n - 1), ss_columns / (examples - 1)
    ms_residual = ss_residual / ((n - 1) * (examples - 1))
    variance = (ms_rows + max(ms_columns - ms_residual, 0.0)) / (n * examples)
    return 100.0 * grand, 100.0**2 * variance


def test_two_level_comparison_matches_the_analysis_of_variance_by_hand():
    a, b = _cells(0)
    result = two_level_comparison(a, b)
    difference, variance = _by_hand(a, b)
    half = stats.t.ppf(0.975, 2) * math.sqrt(variance)
    assert result.difference == pytest.approx(difference) and (result.n, result.examples) == (3, 80)
    assert (result.low, result.high) == pytest.approx((difference - half, difference + half))
    assert result.pvalue == pytest.approx(2 * stats.t.sf(abs(difference) / math.sqrt(variance), 2))


@pytest.mark.parametrize("seed", range(6))
def test_the_second_level_only_widens_the_seed_level_interval(seed):
    """Against scipy's paired t test over the seeds' accuracies: the same difference, a wider interval, a larger p."""
    a, b = _cells(seed, n=3 + seed % 3, examples=200)
    result = two_level_comparison(a, b)
    accuracies_a = [100.0 * a[s].mean() for s in sorted(a)]
    accuracies_b = [100.0 * b[s].mean() for s in sorted(b)]
    paired = stats.ttest_rel(accuracies_a, accuracies_b)
    interval = paired.confidence_interval(0.95)
    assert result.difference == pytest.approx(np.mean(accuracies_a) - np.mean(accuracies_b))
    assert result.high - result.low >= interval.high - interval.low - 1e-9
    assert result.pvalue >= paired.pvalue - 1e-12


def test_two_level_comparison_known_answers():
    a, _ = _cells(2)
    same = two_level_comparison(a, a)
    assert (same.difference, same.low, same.high, same.pvalue) == (0.0, 0.0, 0.0, 1.0)
    right = {s: np.ones(50, bool) for s in range(3)}
    wrong = {s: np.zeros(50, bool) for s in range(3)}
    certain = two_level_comparison(right, wrong)
    assert (certain.difference, certain.low, certain.high) == (100.0, 100.0, 100.0)
    assert certain.pvalue == pytest.approx(
        2 / 2**3
    )  # no spread at either level: the sign-flip floor of 3 seeds
    assert two_level_comparison(right, {0: wrong[0], 1: wrong[1], 5: wrong[2]}) is None  # other seeds
    assert two_level_comparison(right, {s: np.zeros(49, bool) for s in range(3)}) is None  # other test sets
    assert two_level_comparison({0: right[0]}, {0: wrong[0]}) is None  # one seed


# Cell intervals with the test set's error


def test_binomial_cell_interval_against_the_hand_formula():
    accuracies, examples = [90.0, 91.0, 92.0], 1000
    between = 1.0 / 3  # s^2 = 1, n = 3
    test = 100.0**2 * 0.91 * 0.09 / examples  # p (1 - p) / N in points^2: 0.819
    total = between + test
    df = total**2 * 2 / between**2
    half = stats.t.ppf(0.975, df) * math.sqrt(total)
    summary = binomial_interval(accuracies, examples)
    assert (summary.mean, summary.low, summary.high) == pytest.approx((91.0, 91.0 - half, 91.0 + half))
    one = binomial_interval([90.0], examples)
    assert one.low == one.high == 90.0  # one seed: the between-seed share is unknown


def test_outcome_interval_is_the_two_way_anova_estimate():
    rng = np.random.default_rng(4)
    hard = rng.random(200) < 0.3
    correct = np.stack([np.where(rng.random(200) < 0.1, hard, ~hard) for _ in range(4)])
    n, examples = correct.shape
    x = correct.astype(float)
    grand, rows, cols = x.mean(), x.mean(axis=1), x.mean(axis=0)
    ms_seeds = examples * sum((r - grand) ** 2 for r in rows) / (n - 1)
    ms_items = n * sum((c - grand) ** 2 for c in cols) / (examples - 1)
    ms_residual = sum(
        (x[s, i] - rows[s] - cols[i] + grand) ** 2 for s in range(n) for i in range(examples)
    ) / ((n - 1) * (examples - 1))
    between = 100.0**2 * ms_seeds / (n * examples)
    test = 100.0**2 * (ms_items - ms_residual) / (n * examples)
    assert test > 0
    df = (between + test) ** 2 * (n - 1) / between**2
    half = stats.t.ppf(0.975, df) * math.sqrt(between + test)
    summary = outcome_interval(correct)
    assert summary.mean == pytest.approx(100 * grand)
    assert (summary.low, summary.high) == pytest.approx((100 * grand - half, 100 * grand + half))
    # seeds that agree on every example: no between-seed share, the test set's is the binomial bound
    agreeing = outcome_interval(np.stack([correct[0]] * 3))
    p = correct[0].mean()
    bound = 100.0 * math.sqrt(p * (1 - p) / (examples - 1))
    assert agreeing.high - agreeing.mean == pytest.approx(stats.norm.ppf(0.975) * bound)


# The scope table's second level


def _outcome_grid(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """snip in three scopes at 0.9, 3 seeds, 1000 examples; global and uniform have outcome files, erk does not.

    global gains 30 and loses 20 examples per seed on uniform (+1.0 point, seed by seed 1.0, 1.1 and 0.9): the
    seed-level test is significant, the test set's sampling error is as large as the difference."""
    rng = np.random.default_rng(7)
    base = rng.random(1000) < 0.9
    records, outcomes = [], {}
    for seed, extra in enumerate([0, 1, -1]):
        uniform = base.copy()
        right, wrong = np.flatnonzero(uniform), np.flatnonzero(~uniform)
        flip = np.concatenate(
            [rng.choice(wrong, 30 + extra, replace=False), rng.choice(right, 20, replace=False)]
        )
        scope_bits = {"uniform": uniform, "global": uniform ^ np.isin(np.arange(1000), flip)}
        for scope, bits in scope_bits.items():
            record = _record(scope, 0.9, seed, 100.0 * bits.sum() / 1000)
            records.append(record)
            outcomes[record["run_id"]] = bits
        records.append(_record("erk", 0.9, seed, 100.0 * uniform.sum() / 1000 + 0.3 + 0.1 * seed))
    return _write(tmp_path, records, outcomes), outcomes


def test_the_scope_table_adds_the_second_level_only_where_every_run_has_outcomes(tmp_path):
    root, outcomes = _outcome_grid(tmp_path)
    records = load_records([root])
    plain = scope_comparisons([{k: v for k, v in r.items() if k != "_path"} for r in records])
    assert list(plain.columns) == COLUMNS  # no outcome files reachable: exactly today's table
    table = scope_comparisons(records)
    assert list(table.columns) == COLUMNS + TWO_LEVEL_COLUMNS
    assert list(table[COLUMNS].fillna(-1).itertuples(index=False)) == list(
        plain.fillna(-1).itertuples(index=False)
    )  # the existing columns unchanged
    rows = {(r.scope_a, r.scope_b): r for r in table.itertuples()}
    both = rows[("global", "uniform")]
    a = {s: outcomes[f"snip_global_90_{s}"] for s in range(3)}
    b = {s: outcomes[f"snip_uniform_90_{s}"] for s in range(3)}
    expected = two_level_comparison(a, b)
    assert (both.examples, both.two_level_low, both.two_level_high, both.two_level_p) == (
        1000,
        expected.low,
        expected.high,
        expected.pvalue,
    )
    # Holm over the column's three tested differences, the two without outcomes counted with p = 1
    assert both.two_level_p_holm == pytest.approx(min(1.0, 3 * expected.pvalue))
    assert all(math.isnan(rows[key].two_level_p) for key in [("global", "erk"), ("erk", "uniform")])
    assert both.significant and not both.two_level_significant
    cell = scope_table(table).rows[1][2]  # snip, global - uniform
    assert cell.marks == LEVELS_DIFFER and cell.bold
    assert "a new seed, a new test set" in scope_table(table).notes
    assert LEVELS_DIFFER not in scope_table(plain).notes


def test_the_scope_table_says_where_a_difference_had_no_spread_and_the_smallest_p_of_its_seeds():
    """The audit's case in the table: 0.1 point apart on every seed is p = 2/2^3, not bold, and said so."""
    records = [_record("global", 0.9, s, v) for s, v in enumerate([93.1, 93.3, 92.9])]
    records += [_record("uniform", 0.9, s, v) for s, v in enumerate([93.0, 93.2, 92.8])]
    found = scope_comparisons(records)
    assert found.loc[0, "p"] == pytest.approx(0.25) and not found.loc[0, "significant"]
    table = scope_table(found)
    cell = table.rows[0][2]
    assert (cell.text, cell.bold) == ("+0.10 (no spread)", False)
    assert "cannot go below 2/2^n = 0.25, the smallest p 3 seeds allow" in table.notes
    spread = [_record("uniform", 0.9, s, v) for s, v in enumerate([93.0, 93.1, 92.8])]
    assert "2/2^n" not in scope_table(scope_comparisons(records[:3] + spread)).notes


# Power


@pytest.mark.parametrize(
    ("effect", "n", "alpha"),
    [(0.5, 10, 0.05), (1.2, 3, 0.05), (2.0, 5, 0.01), (0.3, 40, 0.05 / 12), (1.0, 8, 0.05 / 41)],
)
def test_power_against_statsmodels(effect, n, alpha):
    power = pytest.importorskip("statsmodels.stats.power").TTestPower()
    assert paired_power(effect, n, alpha) == pytest.approx(power.power(effect, n, alpha), abs=1e-9)
    detectable = detectable_effect(n, alpha, 0.8)
    if (effect, n) == (1.0, 8):
        # statsmodels' two-sided power is NaN there (its far lower tail, scipy's nct.cdf, is NaN), and its solver
        # stops at power 0.75: the upper tail alone, one-sided at alpha / 2, is the power up to that tail (< 1e-12)
        assert math.isnan(power.power(detectable, n, alpha))
        upper = power.power(detectable, n, alpha / 2, alternative="larger")
        assert upper == pytest.approx(0.8, abs=1e-6)
    else:
        assert power.power(detectable, n, alpha) == pytest.approx(0.8, abs=1e-6)
        assert detectable == pytest.approx(power.solve_power(nobs=n, alpha=alpha, power=0.8), rel=1e-6)
    needed = seeds_for_effect(effect, alpha, 0.8)
    assert needed == pytest.approx(power.solve_power(effect_size=effect, alpha=alpha, power=0.8), rel=1e-6)
    whole = seeds_needed(effect * 2.0, 2.0, alpha, 0.8)  # a difference of 2 effect sizes' sd...
    assert whole == math.ceil(needed) and power.power(effect, whole, alpha) >= 0.8 > power.power(
        effect, whole - 1, alpha
    )


def _power_grid(tmp_path: Path) -> Path:
    """snip in global, uniform and erk at 0.9 and 0.95, 3 seeds, top-1 by hand."""
    top1 = {
        ("global", 0.9): [92.0, 92.5, 91.8],
        ("uniform", 0.9): [91.0, 91.9, 90.6],
        ("erk", 0.9): [91.7, 92.6, 91.2],
        ("global", 0.95): [90.0, 90.4, 89.9],
        ("uniform", 0.95): [88.0, 88.1, 87.0],
    }
    records = [
        _record(scope, s, seed, v) for (scope, s), values in top1.items() for seed, v in enumerate(values)
    ]
    return _write(tmp_path, records)


def test_bench_power_on_a_tiny_results_directory(tmp_path, capsys):
    statsmodels = pytest.importorskip("statsmodels.stats.power")
    root = _power_grid(tmp_path)
    found, columns = power_report(root, 1.0, 0.8, 0.05)
    rows = {(r.sparsity, r.scope_a, r.scope_b): r for r in found.itertuples()}
    assert set(rows) == {(0.9, "global", "erk"), (0.9, "global", "uniform"), (0.9, "erk", "uniform")} | {
        (0.95, "global", "uniform")
    }
    by_hand = np.std([92.0 - 91.0, 92.5 - 91.9, 91.8 - 90.6], ddof=1)
    row = rows[(0.9, "global", "uniform")]
    assert (row.n, row.comparisons, row.sd) == (3, 3, pytest.approx(by_hand))
    assert row.alpha_holm == pytest.approx(0.05 / 3)
    power = statsmodels.TTestPower()
    fewest = next(n for n in range(2, 1000) if power.power(1.0 / by_hand, n, 0.05 / 3) >= 0.8)
    assert row.seeds_needed == fewest
    assert rows[(0.95, "global", "uniform")].alpha_holm == pytest.approx(0.05)  # alone in its column
    column = columns.set_index("sparsity").loc[0.9]
    assert column.sd == pytest.approx(np.median([r.sd for r in found.itertuples() if r.sparsity == 0.9]))
    assert power.power(column.detectable / column.sd, 3, 0.05 / 3) == pytest.approx(0.8, abs=1e-6)
    assert list(resolution(load_records([root]))["detectable"]) == pytest.approx(list(columns["detectable"]))
    assert main(["power", str(root), "--difference", "1.0"]) == 0
    printed = capsys.readouterr().out
    assert "global - uniform" in printed and f"{column.detectable:.2f}" in printed
    assert printed.splitlines()[0].startswith(
        "Seeds a paired t test needs to resolve a difference of top-1 of 1"
    )


def test_bench_power_errors_are_one_line(tmp_path, capsys):
    assert main(["power", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err == f"bench: error: {tmp_path / 'missing'} is not a directory\n"
    root = _write(tmp_path / "one", [_record("global", 0.9, s, 90.0 + s) for s in range(3)])
    assert main(["power", str(root)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "ran in two scopes at one sparsity" in error
    assert main(["power", str(_power_grid(tmp_path / "grid")), "--power", "1.2"]) == 2
    assert "--power 1.2: give a probability strictly between 0 and 1" in capsys.readouterr().err
