"""The leaderboard: statistics against scipy, golden Markdown, CSV, merging, robustness, plots, CLI."""

from __future__ import annotations

import json
import math
import shutil
import statistics
import subprocess
import sys
import warnings
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import pyplot
from matplotlib.colors import to_hex
from scipy import stats

from prunebench.cli import main
from prunebench.core.errors import UsageError
from prunebench.leaderboard import plots, write_leaderboard
from prunebench.leaderboard.layer_densities import short_labels
from prunebench.leaderboard.plots import SCOPE_STYLES, accuracy_figure, density_figure, speedup_figure
from prunebench.leaderboard.provenance import commands, grid
from prunebench.leaderboard.record_reader import RecordWarning, load_records
from prunebench.leaderboard.render import Cell, Table, to_latex
from prunebench.leaderboard.scopes import scope_comparisons
from prunebench.leaderboard.section_tables import allocation_table, scope_table
from prunebench.leaderboard.sections import build_sections
from prunebench.leaderboard.tidy_table import COLUMNS, tidy_table
from prunebench.run.run_record import RECORD_VERSION

LAYERS = [("conv.weight", [4, 25]), ("fc.weight", [10, 30])]
"""Two prunable layers of 100 and 300 weights."""


def default_densities(scope: str, density: float) -> list[float]:
    """Uniform: both layers at ``density``; otherwise the first layer twice as dense, the budget kept exactly."""
    if scope == "uniform":
        return [density, density]
    first = min(1.0, 2 * density)
    return [first, (400 * density - 100 * first) / 300]


def record(
    method: str,
    scope: str,
    sparsity: float,
    seed: int,
    top1: float | None,
    status: str = "ok",
    collapsed: bool = False,
    enforcement: str | None = None,
    method_sparsity: float | None = None,
    densities: list[float] | None = None,
) -> dict:
    """A record in the layout the runner writes (ok runs with metrics, failed ones without)."""
    head = {
        "version": RECORD_VERSION,
        "run_id": f"{method}-{scope}-{sparsity:g}-{seed}",
        "dataset": "toy",
        "model": "net",
        "preset": "toy-net",
        "method": method,
        "variant": "",
        "criterion": method,
        "hparams": {},
        "schedule": "dense" if method == "dense" else "after_training",
        "scope": scope,
        "sparsity": sparsity,
        "seed": seed,
        "status": status,
        "device": "cpu: test",
        "versions": {"python": "3.11.0", "torch": "2.5.0"},
        "config": {"preset": "toy-net", "recipe": {"epochs": 4}},
        "wall_time_s": 1.0,
        "finished_at": "2026-01-01T00:00:00+00:00",
    }
    if status != "ok":
        return {**head, "error": "RuntimeError: boom"}
    density = 1.0 - sparsity
    layers = [
        {
            "name": name,
            "shape": shape,
            "size": shape[0] * shape[1],
            "nonzero": round(shape[0] * shape[1] * layer_density),
            "density": layer_density,
            "flops_dense": shape[0] * shape[1] * 10,
            "flops_sparse": shape[0] * shape[1] * 10 * layer_density,
        }
        for (name, shape), layer_density in zip(
            LAYERS, densities or default_densities(scope, density), strict=True
        )
    ]
    return {
        **head,
        "top1": top1,
        "top5": 100.0,
        "loss": 0.1,
        "train_loss": 0.2,
        "achieved_sparsity": sparsity,
        "prunable_weights": 400,
        "prunable_nonzero": round(400 * density),
        "params_total": 400,
        "params_nonzero": round(400 * density),
        "compression_ratio": 1 / density,
        "flops_dense": 4000,
        "flops_sparse": 4000 * density,
        "speedup": 1 / density,
        "min_layer_density": 0.0 if collapsed else density,
        "collapsed": collapsed,
        "layers": layers,
        "method_sparsity": method_sparsity,
        "enforcement": enforcement,
        "method_details": None,
        "epochs": {"budget": 4},
        "loader": "memory",
        "precision": "fp32",
    }


def fixture_records() -> list[dict]:
    """Dense baseline, a tie, a clear loss, an n=1 cell, a failed run, a collapsed layer, an enforcement, a criterion
    in two scopes and a learned allocation."""
    return [
        *(record("dense", "none", 0.0, s, v) for s, v in enumerate([98.0, 98.2, 98.4])),
        *(record("magnitude", "global", 0.5, s, v) for s, v in enumerate([97.0, 97.2, 97.4])),
        *(record("random", "uniform", 0.5, s, v) for s, v in enumerate([96.9, 97.3, 97.1])),
        *(record("magnitude", "global", 0.9, s, v) for s, v in enumerate([90.0, 91.0, 92.0])),
        record("random", "uniform", 0.9, 0, 80.0, collapsed=True),
        record("random", "uniform", 0.9, 1, 81.0),
        record("random", "uniform", 0.9, 2, None, status="failed"),
        record("lamp", "global", 0.9, 0, 85.0, enforcement="top-k of the scores"),
        *(record("magnitude", "uniform", 0.5, s, v) for s, v in enumerate([96.8, 97.1, 97.0])),
        *(record("magnitude", "uniform", 0.9, s, v) for s, v in enumerate([86.0, 87.5, 88.1])),
        *(
            record(
                "str",
                "learned",
                0.5,
                s,
                v,
                enforcement="thresholds shifted",
                method_sparsity=own,
                densities=[0.8, 0.4],
            )
            for s, (v, own) in enumerate([(97.0, 0.49), (97.3, 0.52), (97.1, 0.5)])
        ),
    ]


