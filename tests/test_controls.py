"""Allocation controls (shuffle, reinit) and saved masks: counts, positions, weights, round trips, failures."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from prunebench.cli import main
from prunebench.config import RunConfig
from prunebench.controls import (
    parse_controls,
    phases,
    shuffle_masks,
    source_config,
    source_run_id,
    with_controls,
)
from prunebench.errors import UsageError, WriteError
from prunebench.experiment import Experiment
from prunebench.masks import MaskEnforcer
from prunebench.results import ResultStore
from prunebench.runner import initial_model, run_grid
from prunebench.saved_masks import load_mask, mask_path, pack, read_mask, unpack, write_mask

CPU = torch.device("cpu")
ODD_SHAPES = {"a": (3, 5, 7), "b": (1,), "c": (13,), "d": (2, 3, 1, 1), "e": (11, 2)}


def _random_masks(seed: int = 0, density: float = 0.3) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.rand(shape, generator=generator) < density for name, shape in ODD_SHAPES.items()}


def test_shuffle_keeps_each_layers_count_exactly_and_moves_the_positions():
    masks = _random_masks()
    masks["b"] = torch.ones(1, dtype=torch.bool)  # a dense layer stays dense
    shuffled = shuffle_masks(masks, torch.Generator().manual_seed(1))
    for name, mask in masks.items():
        assert shuffled[name].shape == mask.shape and shuffled[name].dtype == torch.bool
        assert int(shuffled[name].sum()) == int(mask.sum()), name
    big = {"w": torch.rand(40, 50, generator=torch.Generator().manual_seed(2)) < 0.1}
    moved = shuffle_masks(big, torch.Generator().manual_seed(3))["w"]
    assert int(moved.sum()) == int(big["w"].sum())
    overlap = int((moved & big["w"]).sum()) / int(big["w"].sum())
    assert overlap < 0.3  # a random draw keeps about 10% of the positions, not all of them
    again = shuffle_masks(big, torch.Generator().manual_seed(3))["w"]
    assert torch.equal(moved, again)  # seeded


def test_masks_round_trip_bit_for_bit_for_odd_shapes(tmp_path):
    masks = _random_masks(seed=4)
    assert sum(m.numel() for m in masks.values()) % 8 != 0  # the packed bits have a ragged end
    assert {k: np.array_equal(v, masks[k].numpy()) for k, v in unpack(pack(masks)).items()} == dict.fromkeys(
        masks, True
    )
    write_mask(mask_path(tmp_path, "run1"), pack(masks))
    loaded = load_mask(tmp_path, "run1")
    assert list(loaded) == list(masks)  # module order kept
    for name, mask in masks.items():
        assert loaded[name].dtype == torch.bool and torch.equal(loaded[name], mask), name
    with pytest.raises(UsageError, match="no saved mask for run nosuch"):
        read_mask(tmp_path, "nosuch")


def test_a_record_is_never_written_without_its_mask(tmp_path, monkeypatch):
    """The mask goes first: when it cannot be written, neither is the record."""
    import prunebench.saved_masks as saved

    record = json.loads(json.dumps(_FAKE_RECORD))
    record["_mask"] = pack(_random_masks())

    def full_disk(path, arrays):
        raise WriteError(28, "No space left on device", str(path))

    monkeypatch.setattr(saved, "write_mask", full_disk)
    store = ResultStore(tmp_path)
    with pytest.raises(WriteError):
        store.save(record)
    assert not store.path("r1").exists()


_FAKE_RECORD = {
    "version": 2,
    "run_id": "r1",
    "status": "failed",
    "config": {},
    "dataset": "d",
    "model": "m",
    "preset": "",
    "method": "x",
    "variant": "",
    "criterion": "x",
    "schedule": "at_init",
    "scope": "global",
    "sparsity": 0.9,
    "seed": 0,
    "hparams": {},
    "device": "cpu",
    "versions": {},
    "wall_time_s": 0.0,
    "finished_at": "",
}


def _configs(methods: str, controls=("shuffle", "reinit"), scopes: str = "global") -> list[RunConfig]:
    experiment = Experiment(
        preset="synthetic-tiny", methods=methods, scopes=scopes, sparsity=[0.9], seeds=1, controls=list(controls)
    )
    experiment.set("recipe", "epochs", [2])
    return experiment.configs()


def test_controls_are_separate_runs_with_their_sources_first_and_random_baselines_added():
    plain = Experiment(preset="synthetic-tiny", methods="snip,magnitude,str", scopes="all", sparsity=[0.9], seeds=1)
    plain.set("recipe", "epochs", [2])
    before = {c.run_id for c in plain.configs()}
    configs = _configs("snip,magnitude,str", scopes="all")
    controls = [c for c in configs if c.control]
    assert before <= {c.run_id for c in configs}  # existing ids unchanged
    assert all("control" not in c.identity for c in configs if not c.control)
    assert {c.control for c in controls} == {"shuffle", "reinit"}
    for control in controls:
        source = source_config(control)
        assert source.run_id in before and source_run_id(control) == source.run_id != control.run_id
        assert control.identity == {**source.identity, "control": control.control}
    randoms = {(c.method, c.scope) for c in configs if c.spec.criterion == "random"}
    assert ("random", "global") in randoms and ("random@after_training", "global") in randoms
    assert ("random", "uniform") in randoms  # the baseline of str's learned allocation
    assert not any(c.control for c in configs if c.spec.criterion == "random" or c.method == "dense")
    batches = phases(configs)
    assert [bool(b[0].control) for b in batches] == [False, True]
    assert all(c.control for c in batches[1]) and not any(c.control for c in batches[0])
    assert parse_controls("shuffle, reinit") == ["shuffle", "reinit"] and parse_controls("none") == []
    with pytest.raises(UsageError, match="unknown control 'invert'"):
        parse_controls("shuffle,invert")


def test_a_control_of_a_failed_or_missing_source_fails_with_a_one_line_reason(tmp_path, method_registry):
    from prunebench.methods.base import ScoringMethod

    @method_registry.register("broken_scores", schedule="at_init", scopes=("global",), paper="test")
    class Broken(ScoringMethod):
        """Fails while scoring."""

        def scores(self, model, weights, data):
            raise RuntimeError("broken on purpose\nsecond line")

    source = RunConfig.from_preset("synthetic-tiny", "broken_scores", "global", 0.9, 0, epochs=2)
    shuffle = dataclasses.replace(source, control="shuffle")
    orphan = dataclasses.replace(
        RunConfig.from_preset("synthetic-tiny", "snip", "global", 0.9, 0, epochs=2), control="reinit"
    )
    store = ResultStore(tmp_path)
    records = {r["run_id"]: r for r in run_grid([shuffle, orphan, source], store, CPU)}
    assert records[source.run_id]["status"] == "failed"
    failed = records[shuffle.run_id]
    assert failed["status"] == "failed" and failed["control"] == "shuffle"
    assert failed["error"] == (
        f"ControlError: source run {source.run_id} ({source.label}) failed: "
        "RuntimeError: broken on purpose second line"
    )
    assert records[orphan.run_id]["error"].startswith(f"ControlError: source run {source_run_id(orphan)} ")
    assert records[orphan.run_id]["error"].endswith("has not run yet; a control runs after its source")
    assert not mask_path(tmp_path, shuffle.run_id).exists()


@pytest.fixture(scope="module")
def controlled_grid(tmp_path_factory):
    """``bench run --controls shuffle,reinit`` on the embedded synthetic data, with the weights each masked
    training starts from (in run order: snip, random, snip's shuffle, snip's reinit)."""
    out = tmp_path_factory.mktemp("controls")
    starts: list[list[torch.Tensor]] = []
    original = MaskEnforcer.on_train_start

    def capture(self, trainer):
        original(self, trainer)
        starts.append([w.detach().clone() for w in self.weights])

    argv = ["run", "--preset", "synthetic-tiny", "--epochs", "2", "--methods", "snip", "--scopes", "global"]
    argv += ["--sparsity", "0.9", "--seeds", "1", "--jobs", "1", "--controls", "shuffle,reinit", "--out", str(out)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MaskEnforcer, "on_train_start", capture)
        status = main(argv)
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    return status, out, records, starts


def test_bench_run_with_controls_end_to_end(controlled_grid):
    status, out, records, starts = controlled_grid
    assert status == 0
    by = {(r["method"], r.get("control", "")): r for r in records}
    assert set(by) == {("dense", ""), ("snip", ""), ("random", ""), ("snip", "shuffle"), ("snip", "reinit")}
    assert {r["status"] for r in records} == {"ok"}
    source = by[("snip", "")]
    for control in ("shuffle", "reinit"):
        record = by[("snip", control)]
        assert record["method_details"]["source_run_id"] == source["run_id"]
        assert record["method_details"]["applied_at"] == "init"
        assert record["epochs"]["budget"] == source["epochs"]["budget"]
        assert record["prunable_nonzero"] == source["prunable_nonzero"]
    for record in records:  # every pruned run has its mask, matching its record's per-layer counts
        if record["method"] == "dense":
            assert not mask_path(out, record["run_id"]).exists()
            continue
        mask = load_mask(out, record["run_id"])
        assert [int(m.sum()) for m in mask.values()] == [layer["nonzero"] for layer in record["layers"]]
    leaderboard = (out / "leaderboard.md").read_text()
    assert "Allocation controls" in leaderboard


def test_shuffle_control_keeps_counts_and_initial_weights_and_moves_positions(controlled_grid):
    _, out, records, starts = controlled_grid
    by = {(r["method"], r.get("control", "")): r for r in records}
    source = load_mask(out, by[("snip", "")]["run_id"])
    shuffled = load_mask(out, by[("snip", "shuffle")]["run_id"])
    assert [int(m.sum()) for m in shuffled.values()] == [int(m.sum()) for m in source.values()]
    assert any(not torch.equal(shuffled[n], source[n]) for n in source)
    config = RunConfig.from_preset("synthetic-tiny", "snip", "global", 0.9, 0, epochs=2)
    initial = [w.detach() for w in initial_model(config, CPU).parameters() if w.dim() > 1]
    assert len(starts) == 4
    for start, weight, name in zip(starts[2], initial, source, strict=True):
        assert torch.equal(start != 0, shuffled[name])  # trains from the seed's initial weights, masked
        assert torch.equal(start[shuffled[name]], weight[shuffled[name]])


def test_reinit_control_keeps_the_mask_exactly_and_redraws_the_weights(controlled_grid):
    _, out, records, starts = controlled_grid
    by = {(r["method"], r.get("control", "")): r for r in records}
    source = load_mask(out, by[("snip", "")]["run_id"])
    reinit = load_mask(out, by[("snip", "reinit")]["run_id"])
    assert all(torch.equal(reinit[n], source[n]) for n in source)
    for snip_start, reinit_start, name in zip(starts[0], starts[3], source, strict=True):
        assert torch.equal(reinit_start != 0, source[name])
        kept = source[name]
        assert not torch.equal(reinit_start[kept], snip_start[kept])  # the same positions, other values
        assert abs(float(reinit_start[kept].std() / snip_start[kept].std()) - 1) < 0.5  # the same distribution
