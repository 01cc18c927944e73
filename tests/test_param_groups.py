"""Parameter groups declared by a training hook: the trainer steps them as PyTorch's optimizers do, keeps their state
through a checkpoint, and a minimal learned-mask method needs nothing more; the harness's one fine-tune rule."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from prunebench.methods.base import FinalMasks, TrainingMethod
from prunebench.methods.masked import MaskedSession, exact_top_k
from prunebench.methods.method_registry import all_methods
from prunebench.run import method_contract as contract
from prunebench.run.recipe import OptimConfig
from prunebench.run.run_checkpoint import CheckpointPolicy, RunCheckpoint, RunInterrupted
from prunebench.run.run_config import RunConfig
from prunebench.run.runner import execute
from prunebench.run.trainer import ParamGroup, Trainer, TrainHook

CPU = torch.device("cpu")
PAGE = Path(__file__).resolve().parent.parent / "docs" / "adding-a-method.md"


# A minimal learned-mask method: one declared group, nothing else of the training mechanics ---------------------------
class Gate(nn.Module):
    """``W -> W * sigmoid(S)``: a soft gate on every weight, its score ``S`` learned with the weights."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.scores = nn.Parameter(torch.zeros_like(weight))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * torch.sigmoid(self.scores)


class GateSession(MaskedSession):
    def __init__(self, model: nn.Module, weights, sparsity: float) -> None:
        self.sparsity = sparsity
        self.gates = {name: Gate(weight) for name, weight in weights.items()}
        super().__init__(model, weights, self.gates)

    def param_groups(self) -> list[ParamGroup]:
        scores = [gate.scores for gate in self.gates.values()]
        return [ParamGroup("scores", scores, optimizer="adam", lr=1e-2, schedule="weights")]

    def final_masks(self, trainer) -> FinalMasks:
        scores = {name: gate.scores.detach() for name, gate in self.gates.items()}
        spread = float(torch.cat([s.flatten() for s in scores.values()]).std())
        masks = exact_top_k(scores, self.sparsity)
        return FinalMasks(masks, 0.0, "global top-k of the gate scores", {"score_spread": spread})


class GatedScores(TrainingMethod):
    """Soft gates sigmoid(S) on every weight, S trained by Adam; keep the highest S, then fine-tune."""

    def __init__(self, finetune_fraction: float = 0.25) -> None:
        self.finetune_fraction = finetune_fraction

    def attach(self, model, weights, sparsity, scope, context) -> GateSession:
        return GateSession(model, weights, sparsity)


def test_a_minimal_learned_mask_method_runs_to_the_exact_target_and_resumes(
    method_registry, tmp_path, one_thread
):
    method_registry.register("minimal_gates", schedule="during_training", scopes=("learned",), paper="test")(
        GatedScores
    )
    config = RunConfig.from_preset("synthetic-tiny", "minimal_gates", "learned", 0.9, seed=0)
    record = execute(config, CPU, tmp_path / "run")
    assert record["status"] == "ok"
    assert record["prunable_nonzero"] == round(record["prunable_weights"] * 0.1)
    assert record["epochs"] == {"budget": 4, "learn": 3, "finetune": 1}  # round(4 * 0.25), by the harness
    assert record["method_details"]["score_spread"] > 0  # the trainer stepped the declared scores
    # exact target, a valid record and a bit-identical resume, stopped in the middle of each phase
    assert contract.run_problems("minimal_gates", "learned", tmp_path / "contract", every_phase=True) == []


def test_the_documented_learned_mask_example_runs_as_printed(method_registry, tmp_path, one_thread):
    block = r"```python\n# methods/gated_scores.py\n(.*?)```"
    source = re.search(block, PAGE.read_text(), re.S).group(1)
    assert len(source.strip().splitlines()) <= 45
    exec(compile(source, "gated_scores.py", "exec"), {"__name__": "documented_example"})
    config = RunConfig.from_preset("synthetic-tiny", "gated_scores", "learned", 0.9, seed=0)
    record = execute(config, CPU, tmp_path)
    assert record["status"] == "ok"
    assert record["prunable_nonzero"] == round(record["prunable_weights"] * 0.1)