def write_dir(root: Path, records: list[dict]) -> Path:
    (root / "runs").mkdir(parents=True, exist_ok=True)
    for r in records:
        (root / "runs" / f"{r['run_id']}.json").write_text(json.dumps(r))
    return root


GOLDEN = """\
# prunebench leaderboard

## toy / net

- Budget: 4 epochs of weight updates per run
- Hardware: cpu: test
- Versions: python 3.11.0, torch 2.5.0
- Grid: 22 pruned runs: 5 rows × 2 sparsities (8 of 10 cells), 1-3 seeds per cell; 3 dense runs
- Command: `bench run --preset toy-net --methods lamp --scopes global --sparsity 0.9 --seeds 1 --epochs 4`
- Command: `bench run --preset toy-net --methods magnitude --scopes global,uniform --sparsity 0.5,0.9 --seeds 3 --epochs 4`
- Command: `bench run --preset toy-net --methods random --scopes uniform --sparsity 0.5,0.9 --seeds 3 --epochs 4`
- Command: `bench run --preset toy-net --methods str --scopes learned --sparsity 0.5 --seeds 3 --epochs 4`

Dense baseline (top-1 %): **98.20 ± 0.50 (n=3)**

### Global versus layer-wise allocation: top-1 difference between scopes

| criterion | difference | 0.5 (2×) | 0.9 (10×) |
|---|---|---:|---:|
| magnitude | global − uniform | +0.23 ± 0.38 | **+3.80 ± 0.66** |

Top-1 of the first scope minus the second, in percentage points, for every criterion (method and \
hyperparameter variant) run in more than one scope: the mean of the differences seed by seed ± the \
half-width of their paired 95% t interval; n = 3 pairs unless shown (`unpaired`: the seeds differ, Welch's \
test and interval). **Bold**: significantly different from 0 (paired t, Holm, α=0.05: Holm's correction \
over every difference of the column, so an interval that excludes 0 may stay plain). ERK: \
Erdős-Rényi-Kernel; uniform+: uniform with the first convolution dense and the last layer at least 20% \
dense.

### Learned allocations at sparsity 0.5: density per layer

| layer | weights | uniform | ERK | global (magnitude) | str |
|---|---:|---:|---:|---:|---:|
| conv | 100 | 0.5 | 0.841 | 1 | 0.8 |
| fc | 300 | 0.5 | 0.386 | 0.333 | 0.4 |

Density (fraction of the weights kept) of each prunable layer, mean over seeds, of the methods that learn \
their allocation, beside the allocations of the same budget by the fixed scopes: uniform and ERK computed \
from the layer shapes (the arithmetic every run's allocation goes through); global (magnitude): the layer \
densities of its global-scope runs.

### Top-1 accuracy (%)

| method (scope) | 0.5 (2×) | 0.9 (10×) |
|---|---:|---:|
| lamp (global) |  | 85.00 (n=1) ¶ |
| magnitude (global) | **97.20 ± 0.50** | **91.00 ± 2.48** |
| magnitude (uniform) | 96.97 ± 0.38 † | 87.20 ± 2.69 |
| random (uniform) | 97.10 ± 0.50 † | 80.50 ± 6.35 (n=2, 1 failed, unpaired) ¶ |
| str (learned) | 97.13 ± 0.38 † |  |

Columns: target sparsity s of the prunable weights (their compression 1/(1-s)). Top-1 accuracy (%) on the \
test set: mean ± half-width of the 95% Student-t interval over seeds, [low, high] where it is clipped to \
0-100 or skewed; n = 3 seeds per cell unless shown. n=1: a single seed, shown without an interval. ¶: \
fewer than 3 seeds, too few for the interval or the test to say much. **Bold**: the best mean of the \
column. †: not significantly different from the best (paired t, Holm, α=0.05: seeds paired, Holm's \
correction within the column; `unpaired`: the seeds differ from the best's, Welch's test instead; cells \
with fewer than 2 seeds are not tested). Failed and diverged runs are counted (`failed`), never averaged.

### Compression ratio / theoretical speedup

| method (scope) | 0.5 (2×) | 0.9 (10×) |
|---|---:|---:|
| lamp (global) |  | 10.0× / 10.00× § |
| magnitude (global) | 2.0× / 2.00× | 10.0× / 10.00× |
| magnitude (uniform) | 2.0× / 2.00× | 10.0× / 10.00× |
| random (uniform) | 2.0× / 2.00× | 10.0× / 10.00× ‡ |
| str (learned) | 2.0× / 2.00× § |  |

Compression ratio: all parameters of the dense model / non-zero parameters (ShrinkBench). Theoretical \
speedup: dense FLOPs / sparse FLOPs (FLOPs of one example as `torch.utils.flop_counter` counts them, 2 per \
multiply-accumulate; each weight's FLOPs times its density). ‡: at least one seed has a collapsed layer \
(no weight left in it). §: the method's own sparsity was brought to the exact target by an enforcement \
step; the change is |own − target| kept weights / target kept weights, per method:

- lamp (global): 1 of 1 runs; step: top-k of the scores
- str (learned): 3 of 3 runs, the step changed the number of kept weights by 0.0–4.0%; step: thresholds shifted
"""


def test_golden_markdown(tmp_path):
    write_dir(tmp_path / "results", fixture_records())
    markdown = write_leaderboard([tmp_path / "results"], tmp_path / "out", ["md"])
    assert markdown == GOLDEN
    assert (tmp_path / "out" / "leaderboard.md").read_text() == GOLDEN


