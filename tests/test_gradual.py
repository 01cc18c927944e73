"""The gradual schedule: the cubic schedule of Zhu & Gupta computed separately, masks that only shrink, the exact
target, and ``gmp`` as magnitude under it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from prunebench.datasets.memory import TensorLoader
from prunebench.methods.base import Masks, ScoringMethod
from prunebench.methods.magnitude import Magnitude
from prunebench.methods.method_registry import get_method
from prunebench.pruning.prunable import prunable_weights
from prunebench.run.criterion_schedules import Gradual
from prunebench.run.gradual_schedule import GradualPruning
from prunebench.run.recipe import OptimConfig
from prunebench.run.run_config import RunConfig
from prunebench.run.runner import execute
from prunebench.run.trainer import Trainer, TrainHook


class Recorder(TrainHook):
    """After every step (and after the schedule's own hook): the density of the weights and each new mask."""

    def __init__(self, pruning: GradualPruning, weights: dict[str, nn.Parameter]) -> None:
        self.pruning = pruning
        self.weights = weights
        self.density: dict[int, float] = {}
        self.masks: list[Masks] = []
        self.masked_weights_zero: list[bool] = []

    def after_step(self, trainer: Trainer) -> None:
        nonzero = sum(int((w != 0).sum()) for w in self.weights.values())
        self.density[trainer.step] = nonzero / sum(w.numel() for w in self.weights.values())
        masks = self.pruning.masks
        if masks is not None:
            if not self.masks or self.masks[-1] is not masks:
                self.masks.append(masks)
            self.masked_weights_zero.append(
                all(bool((self.weights[n][~m] == 0).all()) for n, m in masks.items())
            )


def magnitude_pruner(model: nn.Module, scope: str):
    weights = prunable_weights(model)

    def prune(sparsity: float, alive: Masks | None) -> Masks:
        return Magnitude().masks(model, weights, sparsity, scope, None, alive=alive)

    return prune


def train_gradually(
    scope: str, sparsity: float, schedule: Gradual
) -> tuple[Recorder, GradualPruning, Trainer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 40), nn.ReLU(), nn.Linear(40, 4))
    loader = TensorLoader(torch.randn(200, 10), torch.randint(0, 4, (200,)), 10, shuffle=True)  # 20 steps
    pruning = GradualPruning(model, sparsity, schedule, magnitude_pruner(model, scope))
    recorder = Recorder(pruning, prunable_weights(model))
    optim = OptimConfig(lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="constant")
    trainer = Trainer(model, loader, optim, epochs=5, hooks=[pruning, recorder])
    trainer.fit()  # 100 steps: pruning after steps 20, 30, ..., 80
    return recorder, pruning, trainer


def test_density_follows_eq_1_and_pruned_weights_stay_zero() -> None:
    recorder, pruning, trainer = train_gradually("global", 0.9, Gradual(start=0.2, end=0.8, frequency=0.1))
    total = 40 * 10 + 4 * 40
    for step in (10, 20, 25, 30, 50, 79, 80, 100):
        last_pruning = 0 if step < 20 else min(80, step - step % 10)
        # Zhu & Gupta, Eq. 1: s_t = s_f + (s_i - s_f)(1 - (t - t0) / (n dt))^3, t0 = 20, n dt = 60, s_i = 0
        t = last_pruning
        sparsity = 0.0 if t < 20 else 0.9 + (0.0 - 0.9) * (1 - (t - 20) / 60) ** 3
        assert recorder.density[step] == pytest.approx(round(total * (1 - sparsity)) / total, abs=1e-12), step
    assert all(recorder.masked_weights_zero)
    final = pruning.finish(trainer.step)
    assert sum(int(m.sum()) for m in final.values()) == round(total * 0.1)
    # steps 30, 40, ..., 80 (at step 20 the schedule's sparsity is still s_i = 0)
    assert pruning.details()["pruning_steps"] == 6 and pruning.details()["last_step"] == 80


@pytest.mark.parametrize("scope", ["global", "uniform", "erk"])
def test_masks_only_shrink_and_end_at_the_target(scope: str) -> None:
    recorder, pruning, trainer = train_gradually(scope, 0.8, Gradual(start=0.1, end=0.7, frequency=0.05))
    assert len(recorder.masks) > 5
    for before, after in zip(recorder.masks[:-1], recorder.masks[1:], strict=True):
        assert all(bool((after[n] & ~before[n]).sum() == 0) for n in after)
    kept = sum(int(m.sum()) for m in pruning.finish(trainer.step).values())
    assert kept == round(560 * 0.2)


class LargestFirst(ScoringMethod):
    """Scores -|w|: a pruned weight (zero) would score highest of all if the schedule let it."""

    def scores(self, model, weights, data):
        return {name: -w.detach().abs() for name, w in weights.items()}


def test_a_pruned_weight_scores_below_every_live_one() -> None:
    weight = torch.tensor([[0.0, 0.0, 0.5, -0.2, 0.9, 0.1]])
    model = nn.Linear(6, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(weight)
    alive = {"weight": torch.tensor([[False, False, True, True, True, True]])}
    masks = LargestFirst().masks(model, prunable_weights(model), 0.5, "global", None, alive=alive)
    # Three kept out of six: the live weights of smallest |w| (0.1, -0.2, 0.5), never the two pruned zeros.
    assert masks["weight"].tolist() == [[False, False, True, True, False, True]]
    assert LargestFirst().masks(model, prunable_weights(model), 0.5, "global", None)["weight"][0, :2].all()


def test_gmp_is_magnitude_under_the_gradual_schedule(tmp_path: Path) -> None:
    gmp = RunConfig.from_preset("synthetic-tiny", "gmp", "global", 0.9, 0)
    spelled = RunConfig.from_preset("synthetic-tiny", "magnitude@gradual", "global", 0.9, 0)
    assert gmp.run_id == spelled.run_id
    assert get_method("magnitude@gradual").name == "gmp"
    assert get_method("gmp").scopes == ("global", "uniform", "erk")
    assert set(gmp.hparams) == {"start", "end", "frequency", "initial_sparsity"}


@pytest.mark.parametrize("scope", ["global", "uniform", "erk"])
def test_end_to_end_reaches_the_exact_target(scope: str, tmp_path: Path) -> None:
    record = execute(
        RunConfig.from_preset("synthetic-tiny", "gmp", scope, 0.9, 0), torch.device("cpu"), tmp_path
    )
    assert record["prunable_nonzero"] == round(record["prunable_weights"] * 0.1)
    assert (record["criterion"], record["schedule"]) == ("magnitude", "gradual")
    assert record["epochs"] == {"budget": 4, "gradual": 4}
    details = record["method_details"]
    assert details["pruning_steps"] > 1 and details["last_step"] == round(0.8 * details["total_steps"])
