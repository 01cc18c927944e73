"""Gradual magnitude pruning: density along the cubic schedule, masked weights stay zero, exact end-to-end target."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from prunebench.config import RunConfig
from prunebench.datasets.memory import TensorLoader
from prunebench.methods.gmp import GradualMagnitude, GradualMagnitudeSession
from prunebench.prunable import prunable_weights
from prunebench.recipe import OptimConfig
from prunebench.runner import execute
from prunebench.trainer import Trainer, TrainHook


class Recorder(TrainHook):
    """Records, after every step (and after the session's own hook), the masks and the zero pattern of the weights."""

    def __init__(self, session: GradualMagnitudeSession) -> None:
        self.session = session
        self.density: dict[int, float] = {}
        self.masked_weights_zero: list[bool] = []

    def after_step(self, trainer: Trainer) -> None:
        weights = self.session.weights
        nonzero = sum(int((w != 0).sum()) for w in weights.values())
        self.density[trainer.step] = nonzero / sum(w.numel() for w in weights.values())
        self.masked_weights_zero.append(
            all(bool((weights[n][~m] == 0).all()) for n, m in self.session.masks.items())
        )


def test_density_follows_the_schedule_and_pruned_weights_stay_zero() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 40), nn.ReLU(), nn.Linear(40, 4))
    loader = TensorLoader(torch.randn(200, 10), torch.randint(0, 4, (200,)), 10, shuffle=True)  # 20 steps
    weights = prunable_weights(model)
    method = GradualMagnitude(start=0.2, end=0.8, frequency=0.1)
    session = method.attach(model, weights, 0.9, "global", context=None)  # type: ignore[arg-type]
    recorder = Recorder(session)
    optim = OptimConfig(lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="constant")
    trainer = Trainer(model, loader, optim, epochs=5, hooks=[session, recorder])
    trainer.fit()  # 100 steps: pruning after steps 20, 30, ..., 80
    total = sum(w.numel() for w in weights.values())
    for step in (10, 20, 25, 30, 50, 79, 80, 100):
        last_pruning = 0 if step < 20 else min(80, step - step % 10)
        p = last_pruning / 100
        keep = 1.0 if p <= 0.2 else 0.1 if p >= 0.8 else 0.1 + 0.9 * (1 - (p - 0.2) / 0.6) ** 3
        assert recorder.density[step] == pytest.approx(round(total * keep) / total, abs=1e-12), step
    assert all(recorder.masked_weights_zero)
    final = session.finish(trainer)
    assert sum(int(m.sum()) for m in final.masks.values()) == round(total * 0.1)
    assert all(torch.equal(w != 0, final.masks[n]) for n, w in weights.items())


def test_uniform_scope_prunes_each_layer_to_the_scheduled_density() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 40), nn.ReLU(), nn.Linear(40, 4))
    weights = prunable_weights(model)
    session = GradualMagnitude().attach(model, weights, 0.75, "uniform", context=None)  # type: ignore[arg-type]
    session.prune(0.5)
    assert [int((w != 0).sum()) for w in weights.values()] == [200, 80]
    largest = weights["0.weight"].abs().flatten().sort().values
    assert largest[:200].eq(0).all() and largest[200:].gt(0).all()


@pytest.mark.parametrize("scope", ["global", "uniform", "erk"])
def test_end_to_end_reaches_the_exact_target(scope: str, tmp_path: Path) -> None:
    record = execute(
        RunConfig.from_preset("synthetic-tiny", "gmp", scope, 0.9, 0), torch.device("cpu"), tmp_path
    )
    assert record["prunable_nonzero"] == round(record["prunable_weights"] * 0.1)
    assert record["method_sparsity"] == 0.9 and record["enforcement"] is None
    assert record["epochs"]["learn"] == record["epochs"]["budget"]
