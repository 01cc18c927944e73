"""Residual groups on the structured track: a shared channel's score as the mean or the sum over its layers, checked by
hand on a two-block residual model; MaskSparsity's per-BatchNorm threshold with its residual vote; the choice in the
run id."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunebench.core.errors import UsageError
from prunebench.methods.channel_methods import (
    L1Filter,
    MaskSparsity,
    NetworkSlimming,
    TaylorFO,
    threshold_pruned,
)
from prunebench.run.run_config import RunConfig, Track
from prunebench.structured.channels import allocate, channel_groups

EXAMPLE = torch.randn(1, 1, 6, 6, generator=torch.Generator().manual_seed(0))
STREAM = ("bn", "blocks.0.bn2", "blocks.1.bn2")
"""The residual stream's BatchNorms (the stem's and each block's last): one group of 4 channels, k = 3."""


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class TwoBlocks(nn.Module):
    """Stem conv + BN, two identity-shortcut blocks of width 4, a linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.bn = nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.blocks = nn.Sequential(Block(4), Block(4))
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def _model_and_groups():
    model = TwoBlocks()
    groups = channel_groups(model, EXAMPLE)
    return model, groups


def _named(groups, norm: str) -> str:
    """The name of the group that holds the BatchNorm ``norm`` (Torch-Pruning names a group after its root)."""
    return next(g.name for g in groups if norm in {m.module for m in g.of("norm")})


def _set_gammas(model: nn.Module, gammas: dict[str, list[float]]) -> None:
    with torch.no_grad():
        for name, values in gammas.items():
            model.get_submodule(name).weight.copy_(torch.tensor(values))


def test_the_residual_stream_is_one_group_of_three_batchnorms():
    _, groups = _model_and_groups()
    assert len(groups) == 3
    stream = next(g for g in groups if g.name == _named(groups, "bn"))
    assert {m.module for m in stream.of("norm")} == set(STREAM)
    assert {m.module for m in stream.of("producer")} == {"conv", "blocks.0.conv2", "blocks.1.conv2"}
    assert all(len(g.of("norm")) == 1 for g in groups if g is not stream)


@pytest.mark.parametrize("how,expected", [("mean", [0.3, 0.3, 0.4, 0.5]), ("sum", [0.9, 0.9, 1.2, 1.5])])
def test_gamma_group_score_is_the_mean_or_the_sum_over_the_batchnorms(how, expected):
    model, groups = _model_and_groups()
    _set_gammas(
        model,
        {
            "bn": [0.3, 0.6, 0.9, 1.2],
            "blocks.0.bn2": [0.0, -0.3, 0.0, 0.3],  # |gamma|: the sign does not count
            "blocks.1.bn2": [0.6, 0.0, 0.3, 0.0],
            "blocks.0.bn1": [0.1, -0.2, 0.3, 0.4],
        },
    )
    for method in (NetworkSlimming(group_reduce=how), MaskSparsity(group_reduce=how)):
        scores = method.attach(model, groups, lambda scores: {}).scores()
        torch.testing.assert_close(scores[_named(groups, "bn")], torch.tensor(expected))
        torch.testing.assert_close(
            scores[_named(groups, "blocks.0.bn1")], torch.tensor([0.1, 0.2, 0.3, 0.4])
        )  # one BatchNorm


@pytest.mark.parametrize("how,expected", [("mean", [2.0, 2.0, 2.0, 2.0]), ("sum", [6.0, 6.0, 6.0, 6.0])])
def test_l1_group_score_is_the_mean_or_the_sum_over_the_producing_convolutions(how, expected):
    model, groups = _model_and_groups()
    rows = {  # per output channel: a constant whose L1 norm over the filter is the listed value
        "conv": [1.0, 2.0, 3.0, 4.0],  # 9 weights per filter
        "blocks.0.conv2": [4.0, -4.0, 0.0, 0.0],  # 36 weights per filter
        "blocks.1.conv2": [1.0, 0.0, 3.0, 2.0],
    }
    with torch.no_grad():
        for name, norms in rows.items():
            weight = model.get_submodule(name).weight
            for channel, norm in enumerate(norms):
                weight[channel].fill_(norm / weight[channel].numel())
    scores = L1Filter(group_reduce=how).group_scores(model, groups, None)
    torch.testing.assert_close(scores[_named(groups, "bn")], torch.tensor(expected))


@pytest.mark.parametrize("how", ["mean", "sum"])
def test_taylor_group_score_from_autograd_by_hand(how):
    model, groups = _model_and_groups()
    with torch.no_grad():
        for name in STREAM:
            model.get_submodule(name).bias.uniform_(-0.5, 0.5)
    generator = torch.Generator().manual_seed(3)
    inputs, targets = (
        torch.randn(8, 1, 6, 6, generator=generator),
        torch.randint(3, (8,), generator=generator),
    )
    scores = TaylorFO(batches=1, group_reduce=how).group_scores(model, groups, [(inputs, targets)])
    model.train()
    norms = [model.get_submodule(name) for name in STREAM]
    params = [p for bn in norms for p in (bn.weight, bn.bias)]
    grads = torch.autograd.grad(F.cross_entropy(model(inputs), targets), params)
    gates = [  # each BatchNorm's gate: gamma dL/dgamma + beta dL/dbeta, per channel
        norms[i].weight.detach() * grads[2 * i] + norms[i].bias.detach() * grads[2 * i + 1] for i in range(3)
    ]
    expected = (gates[0] + gates[1] + gates[2]) ** 2 if how == "sum" else (sum(g**2 for g in gates) / 3)
    torch.testing.assert_close(scores[_named(groups, "bn")], expected, rtol=1e-4, atol=1e-12)


@pytest.mark.parametrize("how,residual_removed", [("mean", 3), ("sum", 0)])
def test_a_global_ranking_compares_residual_channels_like_with_like_under_the_mean(how, residual_removed):
    model, groups = _model_and_groups()
    _set_gammas(
        model,
        {
            **dict.fromkeys(
                STREAM, [0.1, 0.1, 0.1, 0.9]
            ),  # mean 0.1, sum 0.3: below / above the singles' 0.2
            "blocks.0.bn1": [0.2, 0.2, 0.2, 0.9],
            "blocks.1.bn1": [0.2, 0.2, 0.2, 0.9],
        },
    )
    scores = NetworkSlimming(group_reduce=how).attach(model, groups, lambda scores: {}).scores()
    keep = allocate(scores, groups, "channels", 0.25, "global")  # 3 of the 12 group channels
    assert int((~keep[_named(groups, "bn")]).sum()) == residual_removed
    assert sum(int((~k).sum()) for k in keep.values()) == 3


def test_official_threshold_prunes_per_batchnorm_not_above_it_and_keeps_the_largest():
    gammas = [torch.tensor([0.01, 0.0100001, -0.002, 0.5])]
    assert threshold_pruned(gammas).tolist() == [True, False, True, False]  # 0.01 is not above 0.01
    assert threshold_pruned([torch.tensor([0.001, -0.009, 0.003])]).tolist() == [True, False, True]


def test_official_residual_vote_lowers_the_agreement_until_the_fewest_pruned_by_one_layer():
    gammas = [  # pruned (|gamma| <= 0.01): {0, 1}, {0, 1, 2}, {1, 3}; votes 2, 3, 1, 1; the fewest: 2
        torch.tensor([0.001, 0.002, 0.5, 0.6]),
        torch.tensor([0.003, 0.0, 0.01, 0.7]),
        torch.tensor([0.8, 0.004, 0.5, -0.005]),
    ]
    # all three agree on channel 1 only, fewer than 2; two of three agree on channels 0 and 1: enough
    assert threshold_pruned(gammas).tolist() == [True, True, False, False]
    unanimous = [torch.tensor([0.001, 0.5, 0.002]), torch.tensor([0.001, 0.5, 0.002])]
    assert threshold_pruned(unanimous).tolist() == [True, False, True]


def test_masksparsity_reports_the_masked_channels_the_official_threshold_prunes():
    model, groups = _model_and_groups()
    _set_gammas(
        model,
        {
            "bn": [0.005, 0.5, 0.5, 0.5],  # pruned by the threshold: {0}
            "blocks.0.bn2": [0.005, 0.005, 0.5, 0.5],  # {0, 1}
            "blocks.1.bn2": [0.5, 0.005, 0.005, 0.5],  # {1, 2}: the vote prunes {0, 1}, not channel 2
            "blocks.0.bn1": [0.004, 0.6, 0.6, 0.6],  # {0}
            "blocks.1.bn1": [0.6, 0.6, 0.6, 0.6],  # none
        },
    )

    def allocator(scores):  # 4 of 12: the single 0.004 and the stream's channels 0-2 (mean 0.17 each)
        return allocate(scores, groups, "channels", 1 / 3, "global")

    session = MaskSparsity(mask_at=0.0).attach(model, groups, allocator)
    mask = session.keep(allocator)
    assert (~mask[_named(groups, "bn")]).tolist() == [True, True, True, False]
    details = session.details()
    assert details["masked_channels"] == 4
    assert details["masked_below_threshold"] == 3  # the stream's 0 and 1, the single's 0; not the stream's 2
    assert details["below_threshold"] == 3


def test_group_reduce_is_in_the_run_id_and_the_variant():
    base = RunConfig.from_preset("mnist5k-cnn-bn", "slimming", "global", 0.5, 0)
    base = dataclasses.replace(base, track=Track("structured", "channels"))
    summed = dataclasses.replace(base, settings=(("group_reduce", "sum"),))
    explicit = dataclasses.replace(base, settings=(("group_reduce", "mean"),))
    assert summed.run_id != base.run_id and summed.variant == "group_reduce=sum" and base.variant == ""
    assert explicit.run_id == base.run_id  # the default, given or not, is one run
    assert base.identity["method"]["hparams"]["group_reduce"] == "mean"
    with pytest.raises(UsageError, match="group_reduce"):
        _ = dataclasses.replace(base, settings=(("group_reduce", "max"),)).hparams