def test_tidy_csv_round_trips_through_pandas(tmp_path):
    records = fixture_records()
    write_dir(tmp_path / "results", records)
    write_leaderboard([tmp_path / "results"], tmp_path, ["csv"])
    tidy = pd.read_csv(tmp_path / "leaderboard.csv", dtype={"variant": str}).fillna(
        {"variant": ""}
    )  # the default variant is empty
    assert list(tidy.columns) == COLUMNS
    pd.testing.assert_frame_equal(tidy, tidy_table(load_records([tmp_path / "results"])), check_dtype=False)
    row = tidy[(tidy["method"] == "magnitude") & (tidy["sparsity"] == 0.9)].iloc[0]
    low, high = stats.t.interval(0.95, 2, loc=91.0, scale=stats.sem([90.0, 91.0, 92.0]))
    assert (row["n"], row["n_failed"], row["top1_mean"]) == (3, 0, pytest.approx(91.0))
    assert (row["top1_ci_low"], row["top1_ci_high"]) == pytest.approx((low, high))
    assert bool(row["best"]) and not bool(row["not_different_from_best"])
    random = tidy[(tidy["method"] == "random") & (tidy["sparsity"] == 0.9)].iloc[0]
    assert random["test_vs_best"] == "welch"  # seeds 0 and 1 against 0, 1 and 2: no complete pairs
    assert random["p_vs_best"] == pytest.approx(
        stats.ttest_ind([80.0, 81.0], [90.0, 91.0, 92.0], equal_var=False).pvalue
    )
    dense = tidy[tidy["method"] == "dense"].iloc[0]
    assert (dense["n"], dense["top1_mean"]) == (3, pytest.approx(98.2))
    wide = pd.read_csv(tmp_path / "leaderboard_wide.csv", keep_default_na=False)
    assert list(wide.columns) == ["dataset", "model", "method (scope)", "0.5 (2×)", "0.9 (10×)"]
    assert wide.set_index("method (scope)").loc["random (uniform)", "0.5 (2×)"] == "97.10 ± 0.50 †"
    scopes = pd.read_csv(tmp_path / "leaderboard_wide_scopes.csv", keep_default_na=False)
    assert scopes.iloc[0].tolist() == [
        "toy",
        "net",
        "magnitude",
        "global − uniform",
        "+0.23 ± 0.38",
        "**+3.80 ± 0.66**",
    ]
    cost = pd.read_csv(tmp_path / "leaderboard_wide_cost.csv", keep_default_na=False)
    assert cost.set_index("method (scope)").loc["random (uniform)", "0.9 (10×)"] == "10.0× / 10.00× ‡"
    allocation = pd.read_csv(tmp_path / "leaderboard_wide_allocation.csv", keep_default_na=False)
    assert list(allocation.columns) == [
        "dataset",
        "model",
        "layer",
        "weights",
        "uniform",
        "ERK",
        "global (magnitude)",
        "str",
    ]
    differences = pd.read_csv(tmp_path / "leaderboard_scopes.csv")
    assert differences[["scope_a", "scope_b", "sparsity", "test", "n"]].values.tolist() == [
        ["global", "uniform", 0.5, "paired", 3],
        ["global", "uniform", 0.9, "paired", 3],
    ]


def test_cells_are_compared_with_the_best_by_paired_t_tests_holm_adjusted_in_the_column():
    best = [93.0, 95.0, 94.0]
    gaps = {"w": [0.30, 0.31, 0.30], "x": [0.4, 0.6, 0.3], "y": [1.0, -0.2, 0.5], "z": [3.0, 2.9, 3.0]}
    values = {m: [b - g for b, g in zip(best, gap, strict=True)] for m, gap in gaps.items()}
    runs = [record("best", "global", 0.9, s, v) for s, v in enumerate(best)]
    runs += [record(m, "global", 0.9, s, v) for m, column in values.items() for s, v in enumerate(column)]
    table = tidy_table(runs).set_index("method")
    p = {m: stats.ttest_rel(column, best).pvalue for m, column in values.items()}
    assert sorted(p, key=p.get) == ["w", "z", "x", "y"]
    # Holm by hand, ascending: 4 p_w, then 3 p_z, 2 p_x, 1 p_y, each at least the one before
    holm = {"w": 4 * p["w"]}
    holm["z"] = max(holm["w"], 3 * p["z"])
    holm["x"] = max(holm["z"], 2 * p["x"])
    holm["y"] = max(holm["x"], p["y"])
    for method in values:
        assert table.loc[method, "test_vs_best"] == "paired"
        assert table.loc[method, "p_vs_best"] == pytest.approx(p[method])
        assert table.loc[method, "p_holm_vs_best"] == pytest.approx(holm[method])
    assert table["not_different_from_best"].to_dict() == {
        "best": False,
        "w": False,
        "x": True,
        "y": True,
        "z": False,
    }
    assert bool(table.loc["best", "best"])
    assert p["x"] < 0.05  # different before the correction, not after it
    assert (
        stats.ttest_ind(values["w"], best, equal_var=False).pvalue > 0.5
    )  # Welch's test finds no difference


def test_failed_runs_are_counted_not_averaged():
    table = tidy_table(
        [
            record("random", "uniform", 0.9, 0, 80.0),
            record("random", "uniform", 0.9, 1, 81.0),
            record("random", "uniform", 0.9, 2, None, status="failed"),
            record("random", "uniform", 0.9, 3, None, status="diverged"),
        ]
    )
    row = table.iloc[0]
    assert (row["n"], row["n_failed"], row["n_diverged"]) == (2, 2, 1)
    assert row["top1_mean"] == pytest.approx(80.5)


def test_a_cell_with_only_failed_runs(tmp_path):
    write_dir(
        tmp_path, [record("dense", "none", 0.0, 0, 98.0), record("lamp", "global", 0.9, 0, None, "failed")]
    )
    markdown = write_leaderboard([tmp_path], tmp_path, ["md"])
    assert "| lamp (global) | failed (1) |" in markdown
    assert "Dense baseline (top-1 %): **98.00 (n=1) ¶**" in markdown


