"""The leaderboard of one-shot runs: comparison groups as rows, N:M patterns as columns, perplexity lower-is-better,
and the scope table answering which allocation wins; records of the default grid keep their leaderboard exactly."""

from __future__ import annotations

import copy
import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from prunebench.leaderboard import write_leaderboard
from prunebench.leaderboard.metrics import PERPLEXITY, section_metric
from prunebench.leaderboard.plots import accuracy_figure
from prunebench.leaderboard.scopes import scope_comparisons
from prunebench.leaderboard.sections import build_sections
from prunebench.leaderboard.setups import label_setups
from prunebench.leaderboard.tidy_table import tidy_table

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "default-grid"


@pytest.fixture(scope="module")
def base() -> dict:
    """A finished pruned record of the default grid, to copy and edit."""
    for path in sorted(EXAMPLE.glob("runs/*.json")):
        record = json.loads(path.read_text())
        if record["status"] == "ok" and record["method"] != "dense":
            return record
    raise AssertionError("the default grid has no finished pruned record")


def make(base: dict, index: int, **fields) -> dict:
    """``base`` as another run: its own run id, the given fields; ``group`` both at the top level and in the
    configuration, as the runner writes it, and only when it is not ``per_layer``."""
    record = copy.deepcopy(base)
    record["run_id"] = f"{index:016x}"
    group = fields.pop("group", "per_layer")
    record.update(fields)
    if group != "per_layer":
        record["group"] = group
        record["config"]["group"] = group
    return record


def write(directory: Path, records: list[dict]) -> Path:
    (directory / "runs").mkdir(parents=True)
    for record in records:
        (directory / "runs" / f"{record['run_id']}.json").write_text(json.dumps(record))
    return directory


def board(tmp_path: Path, records: list[dict]) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """The Markdown, the tidy CSV and the scope CSV of ``records``."""
    directory = write(tmp_path / "results", records)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hand-made records: no outcome files, one setup
        markdown = write_leaderboard([directory], directory, ("md", "csv"))
    tidy = pd.read_csv(directory / "leaderboard.csv")
    scopes = pd.read_csv(directory / "leaderboard_scopes.csv")
    return markdown, tidy, scopes


def seeds(base: dict, start: int, values: list[float], field: str = "top1", **fields) -> list[dict]:
    """One record per seed 0, 1, ... with ``field`` set to each of ``values``."""
    return [make(base, start + seed, seed=seed, **{field: v}, **fields) for seed, v in enumerate(values)]


