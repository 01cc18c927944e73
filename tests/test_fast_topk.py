"""The opt-in tracked top-k of hard movement pruning against the plain ``torch.topk``: the same mask at every step,
ties included, and a whole training run that ends in the same weights, scores and masks on either path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunebench.datasets.memory import TensorLoader
from prunebench.methods import fast_topk
from prunebench.methods.fast_topk import TrackedTopK, tracked_top_k_on
from prunebench.methods.movement import HardMovementSession
from prunebench.pruning.prunable import prunable_weights
from prunebench.run import fast_paths
from prunebench.run.recipe import OptimConfig
from prunebench.run.trainer import Trainer, TrainHook


@pytest.mark.parametrize("band", ["numpy", "torch"])
def test_tracked_top_k_equals_torch_topk_at_every_step(band: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scores moving by Adam-sized steps, a keep count along the cubic ramp, a block of exact ties (weights that
    never get a gradient keep their initial score), and jumps: the tracked mask is torch.topk's, or False at a tie.
    ``torch``: the band search other devices use, run here on the CPU."""
    if band == "torch":
        monkeypatch.setattr(fast_topk, "_NumpyBand", fast_topk._TorchBand)

    generator = torch.Generator().manual_seed(0)
    size, steps = 20_000, 300
    scores = torch.randn(size, generator=generator) * 0.05
    scores[:2000] = 0.0  # ties that the threshold crosses on its way up
    tracker, tracked = TrackedTopK(), 0
    mask = torch.full((size,), 7.0)
    for step in range(steps):
        moving = scores[2000:]
        moving += 1e-3 * torch.sign(torch.randn(moving.shape, generator=generator))
        if step in (100, 200):  # a jump far outside the band
            scores[2000:] += 0.5 * torch.randn(size - 2000, generator=generator)
        keep = round(size * (0.02 + 0.98 * (1 - step / steps) ** 3))
        expected = torch.zeros(size, dtype=torch.bool)
        expected[torch.topk(scores, keep, sorted=False).indices] = True
        if not tracker.mask(scores, keep, out=mask):
            ranked = scores.sort(descending=True).values
            assert keep < size and ranked[keep - 1] == ranked[keep], step  # False only at a tie
        else:
            tracked += 1
            assert torch.equal(mask, expected.float()), step
    assert tracked > 0.8 * steps


class MaskRecorder(TrainHook):
    """A copy of the session's masks after every step."""

    def __init__(self, session: HardMovementSession) -> None:
        self.session = session
        self.masks: list[torch.Tensor] = []

    def after_step(self, trainer: Trainer) -> None:
        self.masks.append(self.session.flat_mask.clone())


def _movement_run(
    scope: str, plain: bool, monkeypatch: pytest.MonkeyPatch
) -> tuple[HardMovementSession, list[torch.Tensor]]:
    """Hard movement at 97% over 6 epochs of 16 batches, built with the speed-ups off (``plain``) or on, and its
    masks at every step. Four input features are always zero: the scores of their weights never move from 0 and
    tie all run long, so the threshold meets a tie on its way up."""
    monkeypatch.setenv(fast_paths.PLAIN_VARIABLE, "1" if plain else "0")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 40), nn.ReLU(), nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 3))
    session = HardMovementSession(
        model,
        prunable_weights(model),
        0.97,
        scope,
        global_floor=0.005,
        score_init=0.0,
        score_lr=1e-2,
        reference_steps=None,
        initial_warmup=0.1,
        final_warmup=0.2,
    )
    generator = torch.Generator().manual_seed(1)
    inputs, targets = (
        torch.randn(256, 20, generator=generator),
        torch.randint(0, 3, (256,), generator=generator),
    )
    inputs[:, :4] = 0.0
    loader = TensorLoader(inputs, targets, 16, shuffle=True)
    recorder = MaskRecorder(session)
    trainer = Trainer(model, loader, OptimConfig(lr=0.05), 6, hooks=[session, recorder])
    trainer.fit()
    return session, recorder.masks


@pytest.mark.parametrize("scope", ["global", "uniform"])
def test_a_movement_run_is_the_same_on_the_plain_and_the_tracked_path(
    scope: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``PRUNEBENCH_PLAIN=1`` (``torch.topk`` at every step, ``optimizer.step()``) and the speed-ups: the same
    masks at every step, and the same weights and scores to the bit at the end."""
    plain, plain_masks = _movement_run(scope, plain=True, monkeypatch=monkeypatch)
    fast, fast_masks = _movement_run(scope, plain=False, monkeypatch=monkeypatch)
    assert len(plain_masks) == len(fast_masks) == 96
    for step, (expected, found) in enumerate(zip(plain_masks, fast_masks, strict=True)):
        assert torch.equal(expected, found), step
    assert plain.top_k_trackers is None and fast.top_k_trackers is not None
    assert all(tracker.threshold is not None for tracker in fast.top_k_trackers.values())  # they searched
    for name, weight in plain.weights.items():
        assert torch.equal(weight, fast.weights[name]), name
        assert torch.equal(plain.scores[name], fast.scores[name]), name
        assert torch.equal(plain.masks[name].mask, fast.masks[name].mask), name
    assert int(plain.flat_mask.sum()) == round(0.03 * plain.flat_mask.numel())  # the ramp reached the target


def test_the_tracked_top_k_is_on_only_where_it_pays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(fast_paths.PLAIN_VARIABLE, raising=False)
    assert tracked_top_k_on(torch.device("cpu")) == ("cpu" in fast_paths.PAYS_ON["tracked_top_k"])
    assert not tracked_top_k_on(torch.device("meta"))
    monkeypatch.setenv(fast_paths.PLAIN_VARIABLE, "1")
    assert not tracked_top_k_on(torch.device("cpu"))