def test_a_directory_of_dense_runs_only_has_a_leaderboard(tmp_path):
    write_dir(tmp_path, [record("dense", "none", 0.0, seed, 98.0 + seed) for seed in range(2)])
    assert grid(load_records([tmp_path])) == "no pruned runs; 2 dense runs"
    markdown = write_leaderboard([tmp_path], tmp_path, ["md"])
    assert "Dense baseline (top-1 %): **98.50" in markdown


def test_merging_two_directories_equals_one(tmp_path):
    records = fixture_records()
    write_dir(tmp_path / "a", records[:7])
    write_dir(tmp_path / "b", records[7:])
    write_dir(tmp_path / "all", records)
    merged = write_leaderboard([tmp_path / "a", tmp_path / "b"], tmp_path / "merged", ["md", "csv", "tex"])
    single = write_leaderboard([tmp_path / "all"], tmp_path / "single", ["md", "csv", "tex"])
    assert merged == single
    names = sorted(p.name for p in (tmp_path / "single").iterdir())
    assert names == [
        "leaderboard.csv",
        "leaderboard.md",
        "leaderboard.tex",
        "leaderboard_scopes.csv",
        "leaderboard_wide.csv",
        "leaderboard_wide_allocation.csv",
        "leaderboard_wide_cost.csv",
        "leaderboard_wide_scopes.csv",
    ]
    for name in names:
        assert (tmp_path / "merged" / name).read_text() == (tmp_path / "single" / name).read_text()


def test_duplicates_are_counted_once_and_reported_once(tmp_path):
    records = fixture_records()
    write_dir(tmp_path / "a", records)
    write_dir(tmp_path / "b", records[3:6])
    with pytest.warns(RecordWarning) as caught:
        loaded = load_records([tmp_path / "a", tmp_path / "b"])
    assert len(loaded) == len(records)
    duplicates = [str(w.message) for w in caught if "found more than once" in str(w.message)]
    assert len(duplicates) == 1 and duplicates[0].startswith("3 runs found more than once")
    path = tmp_path / "b" / "runs" / f"{records[3]['run_id']}.json"
    assert str(path) in duplicates[0]
    table = tidy_table(loaded)
    assert table.loc[table["method"] == "magnitude", "n"].tolist() == [3, 3, 3, 3]


def test_malformed_and_foreign_records_are_skipped_with_their_path(tmp_path):
    write_dir(tmp_path, fixture_records())
    truncated = tmp_path / "runs" / "truncated.json"
    truncated.write_text(json.dumps(record("lamp", "global", 0.5, 0, 90.0))[:60])
    foreign = tmp_path / "runs" / "foreign.json"
    foreign.write_text(json.dumps({**record("lamp", "global", 0.5, 1, 90.0), "version": RECORD_VERSION + 1}))
    missing = tmp_path / "runs" / "missing.json"
    missing.write_text(
        json.dumps({k: v for k, v in record("lamp", "global", 0.5, 2, 90.0).items() if k != "top1"})
    )
    with pytest.warns(RecordWarning) as caught:
        loaded = load_records([tmp_path])
    messages = [str(w.message) for w in caught]
    assert len(loaded) == len(fixture_records())
    assert any(str(truncated) in m and "not a readable record" in m for m in messages)
    assert any(str(foreign) in m and f"record version {RECORD_VERSION + 1}" in m for m in messages)
    assert any(str(missing) in m and "missing or wrong: top1" in m for m in messages)


def test_an_empty_directory_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no run records found"):
        write_leaderboard([tmp_path], tmp_path)


@pytest.mark.parametrize("methods", [None, ["nonexistent"]])
def test_the_garbage_collector_is_left_as_it_was_found(tmp_path, methods):
    """Reading pauses the collector and the records are kept out of it (gc.freeze) while the tables are built;
    afterwards, written or refused, it collects again with nothing frozen."""
    import gc

    write_dir(tmp_path, fixture_records())
    assert gc.isenabled() and gc.get_freeze_count() == 0
    if methods is None:
        write_leaderboard([tmp_path], tmp_path, ["md"])
    else:
        with pytest.raises(UsageError, match="not in the records"):
            write_leaderboard([tmp_path], tmp_path, ["md"], methods=methods)
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.disable()
    try:
        write_leaderboard([tmp_path], tmp_path, ["md"])
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_method_filter_keeps_the_dense_baseline(tmp_path):
    write_dir(tmp_path, fixture_records())
    markdown = write_leaderboard([tmp_path], tmp_path, ["md"], methods=["lamp"])
    assert "Dense baseline (top-1 %): **98.20 ± 0.50 (n=3)**" in markdown
    assert "magnitude (global)" not in markdown and "lamp (global)" in markdown


@pytest.mark.parametrize("kind", ["png", "svg"])
def test_plots_are_valid_files_linked_from_the_markdown(tmp_path, kind):
    write_dir(tmp_path, fixture_records())
    markdown = write_leaderboard([tmp_path], tmp_path, ["md", kind])
    plots = sorted((tmp_path / "plots").glob(f"*.{kind}"))
    assert [p.name for p in plots] == [
        f"toy_net_{name}.{kind}" for name in ("accuracy", "density", "speedup")
    ]
    for plot in plots:
        assert f"](plots/{plot.name})" in markdown
        assert plot.stat().st_size > 5000
        if kind == "png":
            assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        else:
            assert ElementTree.parse(plot).getroot().tag == "{http://www.w3.org/2000/svg}svg"
    assert "Per-layer density at sparsity 0.5" in markdown  # the lower median of {0.5, 0.9}


