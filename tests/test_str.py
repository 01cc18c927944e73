"""STR (Kusupati et al. 2020): the soft threshold, its gradient, the threshold optimizer, the decay controller, the
exact projection, and an end-to-end run at the target sparsity."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from prunebench.methods.base import ScoringData, TrainingContext
from prunebench.methods.method_registry import get_method
from prunebench.methods.str_pruning import (
    STR,
    DecayController,
    SoftThreshold,
    STRSession,
    _SoftThreshold,
    soft_threshold,
)
from prunebench.pruning.prunable import prunable_weights
from prunebench.run.recipe import OptimConfig
from prunebench.run.run_config import RunConfig
from prunebench.run.runner import execute


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def context() -> TrainingContext:
    return TrainingContext(
        epochs=1,
        steps_per_epoch=10,
        device=torch.device("cpu"),
        seed=0,
        num_classes=3,
        train_data=ScoringData([]),
    )


def fake_trainer(lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4, nesterov: bool = False):
    """What the session reads from the trainer (the recipe, the current learning rate, the progress)."""
    config = OptimConfig(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    return SimpleNamespace(optim_config=config, lr=lr, progress=0.0)


def test_forward_is_the_soft_threshold_on_a_hand_made_tensor():
    weight = torch.tensor([[0.5, -0.2, 0.05], [-0.9, 0.1, 0.0]])
    threshold = torch.tensor(logit(0.1))  # sigmoid(s) = 0.1
    expected = torch.tensor([[0.4, -0.1, 0.0], [-0.8, 0.0, 0.0]])  # by hand: sign(w) * max(|w| - 0.1, 0)
    assert torch.allclose(soft_threshold(weight, threshold), expected, atol=1e-6)

    layer = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    parametrize.register_parametrization(
        layer, "weight", SoftThreshold(nn.Parameter(torch.tensor([0.0, logit(0.1)])), 1)
    )
    assert torch.allclose(layer.weight, expected, atol=1e-6)
    x = torch.tensor([[1.0, 2.0, 3.0]])
    assert torch.allclose(layer(x), torch.tensor([[0.4 - 0.2, -0.8]]), atol=1e-6)


def test_threshold_gradient_matches_the_analytic_expression_and_finite_differences():
    torch.manual_seed(0)
    weight = torch.randn(4, 6, dtype=torch.float64)
    inputs = torch.randn(5, 6, dtype=torch.float64)
    targets = torch.randn(5, 4, dtype=torch.float64)
    s = torch.tensor(logit(0.6), dtype=torch.float64)

    def loss_of(effective: torch.Tensor) -> torch.Tensor:
        return ((inputs @ effective.T - targets) ** 2).sum()

    s_param = s.clone().requires_grad_(True)
    loss_of(soft_threshold(weight, s_param)).backward()

    # Separately: dL/dW_eff at W_eff, then -sigmoid'(s) * sum over survivors of sign(W) * dL/dW_eff.
    cutoff = 0.6
    effective = (weight.sign() * (weight.abs() - cutoff).clamp_min(0)).requires_grad_(True)
    loss_of(effective).backward()
    survivors = weight.abs() > cutoff
    assert 0 < survivors.sum() < weight.numel()
    analytic = -(cutoff * (1 - cutoff)) * (weight.sign() * effective.grad)[survivors].sum()
    assert torch.allclose(s_param.grad, analytic, rtol=1e-10)

    eps = 1e-6
    numeric = (loss_of(soft_threshold(weight, s + eps)) - loss_of(soft_threshold(weight, s - eps))) / (
        2 * eps
    )
    assert torch.allclose(s_param.grad, numeric, rtol=1e-5)


@pytest.mark.parametrize("shape", [(300, 784), (16, 6, 5, 5)])
def test_the_training_function_is_the_official_form_to_the_bit(shape):
    """_SoftThreshold (what training runs) gives the same bits as autograd of soft_threshold, value and gradients."""
    torch.set_flush_denormal(True)  # as every run
    generator = torch.Generator().manual_seed(0)
    weight = (torch.randn(shape, generator=generator) * 0.05).requires_grad_()
    upstream = torch.randn(shape, generator=generator)
    for s in (-4.0, -3.0, -2.5):
        threshold = torch.tensor(s, requires_grad=True)
        reference = soft_threshold(weight, threshold)
        expected = torch.autograd.grad((reference * upstream).sum(), [weight, threshold])
        trained = _SoftThreshold.apply(weight, torch.sigmoid(threshold))
        found = torch.autograd.grad((trained * upstream).sum(), [weight, threshold])
        assert 0 < int((reference == 0).sum()) < reference.numel()
        assert torch.equal(trained, reference)
        assert all(torch.equal(a, b) for a, b in zip(found, expected, strict=True))


def test_weight_gradient_passes_only_through_survivors():
    weight = torch.tensor([0.5, -0.05, -0.3, 0.02], requires_grad=True)
    soft_threshold(weight, torch.tensor(logit(0.1))).sum().backward()
    assert weight.grad.tolist() == [1.0, 0.0, 1.0, 0.0]


@pytest.mark.parametrize("nesterov", [False, True])
def test_threshold_step_equals_sgd_with_the_threshold_decay(nesterov):
    """In training, the thresholds take torch.optim.SGD's step at the weights' current learning rate, momentum and
    Nesterov setting, with the threshold decay as its weight decay: a reference SGD fed the same gradients."""
    from prunebench.datasets.memory import TensorLoader
    from prunebench.run.trainer import Trainer, TrainHook

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    session = STR(s_init=-2.0, threshold_decay=0.05, control=False).attach(
        model, prunable_weights(model), 0.5, "learned", context()
    )
    reference = nn.Parameter(session.thresholds.detach().clone())
    optimizer = torch.optim.SGD([reference], lr=0.2, momentum=0.9, weight_decay=0.05, nesterov=nesterov)
    compared = []

    class Reference(TrainHook):
        """Steps the reference with the gradient the thresholds got (listed before the session: before its decay)."""

        def before_step(self, trainer: Trainer) -> None:
            reference.grad = session.thresholds.grad.clone()
            optimizer.param_groups[0]["lr"] = trainer.lr
            optimizer.step()

        def after_step(self, trainer: Trainer) -> None:
            torch.testing.assert_close(session.thresholds.detach(), reference.detach(), rtol=1e-6, atol=1e-7)
            compared.append(trainer.step)

    loader = TensorLoader(torch.randn(24, 4), torch.randint(0, 2, (24,)), 8, shuffle=False)  # 3 steps
    optim = OptimConfig(lr=0.2, momentum=0.9, weight_decay=5e-4, nesterov=nesterov)
    trainer = Trainer(model, loader, optim, 2, hooks=[Reference(), session])
    assert all(p is not session.thresholds for p in trainer.weight_parameters)
    trainer.fit()
    assert compared == list(range(1, 7))
    assert not torch.equal(session.thresholds.detach(), torch.full((2,), -2.0))
    assert len(session.method_parameters()) == 1 and session.method_parameters()[0] is session.thresholds


def test_controller_raises_the_decay_when_too_dense_and_lowers_it_when_too_sparse():
    def controller() -> DecayController:
        return DecayController(
            0.9,
            1e-3,
            integral_gain=0.05,
            proportional_gain=2.0,
            ramp_end=0.5,
            min_decay=1e-6,
            max_decay=0.3,
            device=torch.device("cpu"),
        )

    assert controller().ramp(0.0) == 0.0
    assert controller().ramp(0.5) == pytest.approx(0.9)
    assert controller().ramp(1.0) == pytest.approx(0.9)
    dense = controller()
    dense.update(0.25, torch.tensor(0.1))  # the ramp asks for 0.9 * (1 - 0.5**3) = 0.79
    assert float(dense.decay) > 1e-3
    sparse = controller()
    sparse.update(0.25, torch.tensor(0.95))
    assert float(sparse.decay) < 1e-3
    saturated = controller()
    for _ in range(1000):
        saturated.update(0.25, torch.tensor(0.0))
    assert float(saturated.decay) == pytest.approx(0.3)


def two_layer_model() -> tuple[nn.Module, dict[str, nn.Parameter]]:
    model = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 4))
    with torch.no_grad():
        model[0].weight.copy_(torch.linspace(-1, 1, 100).reshape(10, 10))
        model[2].weight.copy_(
            torch.linspace(-0.5, 0.5, 41)[torch.arange(40) + (torch.arange(40) >= 20)].reshape(4, 10)
        )
    return model, prunable_weights(model)


@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.8, 0.95])
def test_finish_reaches_exactly_the_target_and_leaves_a_plain_module(sparsity):
    model, weights = two_layer_model()
    raw = {name: w.detach().clone() for name, w in weights.items()}
    session = STR(s_init=logit(0.2)).attach(model, weights, sparsity, "learned", context())
    # STR's own sparsity: |w| <= 0.2 is zero, 20 of 100 in the first layer and 16 of 40 in the second.
    own = (sum(int((w.abs() <= 0.2).sum()) for w in raw.values())) / 140
    final = session.finish(fake_trainer())

    assert not parametrize.is_parametrized(model[0]) and not parametrize.is_parametrized(model[2])
    assert sorted(name for name, _ in model.named_parameters()) == [
        "0.bias",
        "0.weight",
        "2.bias",
        "2.weight",
    ]
    zeros = sum(int((module.weight == 0).sum()) for module in (model[0], model[2]))
    assert zeros == 140 - round(140 * (1 - sparsity))
    assert final.method_sparsity == pytest.approx(own)
    assert final.enforcement
    for name, mask in final.masks.items():
        weight = dict(model.named_parameters())[name]
        assert torch.equal(mask, weight != 0)
        # The survivors are the largest |W| - 0.2 over both layers; their values the soft threshold shifted by delta.
        delta = final.details["delta"]
        expected = raw[name].sign() * (raw[name].abs() - 0.2 - delta) * mask
        assert torch.allclose(weight, expected, atol=1e-6)
    assert (final.details["delta"] > 0) == (sparsity > own)


def test_own_sparsity_counts_the_weights_at_or_below_their_layer_cutoff():
    model, weights = two_layer_model()
    session = STR(s_init=logit(0.2)).attach(model, weights, 0.9, "learned", context())
    with torch.no_grad():
        session.thresholds.copy_(torch.tensor([logit(0.3), logit(0.05)]))
    cutoffs = [torch.sigmoid(torch.tensor(logit(0.3))), torch.sigmoid(torch.tensor(logit(0.05)))]
    pruned = sum(int((w.abs() <= c).sum()) for w, c in zip(session.weights.values(), cutoffs, strict=True))
    assert 0 < pruned < 140
    assert float(session.own_sparsity()) == pytest.approx(pruned / 140, abs=1e-7)


def test_the_controller_sees_the_sparsity_after_each_step_from_the_backward_counts():
    """In training, the controller's step for step t runs at step t+1 on the survivor counts of its backward pass:
    they equal own_sparsity() of the weights and thresholds as step t left them, and the controller moves."""
    from prunebench.datasets.memory import TensorLoader
    from prunebench.run.trainer import Trainer

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 30), nn.ReLU(), nn.Linear(30, 3))
    session = STR(s_init=-3.0, threshold_decay=1e-2).attach(
        model, prunable_weights(model), 0.8, "learned", context()
    )
    loader = TensorLoader(torch.randn(160, 12), torch.randint(0, 3, (160,)), 16, shuffle=True)
    trainer = Trainer(
        model,
        loader,
        OptimConfig(lr=0.1, momentum=0.9),
        3,
        hooks=[session],
    )
    after_step, seen = [], []

    def after(trainer: Trainer) -> None:
        STRSession.after_step(session, trainer)
        after_step.append(float(session.own_sparsity()))

    session.after_step = after
    session.on_train_start(trainer)
    update = session.controller.update

    def recording(progress: float, sparsity: torch.Tensor) -> None:
        seen.append(float(sparsity))
        update(progress, sparsity)

    session.controller.update = recording
    session.on_train_start = lambda trainer: None  # keep the recording controller
    trainer.fit()
    assert len(seen) == trainer.total_steps - 1  # the last step's sparsity has no next step to act on
    assert seen == after_step[:-1]
    assert len(set(seen)) > 1


def test_finish_keeps_w_eff_when_str_already_meets_the_budget():
    model, weights = two_layer_model()
    raw = {name: w.detach().clone() for name, w in weights.items()}
    own = sum(int((w.abs() <= 0.2).sum()) for w in raw.values()) / 140
    session = STR(s_init=logit(0.2)).attach(model, weights, own, "learned", context())
    final = session.finish(fake_trainer())
    assert final.details["delta"] == 0.0
    for name, weight in dict(model.named_parameters()).items():
        if name in raw:
            assert torch.allclose(weight, soft_threshold(raw[name], torch.tensor(logit(0.2))), atol=1e-6)


def test_end_to_end_on_synthetic_tiny_ends_at_the_exact_target(tmp_path: Path):
    assert get_method("str").schedule == "during_training"
    assert get_method("str").scopes == ("learned",)
    config = RunConfig.from_preset("synthetic-tiny", "str", "learned", 0.9, seed=0)
    record = execute(config, torch.device("cpu"), tmp_path)
    assert record["status"] == "ok"
    assert record["prunable_nonzero"] == round(record["prunable_weights"] * 0.1)
    assert 0.0 <= record["method_sparsity"] < 1.0
    assert "delta" in record["enforcement"] and "fine-tuned" in record["enforcement"]
    assert record["epochs"] == {"budget": 4, "learn": 3, "finetune": 1}
    assert record["hparams"]["s_init"] == -10.0
    assert config.identity["method"]["versions"] == {"str": 2}  # the thresholds' step is torch.optim.SGD's


def test_no_finetune_fraction_means_no_finetuning(tmp_path: Path):
    config = RunConfig.from_preset(
        "synthetic-tiny", "str", "learned", 0.9, seed=0, settings={"finetune_fraction": 0.0}
    )
    record = execute(config, torch.device("cpu"), tmp_path)
    assert record["epochs"] == {"budget": 4, "learn": 4, "finetune": 0}
    assert record["prunable_nonzero"] == round(record["prunable_weights"] * 0.1)
    assert "fine-tuned" not in record["enforcement"]
