"""Allocation controls (shuffle, reinit) and saved masks: counts, positions, weights, round trips, failures."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from prunebench import load_mask
from prunebench.cli import main
from prunebench.core.errors import UsageError, WriteError
from prunebench.grid.experiment import Experiment
from prunebench.grid.grid_run import run_grid
from prunebench.grid.result_store import ResultStore
from prunebench.grid.scheduler import prerequisites
from prunebench.pruning.mask_application import MaskEnforcer
from prunebench.pruning.saved_masks import mask_path, pack, read_mask, unpack, write_mask
from prunebench.run.allocation_controls import controls_last, parse_controls, source_config, source_run_id
from prunebench.run.control_plans import shuffle_masks
from prunebench.run.run_config import RunConfig
from prunebench.run.run_context import initial_model

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
    import prunebench.pruning.saved_masks as saved

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
        preset="synthetic-tiny",
        methods=methods,
        scopes=scopes,
        sparsity=[0.9],
        seeds=1,
        controls=list(controls),
    )
    experiment.set("recipe", "epochs", [2])
    return experiment.configs()


def test_controls_are_separate_runs_with_their_sources_first_and_random_baselines_added():
    plain = Experiment(
        preset="synthetic-tiny", methods="snip,magnitude,str", scopes="all", sparsity=[0.9], seeds=1
    )
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
    assert all(
        prerequisites(c) == ([source_run_id(c)] if c.control else []) for c in configs
    )  # claimed after it
    batches = controls_last(configs)
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
    argv += [
        "--sparsity",
        "0.9",
        "--seeds",
        "1",
        "--jobs",
        "1",
        "--controls",
        "shuffle,reinit",
        "--out",
        str(out),
    ]
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
        assert (
            abs(float(reinit_start[kept].std() / snip_start[kept].std()) - 1) < 0.5
        )  # the same distribution


# The report: the fraction explained, the controls table and the budget mark, on records made by hand.


def test_fraction_explained_against_a_hand_computation():
    from scipy import stats

    from prunebench.leaderboard.controls_table import fraction_explained

    method = {0: 80.0, 1: 82.0, 2: 84.0}
    shuffle = {0: 70.0, 1: 73.0, 2: 74.0}
    random = {0: 60.0, 1: 61.0, 2: 65.0}
    # S - R = 10, 12, 9 (mean 31/3); M - R = 20, 21, 19 (mean 20): f = 31/60.
    # Variances of the means: 7/3/3 and 1/3; covariance of the means 1.5/3; t(0.975, 2) = 4.302653.
    t2 = 4.302653**2
    quad, half, const = 400 - t2 / 3, 20 * 31 / 3 - t2 * 0.5, (31 / 3) ** 2 - t2 * 7 / 9
    root = (half**2 - quad * const) ** 0.5
    fraction = fraction_explained(method, shuffle, random)
    assert fraction.estimate == pytest.approx(31 / 60)
    assert fraction.bounded and fraction.n == 3
    assert (fraction.low, fraction.high) == pytest.approx(
        ((half - root) / quad, (half + root) / quad), rel=1e-6
    )
    # Fieller's interval: where the paired t-test of (S - R) - f (M - R) = 0 sits exactly at p = 0.05.
    top, bottom = np.array([10.0, 12.0, 9.0]), np.array([20.0, 21.0, 19.0])
    for end in (fraction.low, fraction.high):
        assert stats.ttest_1samp(top - end * bottom, 0.0).pvalue == pytest.approx(0.05, rel=1e-6)
    # a gain that is not significant leaves the share unbounded; one seed leaves it untested
    method, random = {0: 61.0, 1: 99.0}, {0: 60.0, 1: 80.0}  # gains 1 and 19: p = 0.47
    assert stats.ttest_rel(list(method.values()), list(random.values())).pvalue > 0.05
    noisy = fraction_explained(method, {0: 65.0, 1: 75.0}, random)
    assert noisy.estimate == pytest.approx(0.0) and not noisy.bounded
    assert not fraction_explained({0: 80.0}, {0: 70.0}, {0: 60.0}).bounded


def _record(method, scope, seed, top1, *, control="", schedule="at_init", criterion=None, budget=4) -> dict:
    record = {
        **_FAKE_RECORD,
        "run_id": f"{method}-{scope}-{seed}-{control}",
        "status": "ok",
        "method": method,
        "criterion": criterion or method,
        "schedule": schedule,
        "scope": scope,
        "seed": seed,
        "config": {"recipe": {"epochs": 4}, **({"control": control} if control else {})},
        "top1": top1,
        "epochs": {"budget": budget},
    }
    return {**record, "control": control} if control else record


def test_the_controls_table_and_the_budget_mark():
    from prunebench.leaderboard.budget_marks import mark_over_budget
    from prunebench.leaderboard.controls_table import add_control_tables, controls_table, split_controls
    from prunebench.leaderboard.render import Cell, Table, to_latex

    records = [
        *(_record("snip", "global", s, v) for s, v in enumerate([80.0, 82.0, 84.0])),
        *(_record("snip", "global", s, v, control="shuffle") for s, v in enumerate([70.0, 73.0, 74.0])),
        *(_record("snip", "global", s, v, control="reinit") for s, v in enumerate([79.0, 81.0, 83.0])),
        *(_record("random", "global", s, v) for s, v in enumerate([60.0, 61.0, 65.0])),
        *(
            _record("random@after_training", "global", s, 10.0, criterion="random", schedule="after_training")
            for s in range(3)
        ),
        *(
            _record("imp", "global", s, 90.0 + s, schedule="iterative", criterion="magnitude", budget=44)
            for s in range(3)
        ),
    ]
    plain, controls = split_controls(records)
    assert len(controls) == 6 and all(r["method"] != "snip" or "control" not in r for r in plain)
    table = controls_table(plain, controls)
    assert table is not None and len(table.rows) == 1
    row = [cell.text for cell in table.rows[0]]
    assert row[:2] == ["snip (global)", "0.9"]
    assert row[2].startswith("82.00 ") and row[3].startswith("72.33 ") and row[4].startswith("81.00 ")
    assert row[5].startswith("62.00 ")  # the at-init random baseline, not the after-training one
    assert row[6].startswith("+20.00 ± ") and table.rows[0][6].bold
    assert row[7].startswith("0.52 [")
    section_table = Table(
        "accuracy", "Top-1", ["method (scope)", "0.9"], [[Cell("imp (global)"), Cell("91")]]
    )

    class Section:
        dataset, model = "d", "m"
        tables = [section_table]

    section = Section()
    section.records = plain
    add_control_tables([section], controls)
    mark_over_budget([section])
    assert [t.name for t in section.tables] == ["controls", "accuracy"]
    assert section_table.rows[0][0].marks == "‖"
    assert section_table.items == [
        "‖: spent more weight-update epochs than the recipe's budget (iterative pruning retrains once per round), "
        "so not an equal-budget comparison: imp (global): 44 epochs, 11× the recipe's 4"
    ]
    assert r"imp (global)\textsuperscript{$\|$}" in to_latex(section_table, "tab:x")


def _at(record: dict, sparsity: float) -> dict:
    return {**record, "sparsity": sparsity, "run_id": f"{record['run_id']}-{sparsity:g}"}


def test_the_controls_gains_are_holm_corrected_per_sparsity_and_a_collapsed_baseline_withholds_shares():
    from scipy import stats

    from prunebench.leaderboard.controls_table import COLLAPSE_FRACTION, controls_table, split_controls

    # at 0.95 random pruning averages 32, below half the dense 95.2: collapsed
    random = {0.9: [60.0, 61.0, 65.0], 0.95: [30.0, 31.0, 35.0]}
    assert np.mean(random[0.95]) < COLLAPSE_FRACTION * 95.2 < np.mean(random[0.9])
    gains = {  # method: (sparsity, gain seed by seed over random pruning)
        "snip": (0.9, [20.0, 21.0, 19.0]),  # p = 0.0013: significant after Holm over the 5 rows of 0.9
        "grasp": (0.9, [10.0, 14.0, 20.0]),  # p = 0.037: significant alone, not after Holm (x 4)
        "synflow": (0.9, [10.0, 14.0, 20.0]),
        "magnitude_init": (0.9, [10.0, 14.0, 20.0]),
        "prospr": (0.9, [10.0, 14.0, 20.0]),
        "lamp_init": (0.95, [20.0, 21.0, 19.0]),  # significant, alone in its column, but against a collapse
    }
    records = [_record("dense", "none", s, 95.0 + 0.2 * s, schedule="dense") for s in range(3)]
    for sparsity, values in random.items():
        records += [_at(_record("random", "global", s, v), sparsity) for s, v in enumerate(values)]
    for method, (sparsity, gain) in gains.items():
        for s, (r, g) in enumerate(zip(random[sparsity], gain, strict=True)):
            records.append(_at(_record(method, "global", s, r + g), sparsity))
            records.append(_at(_record(method, "global", s, r + g / 2, control="shuffle"), sparsity))
    plain, controls = split_controls(records)
    table = controls_table(plain, controls)
    rows = {row[0].text: row for row in table.rows}
    p = {m: stats.ttest_rel(np.add(random[s], g), random[s]).pvalue for m, (s, g) in gains.items()}
    assert p["snip"] < 0.01 and 0.03 < p["grasp"] < 0.05
    # Holm over the five rows of 0.9, by hand: snip 5 p; the four ties 4 p, then never lower
    assert 5 * p["snip"] < 0.05 < 4 * p["grasp"]
    assert rows["snip (global)"][6].bold and rows["snip (global)"][7].text.startswith("0.50 [")
    for method in ("grasp", "synflow", "magnitude_init", "prospr"):
        gain, share = rows[f"{method} (global)"][6], rows[f"{method} (global)"][7]
        assert not gain.bold and gain.text.endswith("(n.s.)") and share.text == "0.50 (gain n.s.)"
    collapsed = rows["lamp_init (global)"]
    assert collapsed[5].text.endswith("(collapsed)") and collapsed[6].bold  # its own family: p not corrected
    assert collapsed[7].text == "0.50 (withheld: random collapsed)"
    assert not rows["snip (global)"][5].text.endswith("(collapsed)")
    assert "Holm over the rows of the sparsity" in table.notes
    assert "collapsed: its mean top-1 is below 50%" in table.notes


def test_jaccard_matrix_against_a_hand_computation():
    from prunebench.leaderboard.overlap import jaccard, matrix, overlap_frame

    a = {"l1": np.array([[1, 1, 0], [0, 0, 1]], bool), "l2": np.array([1, 0], bool)}
    b = {"l1": np.array([[1, 0, 0], [0, 1, 1]], bool), "l2": np.array([1, 1], bool)}
    c = {"l1": np.array([[0, 0, 1], [1, 0, 0]], bool), "l2": np.array([0, 1], bool)}
    # a & b: (0,0), (1,2), l2[0] = 3; a | b: (0,0), (0,1), (1,1), (1,2), l2[0], l2[1] = 6
    assert jaccard(a, b) == pytest.approx(3 / 6)
    assert jaccard(a, c) == 0.0 and jaccard(b, b) == 1.0
    # b & c: l2[1] = 1; b | c: (0,0), (0,2), (1,0), (1,1), (1,2), l2[0], l2[1] = 7
    assert jaccard(b, c) == pytest.approx(1 / 7)
    frame = overlap_frame({"A": {0: a, 1: a}, "B": {0: b, 1: c}, "C": {1: c}})
    mean = matrix(frame, "mean", ["A", "B", "C"])
    assert mean.loc["A", "B"] == pytest.approx((3 / 6 + 0.0) / 2)  # seed 0: a vs b; seed 1: a vs c
    assert mean.loc["B", "C"] == pytest.approx(1.0)  # only seed 1 shared: c vs c
    assert mean.loc["A", "C"] == pytest.approx(0.0) and mean.loc["C", "A"] == mean.loc["A", "C"]
    assert matrix(frame, "0", ["A", "B", "C"]).loc["A", "B"] == pytest.approx(0.5)
    assert np.isnan(matrix(frame, "0", ["A", "B", "C"]).loc["A", "C"])  # C has no seed 0


def test_bench_masks_writes_the_overlap_table_and_heat_map(controlled_grid, tmp_path, capsys):
    from prunebench.leaderboard.overlap import jaccard

    _, out, records, _ = controlled_grid
    assert main(["masks", str(out), "--sparsity", "0.9", "--out", str(tmp_path)]) == 0
    stem = tmp_path / "masks_synthetic_lenet5_s0.9"
    frame = pd.read_csv(f"{stem}.csv")
    assert set(frame["a"]) == {"snip (global)", "random (global)"}  # the controls are left out
    by = {(r["method"], r.get("control", "")): r["run_id"] for r in records}
    snip, random = (read_mask(out, by[(m, "")]) for m in ("snip", "random"))
    row = frame[
        (frame["seed"] == "mean") & (frame["a"] == "snip (global)") & (frame["b"] == "random (global)")
    ]
    assert float(row["jaccard"].iloc[0]) == pytest.approx(jaccard(snip, random))
    assert "## Mean over seeds" in Path(f"{stem}.md").read_text()
    assert Path(f"{stem}.png").stat().st_size > 0
    assert main(["masks", str(out), "--sparsity", "0.5"]) == 2
    assert "sparsities present: 0.9" in capsys.readouterr().err
