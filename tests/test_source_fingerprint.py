"""Source fingerprints in records: resume says when a method's or the harness's code changed under one version."""

from __future__ import annotations

import importlib
import json
import sys
import warnings

import pytest
import torch

from prunebench.grid.experiment import Experiment
from prunebench.grid.grid_run import run_grid
from prunebench.grid.result_store import ResultStore
from prunebench.methods.method_registry import get_method
from prunebench.run import source_fingerprint
from prunebench.run.run_config import HARNESS_VERSION, RunConfig
from prunebench.run.run_record import problem

CPU = torch.device("cpu")

PACKAGE = "fingerprinted_methods"
METHOD = '''
from fingerprinted_methods.helpers import absolute
from prunebench.methods.base import ScoringMethod


class EditedMagnitude(ScoringMethod):
    """|w| at initialization, from a file the tests edit."""

    def scores(self, model, weights, data):
        return {name: absolute(w) for name, w in weights.items()}
'''
HELPERS = """
def absolute(weight):
    return weight.detach().abs()
"""


@pytest.fixture
def edited(tmp_path, monkeypatch, method_registry):
    """A method of another package, ``edited`` (its class in ``method.py``, a helper in ``helpers.py``), and a
    fresh fingerprint cache: each test stands for a new process."""
    root = tmp_path / "src" / PACKAGE
    root.mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "method.py").write_text(METHOD)
    (root / "helpers.py").write_text(HELPERS)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    module = importlib.import_module(f"{PACKAGE}.method")
    method_registry.register("edited", schedule="at_init", scopes=("global",), paper="test")(
        module.EditedMagnitude
    )
    source_fingerprint._fingerprint.cache_clear()
    yield root
    source_fingerprint._fingerprint.cache_clear()
    for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
        del sys.modules[name]


def _grid(methods: str, sparsities=(0.9,)):
    experiment = Experiment(
        preset="synthetic-tiny", methods=methods, scopes="global", sparsity=list(sparsities), seeds=1
    )
    experiment.set("recipe", "epochs", [2])
    return experiment.configs()


def _resume(configs, store, about: str = "method") -> tuple[list[dict], list[str]]:
    """Run the grid again in a new process (as far as fingerprints go): its records and its warnings about a
    different source of the ``method`` or the ``harness``."""
    source_fingerprint._fingerprint.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = run_grid(configs, store, CPU)
    return records, [str(w.message) for w in caught if f"different source of the {about}" in str(w.message)]


def test_a_method_edited_without_a_version_bump_is_reused_with_one_warning(tmp_path, edited):
    configs = _grid("edited", sparsities=(0.9, 0.95))
    store = ResultStore(tmp_path / "out")
    first = run_grid(configs, store, CPU)
    assert {r["method"] for r in first} == {"dense", "edited"}
    assert _resume(configs, store) == ([], [])  # unchanged source: reused, nothing said

    (edited / "method.py").write_text(METHOD.replace("|w| at initialization", "The magnitude |w| at init"))
    records, said = _resume(configs, store)
    assert records == []  # reused, not silently: one line for the method's two records, none for dense
    assert len(said) == 1
    assert said[0].startswith("2 records of edited were written by a different source of the method")
    assert "same version (edited version 1, at_init schedule version 1)" in said[0]
    assert "bump the method's version" in said[0] and "--force" in said[0]

    assert len(run_grid(configs, store, CPU, force=True)) == len(configs)
    assert _resume(configs, store) == ([], [])  # rerun with --force: the records carry the new source


def test_an_edited_helper_of_the_method_counts_as_its_source(tmp_path, edited):
    configs = _grid("edited")
    store = ResultStore(tmp_path / "out")
    run_grid(configs, store, CPU)
    (edited / "helpers.py").write_text(HELPERS + "# a comment\n")
    assert _resume(configs, store) == (
        [],
        [
            "1 record of edited was written by a different source of the method under the same version (edited "
            "version 1, at_init schedule version 1); it is reused: bump the method's version (or its schedule's) or rerun with --force"
        ],
    )