# The trainer steps a declared group as a torch.optim optimizer built by hand -------------------------------------------
class Net(nn.Module):
    """A linear classifier with a learned per-class offset, the parameter a hook trains besides the weights."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(5, 3)
        self.offset = nn.Parameter(torch.zeros(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.offset


class Batches:
    """Six batches per epoch, a fixed order per epoch."""

    def __init__(self) -> None:
        self.epoch = 0

    def __len__(self) -> int:
        return 6

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.epoch)
        for _ in range(6):
            yield torch.randn(8, 5, generator=generator), torch.randint(0, 3, (8,), generator=generator)


class Declares(TrainHook):
    """Declares the offset as a parameter group (and adds a term to the loss, so that its gradient matters)."""

    def __init__(self, model: Net, **options) -> None:
        self.model, self.options = model, options

    def compute_loss(self, trainer, inputs, targets):
        return F.cross_entropy(self.model(inputs), targets) + 0.1 * self.model.offset.pow(2).sum()

    def param_groups(self) -> list[ParamGroup]:
        return [ParamGroup("offset", [self.model.offset], **self.options)]


class StepsByHand(Declares):
    """The reference: the offset stepped in ``before_step`` by a torch.optim optimizer built here, at the rate the
    group's schedule documents."""

    def __init__(self, model: Net, build, rate) -> None:
        super().__init__(model)
        self.optimizer, self.rate = build([model.offset]), rate

    def param_groups(self) -> list[ParamGroup]:
        return []

    def before_step(self, trainer) -> None:
        self.optimizer.param_groups[0]["lr"] = self.rate(trainer)
        self.optimizer.step()


WEIGHTS = OptimConfig(lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True, schedule="cosine")


def cosine(trainer) -> float:
    """(1 + cos(pi p)) / 2 at the progress p = step / steps before the step."""
    return 0.5 * (1.0 + math.cos(math.pi * (trainer.step / trainer.total_steps)))


CASES = {
    "sgd relative to the weights' rate": (
        {"lr": 0.3, "momentum": 0.5, "nesterov": False, "weight_decay": 1e-2, "schedule": "relative"},
        lambda p: torch.optim.SGD(p, lr=0.0, momentum=0.5, weight_decay=1e-2, fused=True),
        lambda t: 0.3 * t.lr,
    ),
    "sgd with the weights' momentum and schedule": (
        {"lr": 0.05, "schedule": "weights"},
        lambda p: torch.optim.SGD(p, lr=0.0, momentum=0.9, nesterov=True, fused=True),
        lambda t: 0.05 * t.lr_factor,
    ),
    "plain sgd, constant": (
        {"lr": 0.2, "momentum": 0.0, "fused": False},
        lambda p: torch.optim.SGD(p, lr=0.2),
        lambda t: 0.2,
    ),
    "adam, cosine": (
        {
            "lr": 0.01,
            "optimizer": "adam",
            "betas": (0.8, 0.99),
            "eps": 1e-6,
            "weight_decay": 1e-3,
            "schedule": "cosine",
        },
        lambda p: torch.optim.Adam(p, lr=0.0, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-3, fused=True),
        lambda t: 0.01 * cosine(t),
    ),
    "adam, rates from functions of the trainer": (
        {
            "lr": lambda t: 0.5 / t.total_steps,
            "optimizer": "adam",
            "fused": False,
            "schedule": lambda t: 1.0 / (1 + t.step),
        },
        lambda p: torch.optim.Adam(p, lr=0.0),
        lambda t: 0.5 / 18 * (1.0 / (1 + t.step)),
    ),
}


def train(hook_of, checkpoint=None) -> tuple[Net, Trainer]:
    """Three epochs of :class:`Batches` with the hook ``hook_of(model)``; a hook that declares no group steps the
    offset itself, which stays out of the weights' SGD (``exclude``)."""
    torch.manual_seed(0)
    model = Net()
    hook = hook_of(model)
    exclude = [] if hook.param_groups() else [model.offset]
    trainer = Trainer(model, Batches(), WEIGHTS, 3, hooks=[hook], exclude=exclude, checkpoint=checkpoint)
    trainer.fit()
    return model, trainer


@pytest.mark.parametrize("case", CASES)
def test_the_trainer_steps_a_declared_group_as_the_torch_optimizer_built_by_hand(case):
    options, build, rate = CASES[case]
    model, trainer = train(lambda m: Declares(m, **options))
    assert all(p is not model.offset for p in trainer.weight_parameters)  # left out of the weights' SGD
    reference, _ = train(lambda m: StepsByHand(m, build, rate))
    assert float(model.offset.detach().abs().sum()) > 0
    for (name, ours), theirs in zip(model.state_dict().items(), reference.state_dict().values(), strict=True):
        assert torch.equal(ours, theirs), name