def test_cli_on_an_empty_directory_exits_2_with_one_line(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("bench: error: no run records found") and error.count("\n") == 1


def test_cli_reports_skipped_records_as_one_line_warnings(tmp_path, capsys):
    write_dir(tmp_path / "a", fixture_records())
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    (tmp_path / "a" / "runs" / "bad.json").write_text("{")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code = main(["leaderboard", str(tmp_path / "a"), str(tmp_path / "b"), "--format", "md"])
    assert code == 0
    lines = capsys.readouterr().err.splitlines()
    assert sum("bad.json" in line for line in lines) == 1
    duplicates = [line for line in lines if "found more than once" in line]
    assert len(duplicates) == 1 and f"warning: {len(fixture_records())} runs found" in duplicates[0]
    assert all(line.startswith("bench: warning: ") for line in lines)


def test_bootstrap_under_five_seeds_is_a_one_line_error(tmp_path, capsys):
    write_dir(tmp_path, fixture_records())
    assert main(["leaderboard", str(tmp_path), "--format", "md", "--ci", "bootstrap"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("bench: error: --ci bootstrap needs at least 5 seeds") and error.count("\n") == 1
    assert not (tmp_path / "leaderboard.md").exists()


def test_bootstrap_intervals_with_five_seeds(tmp_path):
    values = [97.0, 97.4, 96.8, 97.9, 97.2]
    write_dir(tmp_path, [record("magnitude", "global", 0.5, s, v) for s, v in enumerate(values)])
    markdown = write_leaderboard([tmp_path], tmp_path, ["md", "csv"], ci="bootstrap")
    expected = stats.bootstrap(
        (np.array(values),),
        np.mean,
        n_resamples=9999,
        method="percentile",
        random_state=np.random.default_rng(0),
    ).confidence_interval
    row = pd.read_csv(tmp_path / "leaderboard.csv").iloc[0]
    assert (row["top1_ci_low"], row["top1_ci_high"]) == pytest.approx((expected.low, expected.high))
    assert "percentile-bootstrap" in markdown


def test_runs_of_different_budgets_are_rows_of_their_own(tmp_path):
    longer = {
        **record("magnitude", "global", 0.5, 3, 97.0),
        "preset": "toy-net-long",
        "config": {"preset": "toy-net-long", "recipe": {"epochs": 8}},
        "epochs": {"budget": 8},
    }
    write_dir(tmp_path, [*fixture_records(), {**longer, "run_id": "long"}])
    markdown = write_leaderboard([tmp_path], tmp_path, ["md"])
    assert "- Budget: 4 epochs / 8 epochs of weight updates per run" in markdown
    assert (
        "| magnitude (global) | **97.20 ± 0.50** |" in markdown
    )  # the most common budget is left unlabelled
    assert "| magnitude[epochs=8] (global) | 97.00 (n=1) ¶ |" in markdown
    assert (
        "--preset toy-net-long --methods magnitude --scopes global --sparsity 0.5 --seeds 3-3 --epochs 8`"
        in markdown
    )


def test_the_commands_rerun_exactly_the_grid_present():
    runs = [
        record("magnitude", scope, sp, seed, 90.0)
        for scope in ("global", "uniform")
        for sp in (0.5, 0.9)
        for seed in range(3)
    ]
    runs += [record("lamp", "global", 0.9, seed, 90.0) for seed in (0, 1)]
    runs += [record("random", "uniform", 0.5, seed, 90.0) for seed in (0, 2)]
    runs += [record("random", "uniform", 0.9, seed, 90.0) for seed in (0, 1)]
    head = "bench run --preset toy-net --methods"
    assert commands(runs) == [
        f"{head} lamp --scopes global --sparsity 0.9 --seeds 2 --epochs 4",
        f"{head} magnitude --scopes global,uniform --sparsity 0.5,0.9 --seeds 3 --epochs 4",
        f"{head} random --scopes uniform --sparsity 0.5 --seeds 0,2 --epochs 4",
        f"{head} random --scopes uniform --sparsity 0.9 --seeds 2 --epochs 4",
    ]
    assert (
        grid(runs) == "18 pruned runs: 4 rows × 2 sparsities (7 of 8 cells), 2-3 seeds per cell; 0 dense runs"
    )


def test_methods_sharing_a_grid_share_a_command():
    runs = [record(m, "global", 0.9, seed, 90.0) for m in ("snip", "grasp") for seed in range(2)]
    runs += [record("dense", "none", 0.0, seed, 98.0) for seed in range(2)]
    assert commands(runs) == [
        "bench run --preset toy-net --methods grasp,snip --scopes global --sparsity 0.9 --seeds 2 --epochs 4"
    ]
    assert grid(runs) == "4 pruned runs: 2 rows × 1 sparsities (complete), 2 seeds per cell; 2 dense runs"


def test_the_commands_set_the_variants_and_seeds_present():
    runs = [
        {
            **record("gmp", "global", 0.9, seed, 90.0),
            "variant": variant,
            "hparams": {"end": end, "start": 0.2},
        }
        for seed in (3, 4, 5, 9)
        for variant, end in (("", 0.8), ("end=0.5", 0.5))
    ]
    runs.append(
        {
            **record("synflow", "erk", 0.9, 0, 90.0),
            "variant": "input_shape=(1, 2)",
            "hparams": {"input_shape": [1, 2], "double": True},
        }
    )
    head = "bench run --preset toy-net --methods"
    assert commands(runs) == [
        f"{head} gmp --scopes global --sparsity 0.9 --seeds 3-5,9 --epochs 4",
        f"{head} gmp --scopes global --sparsity 0.9 --seeds 3-5,9 --epochs 4 --set gmp.end=0.5",
        f"{head} synflow --scopes erk --sparsity 0.9 --seeds 1 --epochs 4 --set synflow.input_shape=(1,2)",
    ]


def test_the_leaderboard_does_not_import_torch(tmp_path):
    write_dir(tmp_path, fixture_records())
    script = (
        "import sys\n"
        "from prunebench.cli import main\n"
        "assert main(['leaderboard', sys.argv[1], '--format', 'md,csv,tex,png']) == 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "plots" / "toy_net_accuracy.png").exists()


def test_scope_differences_against_a_hand_computation():
    runs = [
        *(record("snip", "global", 0.9, s, v) for s, v in enumerate([90.0, 91.0, 92.5])),
        *(record("snip", "erk", 0.9, s, v) for s, v in enumerate([89.0, 90.5, 91.5])),
        *(record("snip", "uniform", 0.9, s, v) for s, v in enumerate([80.0, 85.0, 83.0])),
        record("snip", "global", 0.95, 0, 88.0),  # no other scope at 0.95: no difference
        *(record("lamp", "global", 0.9, s, 90.0) for s in range(3)),  # one scope: not compared
        *(record("random", "global", 0.9, s, v) for s, v in enumerate([88.0, 89.0, 90.0])),
        *(record("random", "uniform", 0.9, s, v) for s, v in enumerate([86.0, 86.5])),  # seeds 0, 1 only
    ]
    found = scope_comparisons(runs)
    rows = {(r.method, r.scope_a, r.scope_b): r for r in found.itertuples()}
    assert list(rows) == [
        ("random", "global", "uniform"),
        ("snip", "global", "erk"),
        ("snip", "global", "uniform"),
        ("snip", "erk", "uniform"),
    ]
    # by hand: the differences seed by seed, their mean, sd and the paired t interval and p (df = 2)
    t975 = stats.t.ppf(0.975, 2)
    paired = {
        ("snip", "global", "erk"): [1.0, 0.5, 1.0],
        ("snip", "global", "uniform"): [10.0, 6.0, 9.5],
        ("snip", "erk", "uniform"): [9.0, 5.5, 8.5],
    }
    p = {}
    for key, differences in paired.items():
        mean, sd = statistics.mean(differences), statistics.stdev(differences)
        row = rows[key]
        assert (row.test, row.n, row.difference) == ("paired", 3, pytest.approx(mean))
        assert (row.ci_low, row.ci_high) == pytest.approx(
            (mean - t975 * sd / 3**0.5, mean + t975 * sd / 3**0.5)
        )
        p[key] = 2 * stats.t.sf(abs(mean) / (sd / 3**0.5), 2)
        assert row.p == pytest.approx(p[key])
    welch = rows[("random", "global", "uniform")]
    reference = stats.ttest_ind([88.0, 89.0, 90.0], [86.0, 86.5], equal_var=False)
    assert (welch.test, welch.n, welch.difference) == ("welch", 2, pytest.approx(89.0 - 86.25))
    assert welch.p == pytest.approx(reference.pvalue)
    p[("random", "global", "uniform")] = reference.pvalue
    # Holm over the column's four p-values, by hand: ascending, times 4, 3, 2, 1, never decreasing
    order = sorted(p, key=p.get)
    expected, running = {}, 0.0
    for rank, key in enumerate(order):
        running = max(running, min(1.0, (4 - rank) * p[key]))
        expected[key] = running
    for key, row in rows.items():
        assert row.p_holm == pytest.approx(expected[key])
        assert row.significant == (expected[key] < 0.05)
    table = scope_table(found)
    assert [[c.text for c in row[:2]] for row in table.rows] == [
        ["random", "global − uniform"],
        ["snip", "global − ERK"],
        ["snip", "global − uniform"],
        ["snip", "ERK − uniform"],
    ]
    cell = table.rows[2][2]
    half = t975 * statistics.stdev(paired[("snip", "global", "uniform")]) / 3**0.5
    assert cell.text == f"+8.50 ± {half:.2f}" and cell.bold == bool(
        expected[("snip", "global", "uniform")] < 0.05
    )
    assert table.rows[0][2].text.endswith("(n=2, unpaired)")
    assert table.groups == [0, 1]


def test_learned_allocations_beside_the_erk_arithmetic_by_hand():
    table = allocation_table(fixture_records(), 0.5)
    assert table.header == ["layer", "weights", "uniform", "ERK", "global (magnitude)", "str"]
    # ERK by hand: raw densities (4 + 25) / 100 and (10 + 30) / 300, scaled to keep 200 of the 400 weights
    scale = 200 / (0.29 * 100 + (40 / 300) * 300)
    erk = [0.29 * scale, 40 / 300 * scale]
    assert [[c.text for c in row] for row in table.rows] == [
        ["conv", "100", "0.5", f"{erk[0]:.3g}", "1", "0.8"],
        ["fc", "300", "0.5", f"{erk[1]:.3g}", f"{1 / 3:.3g}", "0.4"],
    ]
    assert allocation_table(fixture_records(), 0.9) is None  # no learned allocation at 0.9


def test_variants_are_rows_and_criteria_of_their_own(tmp_path):
    runs = [record("probmask", "learned", 0.5, s, 97.0 + s / 10) for s in range(3)]
    runs += [
        {**record("probmask", "learned", 0.5, s, 96.0 + s / 10), "variant": "samples=4", "run_id": f"v{s}"}
        for s in range(3)
    ]
    write_dir(tmp_path, runs)
    markdown = write_leaderboard([tmp_path], tmp_path, ["md"])
    assert "| probmask (learned) |" in markdown and "| probmask[samples=4] (learned) |" in markdown
    table = tidy_table(load_records([tmp_path]))
    assert table["variant"].tolist() == ["", "samples=4"]


def test_latex_tables_are_booktabs_with_escapes():
    table = Table(
        "accuracy",
        "Top-1 (%) & more",
        ["method (scope)", "0.9 (10×)"],
        [
            [Cell("magnitude_init (uniform_plus)"), Cell("94.53 ± 0.57", bold=True, marks="† ¶")],
            [Cell("a"), Cell("1")],
        ],
        notes="**Bold**: the best; `p_holm` < 5%.",
        items=["str (learned): 3 of 3 runs"],
        groups=[0, 1],
    )
    latex = to_latex(table, "tab:x")
    assert latex.splitlines() == [
        r"\begin{table}[htbp]",
        r"\centering",
        r"\small",
        r"\caption{Top-1 (\%) \& more}",
        r"\label{tab:x}",
        r"\begin{tabular}{lr}",
        r"\toprule",
        r"method (scope) & 0.9 (10$\times$) \\",
        r"\midrule",
        r"magnitude\_init (uniform\_plus) & \textbf{94.53 $\pm$ 0.57}\textsuperscript{\dag{}\P{}} \\",
        r"\midrule",
        r"a & 1 \\",
        r"\bottomrule",
        r"\end{tabular}",
        r"\par\smallskip",
        r"{\footnotesize \textbf{Bold}: the best; \texttt{p\_holm} $<$ 5\%. str (learned): 3 of 3 runs.}",
        r"\end{table}",
    ]


def test_the_latex_file_holds_every_table_of_the_markdown(tmp_path):
    write_dir(tmp_path, fixture_records())
    markdown = write_leaderboard([tmp_path], tmp_path, ["md", "tex"], top5=True)
    latex = (tmp_path / "leaderboard.tex").read_text()
    titles = [line[4:] for line in markdown.splitlines() if line.startswith("### ")]
    assert titles == [
        "Global versus layer-wise allocation: top-1 difference between scopes",
        "Learned allocations at sparsity 0.5: density per layer",
        "Top-1 accuracy (%)",
        "Top-5 accuracy (%)",
        "Compression ratio / theoretical speedup",
    ]
    assert latex.count(r"\begin{table}") == latex.count(r"\bottomrule") == len(titles)
    for name in ("scopes", "allocation", "accuracy", "top5", "cost"):
        assert rf"\label{{tab:toy_net-{name}}}" in latex
    assert r"\textbf{+3.80 $\pm$ 0.66}" in latex
    assert r"Erd\H{o}s-R\'enyi" in latex and latex.isascii()  # compiles whatever the input encoding
    assert "| magnitude (global) | 100.00 ± 0.00 | 100.00 ± 0.00 |" in markdown  # the top-5 table


def test_unknown_methods_are_a_one_line_error(tmp_path, capsys):
    write_dir(tmp_path, fixture_records())
    assert main(["leaderboard", str(tmp_path), "--methods", "lamp,nosuch"]) == 2
    error = capsys.readouterr().err
    assert (
        error
        == "bench: error: --methods nosuch: not in the records; methods present: lamp, magnitude, random, str\n"
    )


def test_density_at_a_sparsity_the_grid_lacks_is_a_one_line_error(tmp_path, capsys):
    write_dir(tmp_path, fixture_records())
    assert main(["leaderboard", str(tmp_path), "--density-at", "0.95"]) == 2
    error = capsys.readouterr().err
    assert (
        error
        == "bench: error: --density-at 0.95: toy / net has no runs at that sparsity; sparsities present: 0.5, 0.9\n"
    )
    assert main(["leaderboard", str(tmp_path), "--density-at", "0.9", "--format", "md,png"]) == 0
    assert "Per-layer density at sparsity 0.9" in (tmp_path / "leaderboard.md").read_text()


def test_no_two_series_of_a_panel_share_a_style_and_scopes_keep_their_colour():
    runs = fixture_records()
    for scope in ("erk", "uniform_plus", "mystery", "other"):  # two scopes the palette does not know
        runs += [record("magnitude", scope, sp, s, 90.0 + s) for sp in (0.5, 0.9) for s in range(3)]
    sections = build_sections(tidy_table(runs), scope_comparisons(runs), runs, "t")
    figures = [accuracy_figure(sections[0]), speedup_figure(sections[0]), density_figure(sections[0])]
    colours: dict[str, set[str]] = {}
    try:
        for figure in figures:
            for axes in figure.axes:
                lines = axes.get_lines()
                styles = [
                    (to_hex(line.get_color()), line.get_marker(), line.get_linestyle()) for line in lines
                ]
                assert len(styles) == len(set(styles)), styles
                for line in lines:
                    colours.setdefault(line.get_label(), set()).add(to_hex(line.get_color()))
    finally:
        for figure in figures:
            pyplot.close(figure)
    for scope, style in SCOPE_STYLES.items():
        if scope in colours:
            assert colours[scope] == {to_hex(style["color"])}
    assert {"mystery", "other", "erk", "uniform_plus", "uniform", "learned", "dense"} <= set(colours)


def test_a_single_sparsity_grid_draws_without_warnings(tmp_path):
    write_dir(tmp_path, [record(m, "global", 0.9, s, 90.0 + s) for m in ("lamp", "snip") for s in range(3)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_leaderboard([tmp_path], tmp_path, ["png"])
    assert sorted(p.name for p in (tmp_path / "plots").glob("*.png")) == [
        "toy_net_accuracy.png",
        "toy_net_density.png",
        "toy_net_speedup.png",
    ]


def test_figures_are_drawn_again_only_when_what_they_show_changed(tmp_path, monkeypatch):
    records = [record(m, "global", 0.9, s, 90.0 + s) for m in ("lamp", "snip") for s in range(3)]
    write_dir(tmp_path, records)
    write_leaderboard([tmp_path], tmp_path, ["png"])
    drawn = []
    original = plots.accuracy_figure
    monkeypatch.setattr(plots, "accuracy_figure", lambda section: drawn.append(1) or original(section))
    write_leaderboard([tmp_path], tmp_path, ["png", "md"])  # same records: the figures are kept
    assert drawn == []
    (tmp_path / "plots" / "toy_net_speedup.png").unlink()  # a figure gone: drawn again
    write_leaderboard([tmp_path], tmp_path, ["png"])
    assert drawn == [1] and (tmp_path / "plots" / "toy_net_speedup.png").exists()
    write_dir(tmp_path, [record("lamp", "global", 0.9, 3, 97.0)])  # one more seed: drawn again
    write_leaderboard([tmp_path], tmp_path, ["png"])
    assert drawn == [1, 1]


def test_the_tables_are_written_before_the_figures(tmp_path, monkeypatch):
    write_dir(tmp_path, fixture_records())

    def broken(*args, **kwargs):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(plots, "write_figures", broken)
    with pytest.raises(RuntimeError, match="figure failed"):
        write_leaderboard([tmp_path], tmp_path, ["md", "csv", "tex", "png"])
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard_wide.csv", "leaderboard.tex"):
        assert (tmp_path / name).stat().st_size > 0


def test_long_rotated_layer_names_stay_inside_the_figure_and_above_the_legend():
    runs = fixture_records()
    for run in runs:
        for index, layer in enumerate(run.get("layers", [])):  # alike at the end: not shortened, rotated
            layer["name"] = f"encoder.layers.{index}.self_attn.in_proj_weight"
    figure = density_figure(build_sections(tidy_table(runs), scope_comparisons(runs), runs, "t")[0])
    try:
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        texts = [
            text
            for axes in figure.axes
            for text in [*axes.get_xticklabels(), axes.xaxis.label]
            if text.get_visible() and text.get_text()
        ]
        assert any(text.get_text().startswith("encoder.layers.") for text in texts)
        boxes = [text.get_window_extent(renderer) for text in texts]
        legend = figure.legends[0].get_window_extent(renderer)
        assert min(box.x0 for box in boxes) >= 0
        assert min(box.y0 for box in boxes) >= legend.y1
    finally:
        pyplot.close(figure)


def test_layer_names_are_the_models_own_shortened_where_long():
    assert short_labels(["features.0.weight", "classifier.weight"]) == ["features.0", "classifier"]
    long = ["encoder.layers.11.self_attn.out_proj.weight", "encoder.layers.11.linear1.weight"]
    assert short_labels(long) == ["…self_attn.out_proj", "…layers.11.linear1"]
    same_end = ["encoder.layers.10.self_attn.in_proj_weight", "encoder.layers.11.self_attn.in_proj_weight"]
    assert short_labels(same_end) == same_end  # shortened they would read alike


def test_an_infinite_speedup_is_left_out_of_the_speedup_figure():
    runs = [record("lamp", "global", sp, s, 90.0) for sp in (0.5, 0.9) for s in range(2)]
    runs += [{**record("lamp", "global", 0.99, s, 10.0), "speedup": math.inf} for s in range(2)]
    section = build_sections(tidy_table(runs), scope_comparisons(runs), runs, "t")[0]
    figure = speedup_figure(section)
    try:
        (line,) = figure.axes[0].get_lines()
        assert list(line.get_xdata()) == pytest.approx([2.0, 10.0])
    finally:
        pyplot.close(figure)


def test_intervals_in_the_csv_and_the_table_are_clipped_to_0_100(tmp_path):
    write_dir(tmp_path, [record("random", "global", 0.99, s, v) for s, v in enumerate([2.0, 40.0])])
    markdown = write_leaderboard([tmp_path], tmp_path, ["md", "csv"])
    row = pd.read_csv(tmp_path / "leaderboard.csv").iloc[0]
    low, high = stats.t.interval(0.95, 1, loc=21.0, scale=stats.sem([2.0, 40.0]))
    assert low < 0 and high > 100
    assert (row["top1_ci_low"], row["top1_ci_high"]) == (0.0, 100.0)
    assert "| random (global) | **21.00 [0.00, 100.00]** ¶ |" in markdown  # two seeds: flagged ¶


def test_the_dynamic_figure_reads_each_cells_lowest_seed_at_the_density_sparsity():
    from prunebench.leaderboard.plots import density_histories

    def record(seed, sparsity, scope="global", status="ok", details=True):
        history = {"update_steps": [0, 20], "layer_density": {"a": [0.1 * seed, 0.2], "b": [0.3, 0.4]}}
        return {
            "status": status, "method": "rigl", "variant": "", "scope": scope, "seed": seed,
            "sparsity": sparsity, "method_details": history if details else {"other": 1},
        }  # fmt: skip

    records = [record(2, 0.9), record(1, 0.9), record(0, 0.9, status="failed"), record(0, 0.95)]
    records += [record(0, 0.9, scope="uniform", details=False)]
    found = density_histories(records, 0.9)
    assert list(found) == [("rigl", "", "global")]  # no history in the uniform run, the failed run skipped
    assert found[("rigl", "", "global")] == {"steps": [0, 20], "layers": {"a": [0.1, 0.2], "b": [0.3, 0.4]}}
    assert density_histories(records, 0.99) == {}