def test_a_record_carries_the_current_fingerprints_and_stays_a_valid_record(tmp_path, edited):
    config = _grid("edited")[1]
    (record,) = run_grid([config], ResultStore(tmp_path), CPU)
    assert problem(record) is None
    assert record["source"] == {
        "method": source_fingerprint.method_fingerprint(config.spec),
        "harness": source_fingerprint.harness_fingerprint(),
    }
    assert all(len(value) == 16 and int(value, 16) >= 0 for value in record["source"].values())
    assert json.loads(ResultStore(tmp_path).path(config.run_id).read_text())["source"] == record["source"]


def _rewrite_records(store: ResultStore, change) -> None:
    for path in store.runs.glob("*.json"):
        record = json.loads(path.read_text())
        change(record)
        path.write_text(json.dumps(record))


def test_records_of_another_harness_source_are_reused_with_one_warning_naming_harness_version(tmp_path):
    configs = _grid("magnitude")
    store = ResultStore(tmp_path)
    run_grid(configs, store, CPU)
    _rewrite_records(store, lambda record: record["source"].update(harness="0" * 16))
    records, said = _resume(configs, store, about="harness")
    assert records == []
    assert said == [
        f"{len(configs)} records were written by a different source of the harness under the same HARNESS_VERSION "
        f"({HARNESS_VERSION}); they are reused: bump prunebench.run.run_config.HARNESS_VERSION if the change alters what "
        "runs compute, or rerun with --force"
    ]


def test_records_written_before_fingerprints_are_not_compared(tmp_path, edited):
    configs = _grid("edited")
    store = ResultStore(tmp_path)
    run_grid(configs, store, CPU)
    _rewrite_records(store, lambda record: record.pop("source"))
    (edited / "method.py").write_text(METHOD + "# edited\n")
    assert _resume(configs, store) == ([], [])


def test_the_method_sources_are_its_class_bases_method_helpers_and_schedule():
    movement = source_fingerprint.method_sources(get_method("movement"))
    # movement.py imports the base classes, MaskedSession and the cubic schedule from the method package
    assert {
        "prunebench.methods.movement",
        "prunebench.methods.base",
        "prunebench.methods.masked",
        "prunebench.methods.sparsity_schedules",
    } <= set(movement)
    assert movement["prunebench.methods.movement"].name == "movement.py"
    assert "prunebench.methods.method_registry" not in movement
    assert not set(movement) & set(source_fingerprint.HARNESS_MODULES)

    gmp = source_fingerprint.method_sources(get_method("gmp"))
    assert {
        "prunebench.methods.magnitude",
        "prunebench.run.gradual_schedule",
        "prunebench.run.criterion_schedules",
    } <= set(gmp)
    assert "prunebench.run.iterative_schedule" not in gmp
    snip = source_fingerprint.method_sources(get_method("snip"))
    assert "prunebench.methods._scoring" in snip and "prunebench.run.gradual_schedule" not in snip


def test_a_plugin_method_sources_include_its_own_package_helpers(edited):
    sources = source_fingerprint.method_sources(get_method("edited"))
    assert sources[f"{PACKAGE}.method"] == edited / "method.py"
    assert sources[f"{PACKAGE}.helpers"] == edited / "helpers.py"
    assert "prunebench.methods.base" in sources


def test_one_line_per_method_whatever_its_runs_and_only_for_changed_sources():
    current = source_fingerprint.harness_fingerprint()
    movement = [
        RunConfig.from_preset("synthetic-tiny", "movement", "global", s, seed)
        for s in (0.9, 0.95)
        for seed in (0, 1)
    ]
    gmp = RunConfig.from_preset("synthetic-tiny", "gmp", "global", 0.9, 0)
    finished = [(config, {"source": {"method": "0" * 16, "harness": current}}) for config in movement[:3]]
    finished += [
        (
            movement[3],
            {
                "source": {
                    "method": source_fingerprint.method_fingerprint(movement[3].spec),
                    "harness": current,
                }
            },
        ),
        (gmp, {"source": {"method": source_fingerprint.method_fingerprint(gmp.spec), "harness": current}}),
        (gmp, {"status": "ok"}),  # written before fingerprints
        (gmp, {"source": "not an object"}),
    ]
    assert source_fingerprint.stale_source_warnings(finished) == [
        "3 records of movement were written by a different source of the method under the same version (movement "
        f"version {get_method('movement').version}); they are reused: bump the method's version or rerun with --force"
    ]
