"""The iterative schedule (IMP with rewinding): rounds at (1 - s)^(j/k), rewinding to a saved copy, the budget."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from prunebench.datasets.memory import TensorLoader
from prunebench.grid.grid_choices import parse_methods
from prunebench.methods.base import Masks
from prunebench.methods.magnitude import Magnitude
from prunebench.pruning.mask_application import MaskEnforcer
from prunebench.pruning.prunable import prunable_weights
from prunebench.run.criterion_schedules import Iterative
from prunebench.run.iterative_schedule import prune_iteratively
from prunebench.run.recipe import OptimConfig
from prunebench.run.run_config import RunConfig
from prunebench.run.runner import execute
from prunebench.run.trainer import Trainer

CPU = torch.device("cpu")


def test_every_round_rewinds_the_survivors_to_the_rewind_point_and_keeps_its_density() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 30), nn.BatchNorm1d(30), nn.ReLU(), nn.Linear(30, 3))
    loader = TensorLoader(
        torch.randn(80, 6), torch.randint(0, 3, (80,)), 8, shuffle=True
    )  # 10 steps an epoch
    optim = OptimConfig(lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="cosine")
    weights = prunable_weights(model)
    saved: dict[str, torch.Tensor] = {}
    starts: list[tuple[dict[str, torch.Tensor], Masks]] = []
    calls: list[tuple[int, int, str]] = []

    def train(start: int, stop: int, hooks: list, phase: str) -> Trainer:
        calls.append((start, stop, phase))
        enforcers = [h for h in hooks if isinstance(h, MaskEnforcer)]
        if enforcers:  # a retraining round: the state it starts from, and its mask
            mask = {n: f.bool() for n, f in zip(weights, enforcers[0].factors, strict=True)}
            starts.append((copy.deepcopy(model.state_dict()), mask))
        trainer = Trainer(model, loader, optim, 3, hooks=hooks, start=start, stop=stop)
        trainer.fit()
        if stop == 12:
            saved.update(copy.deepcopy(model.state_dict()))
        return trainer

    def prune(sparsity: float, alive: Masks | None) -> Masks:
        return Magnitude().masks(model, weights, sparsity, "global", None, alive=alive)

    outcome = prune_iteratively(model, 0.875, Iterative(rounds=3, rewind=0.4), 30, train, prune)

    assert calls == [(0, 12, "to rewind point"), (12, 30, "round 0")] + [
        (12, 30, f"round {j}") for j in (1, 2, 3)
    ]
    assert outcome.steps == 12 + 4 * 18
    total = 6 * 30 + 30 * 3
    previous = None
    for j, (state, mask) in enumerate(starts, start=1):
        for name, value in state.items():
            expected = saved[name] * mask[name] if name in mask else saved[name]  # buffers too (BatchNorm)
            assert torch.equal(value, expected), (j, name)
        kept = sum(int(m.sum()) for m in mask.values())
        assert abs(kept - 0.125 ** (j / 3) * total) <= len(mask)  # (1 - s)^(j/k), within one weight per layer
        if previous is not None:
            assert all(not bool((mask[n] & ~previous[n]).any()) for n in mask)
        previous = mask
    assert sum(int(m.sum()) for m in outcome.masks.values()) == round(total * 0.125)
    assert [r["round"] for r in outcome.details["rounds"]] == [1, 2, 3]
    assert outcome.details["rewind_step"] == 12 and outcome.details["steps_per_round"] == 18


@pytest.mark.parametrize("scope", ["global", "uniform", "uniform_plus", "erk"])
def test_imp_in_every_scope_ends_at_the_exact_target_with_the_rounds_in_the_record(
    scope: str, tmp_path: Path
):
    config = RunConfig.from_preset("synthetic-tiny", "imp", scope, 0.9, 0, epochs=2, settings={"rounds": 3})
    record = execute(config, CPU, tmp_path)
    total = record["prunable_weights"]
    assert record["prunable_nonzero"] == round(total * 0.1)
    assert (record["method"], record["criterion"], record["schedule"]) == ("imp", "magnitude", "iterative")
    assert record["epochs"] == {"budget": 8, "dense": 2, "retrain": 6}  # 4 trainings of the 2-epoch recipe
    rounds = record["method_details"]["rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    for j, r in enumerate(rounds, start=1):
        assert r["target_density"] == pytest.approx(0.1 ** (j / 3))
        assert abs(r["density"] - r["target_density"]) * total <= len(record["layers"])


def test_a_second_criterion_runs_under_the_iterative_schedule(tmp_path: Path) -> None:
    config = RunConfig.from_preset(
        "synthetic-tiny",
        "lamp@iterative",
        "global",
        0.95,
        0,
        epochs=2,
        settings={"rounds": 2, "rewind": 0.25},
    )
    record = execute(config, CPU, tmp_path)
    assert record["prunable_nonzero"] == round(record["prunable_weights"] * 0.05)
    assert (record["criterion"], record["schedule"]) == ("lamp", "iterative")
    assert record["method_details"]["rewind_step"] == 4  # a quarter of the 2 x 8 steps
    assert record["epochs"] == {"budget": 5, "dense": 2, "retrain": 3}  # 4 + 3 x 12 steps of 8 per epoch
    assert min(layer["nonzero"] for layer in record["layers"]) >= 1  # LAMP keeps every layer's largest weight


def test_imp_spends_a_multiple_of_the_budget_so_all_leaves_it_out() -> None:
    everything = {spec.name for spec in parse_methods("all")}
    assert "imp" not in everything and {"magnitude", "magnitude_init", "gmp"} <= everything
    assert [spec.name for spec in parse_methods("imp,all")][0] == "imp"