def table_row(markdown: str, label: str) -> list[str]:
    """The cells of the Markdown table row that starts with ``label``, in the first table that has it."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r}")


def table_header(markdown: str, title: str) -> list[str]:
    lines = markdown.splitlines()
    at = lines.index(f"### {title}")
    return [c.strip() for c in lines[at + 2].strip().strip("|").split("|")]


def test_runs_of_another_comparison_group_are_a_row_of_their_own_never_pooled(base, tmp_path):
    common = {"method": "wanda", "scope": "uniform", "sparsity": 0.5}
    layer = seeds(base, 0, [90.0, 91.0, 92.5], **common)
    output = seeds(base, 10, [80.0, 81.5, 82.0], group="per_output", **common)
    markdown, tidy, scopes = board(tmp_path, layer + output)
    by_group = tidy.set_index("group")
    assert list(tidy.columns[:7]) == ["dataset", "model", "method", "variant", "scope", "group", "sparsity"]
    assert by_group.loc["per_layer", "top1_mean"] == pytest.approx(np.mean([90.0, 91.0, 92.5]))
    assert by_group.loc["per_output", "top1_mean"] == pytest.approx(np.mean([80.0, 81.5, 82.0]))
    assert list(by_group["n"]) == [3, 3]
    assert table_row(markdown, "wanda · per_output (uniform)")[1].startswith("81.17 ±")
    assert table_row(markdown, "wanda (uniform)")[1].startswith("**91.17 ±")
    # the within-layer comparison: per_output - per_layer in the uniform scope, paired by seed
    [row] = scopes.to_dict("records")
    assert (row["group_a"], row["group_b"], row["scope_a"], row["scope_b"]) == (
        "per_output",
        "per_layer",
        "uniform",
        "uniform",
    )
    expected = stats.ttest_rel([80.0, 81.5, 82.0], [90.0, 91.0, 92.5])
    assert row["difference"] == pytest.approx(-10.0)
    assert row["p"] == pytest.approx(expected.pvalue)
    assert table_row(markdown, "wanda")[1] == "per_output − per_layer (uniform)"


def test_an_n_m_pattern_is_a_column_of_its_own_with_its_own_best(base, tmp_path):
    common = {"method": "magnitude", "scope": "uniform", "sparsity": 0.5}
    unstructured = seeds(base, 0, [95.0, 95.5, 96.0], **common)
    pattern = seeds(base, 10, [88.0, 89.0, 89.5], group="2:4", **common)
    other = seeds(base, 20, [93.0, 93.5, 94.5], method="wanda", scope="uniform", sparsity=0.5)
    markdown, tidy, scopes = board(tmp_path, unstructured + pattern + other)
    header = table_header(markdown, "Top-1 accuracy (%)")
    assert header == ["method (scope)", "0.5 (2×)", "2:4"]
    row = table_row(markdown, "magnitude (uniform)")
    assert row[1].startswith("**95.50 ±") and row[2].startswith("**88.83 ±")  # each column's own best
    assert table_row(markdown, "wanda (uniform)")[2] == ""
    best = tidy[tidy["best"]].set_index("group")["top1_mean"]
    assert best.to_dict() == pytest.approx({"per_layer": 95.5, "2:4": np.mean([88.0, 89.0, 89.5])})
    assert "0.5 (2×)" in table_header(
        markdown, "Which allocation wins: top-1 difference between scopes and comparison groups"
    )
    [cost] = [r for r in scopes.to_dict("records") if r["group_a"] == "2:4"]
    assert cost["group_b"] == "per_layer" and cost["difference"] == pytest.approx(np.mean([-7.0, -6.5, -6.5]))


def lm(base: dict, index: int, seed: int, perplexity: float, **fields) -> dict:
    """A language-model record: its perplexity, and top-1 as next-token accuracy."""
    return make(base, index, seed=seed, perplexity=perplexity, loss=math.log(perplexity), **fields)


def test_perplexity_means_and_intervals_are_the_seeds_t_intervals(base, tmp_path):
    values = [21.5, 24.0, 22.25]
    records = [lm(base, i, i, v, method="wanda", scope="uniform", sparsity=0.5) for i, v in enumerate(values)]
    assert section_metric(records) is PERPLEXITY and section_metric([base]) is not PERPLEXITY
    markdown, tidy, _ = board(tmp_path, records)
    [row] = tidy.to_dict("records")
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert row["perplexity_mean"] == pytest.approx(np.mean(values))
    assert row["perplexity_std"] == pytest.approx(np.std(values, ddof=1))
    assert (row["perplexity_ci_low"], row["perplexity_ci_high"]) == pytest.approx((low, high))
    assert row["metric"] == "perplexity"
    assert "### Perplexity (lower is better)" in markdown
    assert "one value per seed" in markdown and "no per-example Bernoulli outcomes" in markdown
    assert "### Next-token top-1 accuracy (%)" in markdown


def test_lower_perplexity_ranks_first_and_wins_the_scope_comparison(base, tmp_path):
    common = {"method": "wanda", "sparsity": 0.6}
    owl = [
        lm(base, i, i, p, scope="owl", top1=t, **common)
        for i, (p, t) in enumerate([(30, 20), (31, 21), (33, 19)])
    ]
    uniform = [
        lm(base, 10 + i, i, p, scope="uniform", top1=t, **common)
        for i, (p, t) in enumerate([(40, 30), (42, 31), (41, 33)])
    ]
    dense = [lm(base, 20 + i, i, 12.0 + i, method="dense", scope="uniform", sparsity=0.0) for i in range(3)]
    markdown, tidy, scopes = board(tmp_path, owl + uniform + dense)
    pruned = tidy[tidy["method"] == "wanda"].set_index("scope")
    # owl has the lower perplexity and the lower top-1: the section ranks by perplexity
    assert pruned["best"].to_dict() == {"owl": True, "uniform": False}
    assert table_row(markdown, "wanda (owl)")[1].startswith("**31.33 ±")
    assert not table_row(markdown, "wanda (uniform)")[1].startswith("**")
    [row] = scopes.to_dict("records")
    assert (row["scope_a"], row["scope_b"]) == ("owl", "uniform")
    expected = stats.ttest_rel([30, 31, 33], [40, 42, 41])
    assert row["difference"] == pytest.approx(-9.666666, abs=1e-5)
    assert row["p"] == pytest.approx(expected.pvalue)
    assert expected.pvalue < 0.05 and row["p_holm"] == pytest.approx(
        expected.pvalue
    )  # one test in its column
    assert bool(row["significant"])
    line = next(line for line in markdown.splitlines() if line.startswith("- OWL − uniform:"))
    assert "OWL significantly better in 1 of 1 (criterion, column) pairs, uniform in 0" in line
    assert table_row(markdown, "wanda")[2].startswith("**−9.67 ±")
    assert "Dense baseline (perplexity): **13.00 ±" in markdown
    assert "two_level_p" not in scopes  # perplexity has no per-example outcomes to resample


def test_a_perplexity_figure_has_a_log_axis_and_says_lower_is_better(base):
    records = [
        lm(base, 10 * s + i, i, 20 + 10 * s + i, method="wanda", scope=scope, sparsity=sparsity, **extra)
        for s, (scope, sparsity, extra) in enumerate(
            [("uniform", 0.5, {}), ("owl", 0.5, {}), ("uniform", 0.7, {}), ("uniform", 0.5, {"group": "2:4"})]
        )
        for i in range(2)
    ]
    label_setups(records)
    cells = tidy_table(records)
    [section] = build_sections(cells, scope_comparisons(records), records, "t")
    figure = accuracy_figure(section)
    try:
        axes = figure.axes[0]
        assert axes.get_yscale() == "log"
        assert "lower is better" in axes.get_ylabel()
        labels = set(axes.get_legend_handles_labels()[1])
        assert {"uniform", "owl", "uniform 2:4"} <= labels
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)


def published(root: Path) -> list[Path]:
    """The leaderboard's files and figures under ``root`` (not the records, not the figures' digest)."""
    files = [*root.glob("leaderboard*"), *root.glob("plots/*")]
    return sorted(p.relative_to(root) for p in files if not p.name.startswith("."))


def test_the_default_grid_tables_are_unchanged(tmp_path):
    """Records without groups or perplexity give the committed leaderboard's Markdown, CSV, LaTeX and figures byte
    for byte."""
    copy_dir = tmp_path / "default-grid"
    shutil.copytree(EXAMPLE / "runs", copy_dir / "runs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_leaderboard([copy_dir], copy_dir, ("md", "csv", "tex", "png"))
    written, committed = published(copy_dir), published(EXAMPLE)
    assert written == committed and len(written) > 10
    assert [p for p in written if (copy_dir / p).read_bytes() != (EXAMPLE / p).read_bytes()] == []


def test_the_controls_table_never_pools_another_comparison_group():
    """Runs of another group than per_layer (with or without controls) leave the allocation-controls table as it is."""
    from prunebench.leaderboard.controls_table import controls_table, split_controls
    from prunebench.leaderboard.record_reader import load_records

    records, controls = split_controls(load_records([EXAMPLE]))
    before = controls_table(records, controls)
    shifted = []
    for record in records + controls:
        if record["method"] == "dense":
            continue
        other = json.loads(json.dumps(record))
        other["group"] = other["config"]["group"] = "per_output"
        other["top1"] = 10.0
        shifted.append(other)
    more_records, more_controls = split_controls(shifted)
    after = controls_table(records + more_records, controls + more_controls)
    assert before is not None and after == before