@pytest.mark.parametrize("stop_at", [1, 7, 14])
def test_a_declared_groups_optimizer_state_survives_a_checkpoint(tmp_path, stop_at):
    def hook_of(model: Net) -> Declares:
        return Declares(model, lr=0.05, optimizer="adam", schedule="cosine")

    reference, trainer = train(hook_of)
    saved = trainer.state_dict()
    assert (
        set(saved["param_groups"]) == {"offset"} and saved["param_groups"]["offset"]["state"]
    )  # Adam's moments
    assert saved["hooks"] == [{}]  # the hook keeps nothing of its own
    calls = itertools.count(1)
    policy = CheckpointPolicy(2)
    with pytest.raises(RunInterrupted):
        train(hook_of, RunCheckpoint(tmp_path / "c.pt", policy, stop=lambda: next(calls) == stop_at))
    resumed, _ = train(hook_of, RunCheckpoint(tmp_path / "c.pt", policy, stop=lambda: False))
    for (name, ours), theirs in zip(
        resumed.state_dict().items(), reference.state_dict().values(), strict=True
    ):
        assert torch.equal(ours, theirs), name


def test_groups_that_share_a_name_or_a_parameter_are_refused():
    model = Net()

    class Two(TrainHook):
        def __init__(self, second: str, params) -> None:
            self.second, self.params = second, params

        def param_groups(self) -> list[ParamGroup]:
            return [ParamGroup("a", [model.offset], lr=0.1), ParamGroup(self.second, self.params, lr=0.1)]

    with pytest.raises(ValueError, match="share a name"):
        Trainer(model, Batches(), WEIGHTS, 1, hooks=[Two("a", [model.linear.bias])])
    with pytest.raises(ValueError, match="two parameter groups"):
        Trainer(model, Batches(), WEIGHTS, 1, hooks=[Two("b", [model.offset])])
    with pytest.raises(ValueError, match="is not one of"):
        ParamGroup("c", [model.offset], lr=0.1, optimizer="rmsprop")
    with pytest.raises(ValueError, match="is not one of"):
        ParamGroup("c", [model.offset], lr=0.1, schedule="linear")


# The fine-tune share: one rule, one name, owned by the harness ---------------------------------------------------------
class Shares(TrainingMethod):
    def __init__(self, finetune_fraction: float) -> None:
        self.finetune_fraction = finetune_fraction


@pytest.mark.parametrize(
    ("fraction", "budget", "expected"),
    [
        (0.2, 20, 4),  # 4.0
        (0.2, 23, 5),  # 4.6 rounds up
        (0.2, 4, 1),  # 0.8
        (0.2, 2, 1),  # 0.4 rounds to 0: at least one
        (0.2, 1, 0),  # a single epoch is all learning
        (1 / 3, 7, 2),  # 2.33
        (1 / 3, 5, 2),  # 1.67 rounds up (movement's old floor gave 1)
        (1 / 3, 2, 1),  # 0.67 (the floor gave 0)
        (20 / 320, 40, 2),  # 2.5: halves to even
        (20 / 320, 56, 4),  # 3.5: halves to even
        (20 / 320, 320, 20),
        (0.9, 3, 2),  # 2.7 rounds to 3: at least one epoch left to learn
        (0.0, 20, 0),  # no fine-tuning
    ],
)
def test_the_finetune_rule_against_hand_computed_epochs(fraction, budget, expected):
    assert Shares(fraction).finetune_epochs(budget) == expected


def test_every_learned_mask_method_uses_the_harness_rule_under_one_name():
    training = [spec for spec in all_methods() if issubclass(spec.cls, TrainingMethod)]
    assert {spec.name for spec in training} >= {"str", "probmask", "movement", "soft_movement", "asl"}
    for spec in training:
        assert spec.cls.finetune_epochs is TrainingMethod.finetune_epochs, spec.name
        assert "finetune_share" not in spec.hparams, spec.name
    fractions = {
        spec.name: spec.hparams["finetune_fraction"].default
        for spec in training
        if "finetune_fraction" in spec.hparams
    }
    assert fractions == {"str": 0.2, "probmask": 20 / 320, "soft_movement": 1 / 3, "asl": 0.2}
    assert TrainingMethod.finetune_fraction == 0.0  # hard movement declares none: no fine-tuning
