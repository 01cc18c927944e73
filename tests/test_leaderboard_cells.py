"""A leaderboard cell pools runs that differ in their seed only, and its printed commands rerun exactly its runs."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pandas as pd
import pytest
import torch

from prunebench.cli import _experiment, build_parser, main
from prunebench.core.errors import UsageError
from prunebench.grid.grid_choices import parse_seeds
from prunebench.grid.grid_run import run_grid
from prunebench.grid.grid_status import grid_status
from prunebench.grid.result_store import ResultStore
from prunebench.leaderboard import write_leaderboard
from prunebench.leaderboard.plots import accuracy_figure
from prunebench.leaderboard.provenance import commands
from prunebench.leaderboard.record_reader import load_records
from prunebench.leaderboard.scopes import scope_comparisons
from prunebench.leaderboard.sections import build_sections
from prunebench.leaderboard.setups import label_setups
from prunebench.leaderboard.tidy_table import tidy_table
from prunebench.run.record_head import record_head
from prunebench.run.run_config import RunConfig

CPU = torch.device("cpu")
GRID = ["--preset", "synthetic-tiny", "--methods", "magnitude", "--scopes", "global", "--sparsity", "0.9"]
GRID += ["--seeds", "0,2"]
SETUPS = {
    "": [],
    "epochs=3": ["--epochs", "3"],
    "recipe.optim.lr=0.1": ["--set", "recipe.optim.lr=0.1"],
    "recipe.batch_size=32": ["--set", "recipe.batch_size=32"],
    "keep_first_dense": ["--keep-first-dense"],
}
"""The issue's runs of one method, scope and sparsity that differ in more than their seed, by the row label each
should get (the synthetic-tiny preset's recipe unlabelled)."""


def configs_of(flags: list[str]) -> list[RunConfig]:
    """The runs ``bench run FLAGS`` plans (nothing is trained)."""
    return _experiment(build_parser().parse_args(["run", *flags])).configs()


def record_of(config: RunConfig, top1: float) -> dict:
    """A finished run's record, as the runner writes it and the leaderboard reads it, with made-up results."""
    density = 1.0 - config.sparsity
    head = json.loads(json.dumps(record_head(config, torch.device("cpu"), "ok", 1.0)))
    return {
        **head,
        "finished_at": "2026-01-01T00:00:00+00:00",
        "top1": top1,
        "top5": 100.0,
        "loss": 0.1,
        "train_loss": 0.1,
        "achieved_sparsity": config.sparsity,
        "prunable_weights": 100,
        "prunable_nonzero": round(100 * density),
        "params_total": 100,
        "params_nonzero": round(100 * density),
        "compression_ratio": 1 / density,
        "flops_dense": 1000.0,
        "flops_sparse": 1000.0 * density,
        "speedup": 1 / density,
        "min_layer_density": density,
        "collapsed": False,
        "layers": [
            {
                "name": "fc.weight",
                "shape": [10, 10],
                "size": 100,
                "nonzero": round(100 * density),
                "density": density,
                "flops_dense": 1000.0,
                "flops_sparse": 1000.0 * density,
            }
        ],
        "method_sparsity": None,
        "enforcement": None,
        "method_details": None,
        "epochs": {"budget": config.recipe.epochs},
        "loader": "memory",
        "precision": "fp32",
    }


def write_runs(root: Path, records: list[dict]) -> Path:
    (root / "runs").mkdir(parents=True, exist_ok=True)
    for r in records:
        (root / "runs" / f"{r['run_id']}.json").write_text(json.dumps(r))
    return root


def printed_commands(markdown: str) -> list[str]:
    return re.findall(r"^- Command: `(bench run [^`]*)`$", markdown, re.M)


def read_cells(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "leaderboard.csv", keep_default_na=False)


def assert_commands_rerun_exactly(markdown: str, results: Path) -> None:
    """Each printed command finds every one of its runs done, and together they plan every run recorded."""
    planned = set()
    for command in printed_commands(markdown):
        configs = configs_of(shlex.split(command)[2:])
        assert grid_status(results, configs).pending == 0, command
        planned |= {c.run_id for c in configs}
    assert planned == {p.stem for p in (results / "runs").glob("*.json")}


def test_a_directory_run_at_two_budgets_has_two_cells_and_commands_that_rerun_nothing(tmp_path, capsys):
    results = tmp_path / "results"
    grid = ["--preset", "synthetic-tiny", "--methods", "gmp", "--scopes", "global", "--sparsity", "0.9"]
    for epochs in ("2", "3"):  # trained for real, as `bench run ... --epochs N --out results` does
        run_grid(configs_of([*grid, "--seeds", "0,2", "--epochs", epochs]), ResultStore(results), CPU)
    markdown = write_leaderboard([results], tmp_path / "board", ["md", "csv"])
    cells = read_cells(tmp_path / "board")
    for method in ("gmp", "dense"):
        found = cells[cells["method"] == method].sort_values("variant")
        assert found["variant"].tolist() == ["epochs=2", "epochs=3"]  # both differ from the preset's 4
        assert found["n"].tolist() == [2, 2]
    assert "| gmp[epochs=2] (global) |" in markdown and "| gmp[epochs=3] (global) |" in markdown
    assert "2 seeds per cell" in markdown
    printed = printed_commands(markdown)
    assert len(printed) == 2 and all("--seeds 0,2" in c for c in printed)
    for command in printed:
        capsys.readouterr()
        assert main(["status", str(results), *shlex.split(command)[2:]]) == 0
        assert "pending 0" in capsys.readouterr().out
    assert_commands_rerun_exactly(markdown, results)


def test_runs_that_differ_in_recipe_or_prunable_options_are_rows_of_their_own(tmp_path):
    records = [
        record_of(config, 90.0 + index + config.seed / 10)
        for index, flags in enumerate(SETUPS.values())
        for config in configs_of([*GRID, *flags])
    ]
    results = write_runs(tmp_path / "results", records)
    markdown = write_leaderboard([results], tmp_path / "board", ["md", "csv"])
    cells = read_cells(tmp_path / "board")
    for method in ("magnitude", "dense"):
        found = cells[cells["method"] == method]
        assert sorted(found["variant"]) == sorted(SETUPS)
        assert found["n"].tolist() == [2] * len(SETUPS)
    for label in SETUPS:
        row = f"magnitude[{label}]" if label else "magnitude"
        assert f"| {row} (global) |" in markdown
    assert "Dense baseline (top-1 %): dense: **" in markdown and "; dense[keep_first_dense]: **" in markdown
    assert_commands_rerun_exactly(markdown, results)


def test_distinct_setups_get_distinct_labels_without_the_fields_others_determine():
    base = configs_of([*GRID, "--seeds", "1"])[1]

    def labels(recipes: list[tuple[int, int, float]]) -> list[str]:
        """The row labels of runs of ``base`` with (epochs, finetune_epochs, lr) changed."""
        records = []
        for epochs, finetune, lr in recipes:
            record = record_of(base, 90.0)
            record["config"]["recipe"].update(epochs=epochs, finetune_epochs=finetune)
            record["config"]["recipe"]["optim"] = {**record["config"]["recipe"]["optim"], "lr": lr}
            records.append(record)
        label_setups(records)
        return [r["_row_variant"] for r in records]

    # finetune_epochs follows epochs here: not labelled
    three = [(4, 1, 0.05), (3, 2, 0.05), (3, 2, 0.1)]
    assert labels(three) == ["", "epochs=3", "epochs=3,recipe.optim.lr=0.1"]
    found = labels([*three, (3, 1, 0.05)])  # now it no longer does
    assert len(set(found)) == 4
    assert found == [
        "",
        "epochs=3,recipe.finetune_epochs=2",
        "epochs=3,recipe.finetune_epochs=2,recipe.optim.lr=0.1",
        "epochs=3",
    ]


def test_each_row_is_drawn_with_the_dense_baseline_of_its_own_setup(tmp_path):
    records = [
        record_of(config, {"dense": 98.0, "magnitude": 90.0}[config.method] - 10 * index)
        for index, flags in enumerate((["--epochs", "3"], ["--epochs", "5"]))
        for config in configs_of([*GRID, *flags])
    ]
    label_setups(records)
    cells = tidy_table(records)
    (section,) = build_sections(cells, scope_comparisons(records), records, "t")
    figure = accuracy_figure(section)
    dense_lines = {
        axes.get_title(): [line.get_ydata()[0] for line in axes.get_lines() if line.get_label() == "dense"]
        for axes in figure.axes
        if axes.get_title()
    }
    assert dense_lines == {"magnitude[epochs=3]": [98.0], "magnitude[epochs=5]": [88.0]}


def test_records_of_one_run_that_disagree_are_refused_naming_both_files(tmp_path, capsys):
    config = configs_of([*GRID, "--seeds", "1"])[1]
    first = write_runs(tmp_path / "a", [record_of(config, 39.45)])
    second = write_runs(tmp_path / "b", [record_of(config, 0.01)])
    for order in ([first, second], [second, first]):
        with pytest.raises(UsageError) as caught:
            load_records(order)
        message = str(caught.value)
        assert config.run_id in message and "39.45" in message and "0.01" in message
        assert all(str(d / "runs" / f"{config.run_id}.json") in message for d in order)
    assert main(["leaderboard", str(first), str(second), "--out", str(tmp_path / "board")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "disagree" in error


def test_two_runs_of_one_cell_and_seed_that_nothing_tells_apart_are_refused(tmp_path):
    config = configs_of([*GRID, "--seeds", "1"])[1]
    twins = [{**record_of(config, top1), "run_id": run_id} for run_id, top1 in (("one", 90.0), ("two", 80.0))]
    results = write_runs(tmp_path, twins)
    with pytest.raises(UsageError, match="seed 0 whose configurations do not tell them apart") as caught:
        write_leaderboard([results], tmp_path / "board", ["md"])
    assert str(results / "runs" / "one.json") in str(caught.value)
    assert str(results / "runs" / "two.json") in str(caught.value)


def test_a_single_seed_is_printed_as_a_range_not_as_a_count():
    config = configs_of([*GRID, "--seeds", "3-3"])[1]
    (command,) = commands([record_of(config, 90.0)])
    seeds = shlex.split(command)[shlex.split(command).index("--seeds") + 1]
    assert parse_seeds(seeds) == [3]
