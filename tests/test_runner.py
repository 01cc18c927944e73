"""End-to-end runs on the synthetic preset: exact sparsity, determinism, resume, failures."""

from __future__ import annotations

import json

import pytest
import torch

from prunebench.grid.experiment import Experiment
from prunebench.grid.grid_run import run_grid
from prunebench.grid.result_store import ResultStore
from prunebench.methods.base import ScoringMethod
from prunebench.run.run_config import RunConfig

CPU = torch.device("cpu")


def _grid(methods: str, scopes: str = "all", sparsities=(0.9,), seeds: int = 1) -> list[RunConfig]:
    experiment = Experiment(
        preset="synthetic-tiny", methods=methods, scopes=scopes, sparsity=list(sparsities), seeds=seeds
    )
    experiment.set("recipe", "epochs", [2])
    return experiment.configs()


def test_every_finished_run_reaches_its_target_sparsity(tmp_path):
    configs = _grid("random,magnitude,lamp", sparsities=(0.8, 0.95))
    records = run_grid(configs, ResultStore(tmp_path), CPU)
    assert {r["status"] for r in records} == {"ok"}
    for record in records:
        if record["method"] == "dense":
            assert record["achieved_sparsity"] == 0.0
            continue
        expected_kept = round(record["prunable_weights"] * (1 - record["sparsity"]))
        assert record["prunable_nonzero"] == expected_kept
        layers_nonzero = sum(layer["nonzero"] for layer in record["layers"])
        assert layers_nonzero == expected_kept


def test_same_seed_gives_identical_records(tmp_path):
    configs = _grid("magnitude,random", scopes="global")
    first = run_grid(configs, ResultStore(tmp_path / "a"), CPU)
    second = run_grid(configs, ResultStore(tmp_path / "b"), CPU)
    for a, b in zip(first, second, strict=True):
        assert a["run_id"] == b["run_id"]
        for key in ("top1", "top5", "loss", "achieved_sparsity", "layers"):
            assert a[key] == b[key], key


def test_a_different_seed_gives_different_weights(tmp_path):
    configs = _grid("random", scopes="uniform", seeds=2)
    records = [r for r in run_grid(configs, ResultStore(tmp_path), CPU) if r["method"] == "random"]
    assert records[0]["loss"] != records[1]["loss"]


def test_rerun_skips_finished_runs_and_force_reruns_them(tmp_path):
    store = ResultStore(tmp_path)
    configs = _grid("magnitude", scopes="uniform")
    assert len(run_grid(configs, store, CPU)) == len(configs)
    assert run_grid(configs, store, CPU) == []
    assert len(run_grid(configs, store, CPU, force=True)) == len(configs)


def test_dense_pretraining_is_shared_through_the_cache(tmp_path):
    store = ResultStore(tmp_path)
    run_grid(_grid("magnitude,lamp", sparsities=(0.9, 0.95)), store, CPU)
    assert len(list((tmp_path / "cache").glob("dense-*.pt"))) == 1


class _Exploding(ScoringMethod):
    """Raises while scoring."""

    def scores(self, model, weights, data):
        raise RuntimeError("boom")


def test_a_failing_method_is_recorded_and_the_grid_goes_on(tmp_path, method_registry):
    method_registry.register("exploding", schedule="at_init", scopes=("global",), paper="test")(_Exploding)
    configs = _grid("exploding,magnitude", scopes="global")
    records = run_grid(configs, ResultStore(tmp_path), CPU)
    by_method = {r["method"]: r for r in records}
    assert by_method["exploding"]["status"] == "failed"
    assert "boom" in by_method["exploding"]["error"]
    assert by_method["magnitude"]["status"] == "ok"
    saved = json.loads((tmp_path / "runs" / f"{by_method['exploding']['run_id']}.json").read_text())
    assert saved["status"] == "failed"
    # a failed run is retried by the next invocation
    assert [r["method"] for r in run_grid(configs, ResultStore(tmp_path), CPU)] == ["exploding"]


def test_run_ids_are_stable_and_distinct():
    configs = _grid("magnitude", sparsities=(0.9, 0.95), seeds=2)
    ids = [c.run_id for c in configs]
    assert len(set(ids)) == len(ids)
    assert ids == [c.run_id for c in _grid("magnitude", sparsities=(0.9, 0.95), seeds=2)]


def test_records_are_written_atomically(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    configs = _grid("magnitude", scopes="global")

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    run_grid(configs[:1], store, CPU)
    monkeypatch.setattr("prunebench.run.runner.execute", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_grid(configs, store, CPU)
    files = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert files == [
        f"{configs[0].run_id}.curves.csv",
        f"{configs[0].run_id}.json",
        f"{configs[0].run_id}.outcomes.npz",
    ]  # the dense run: no mask


def test_worker_processes_run_the_grid_with_one_shared_pretraining(tmp_path):
    configs = _grid("magnitude,lamp", scopes="global", sparsities=(0.9, 0.95))
    records = run_grid(configs, ResultStore(tmp_path), CPU, jobs=2)
    assert sorted(r["run_id"] for r in records) == sorted(c.run_id for c in configs)
    assert {r["status"] for r in records} == {"ok"}
    for record in records:
        if record["method"] != "dense":
            assert record["prunable_nonzero"] == round(record["prunable_weights"] * (1 - record["sparsity"]))
    assert len(list((tmp_path / "cache").glob("dense-*.pt"))) == 1
    assert run_grid(configs, ResultStore(tmp_path), CPU, jobs=2) == []


def test_records_and_the_cache_get_ordinary_file_permissions(tmp_path):
    import os

    run_grid(_grid("magnitude", scopes="global"), ResultStore(tmp_path), CPU)
    umask = os.umask(0)
    os.umask(umask)
    files = [*(tmp_path / "runs").glob("*.json"), *(tmp_path / "cache").glob("*.pt")]
    assert files and all((f.stat().st_mode & 0o777) == (0o666 & ~umask) for f in files)
