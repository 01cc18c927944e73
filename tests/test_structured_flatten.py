"""The structured track on convolution -> Flatten -> Linear models (LeNet-5, a VGG-style classifier without global
pooling): removing a convolution's channels removes the matching channel x position columns of the first Linear
layer; the physically slimmed model computes what the masked model computes and has the hand-counted size."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from prunebench.pruning.accounting import count_flops
from prunebench.pruning.mask_application import apply_masks
from prunebench.run.run_config import RunConfig, Track
from prunebench.structured.channels import (
    FlopModel,
    allocate,
    channel_groups,
    channel_masks,
    check_same_outputs,
    remove_channels,
)
from prunebench.zoo.model_zoo import build_model

CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("one_thread")


def _lenet5(shape: tuple[int, ...]) -> nn.Module:
    torch.manual_seed(0)
    return build_model("lenet5", shape, 10).eval()


def _vgg_flat() -> nn.Module:
    """VGG-style: two conv-BN-ReLU-pool stages, then Flatten over 4x4 positions into a two-layer head (seeded, with
    BatchNorm statistics and affine parameters away from the identity)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 12, 3, padding=1, bias=False),
        nn.BatchNorm2d(12),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(12 * 4 * 4, 20),
        nn.ReLU(),
        nn.Linear(20, 5),
    )
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


def _lenet5_params(channels: int, positions: int, kept: dict[str, int], classes: int = 10) -> int:
    """LeNet-5's parameters by hand, with ``kept`` channels in each group (conv 5x5, biases everywhere)."""
    c1, c2, f1, f2 = kept["0"], kept["3"], kept["7"], kept["9"]
    return (
        (channels * 25 * c1 + c1)
        + (c1 * 25 * c2 + c2)
        + (c2 * positions * f1 + f1)
        + (f1 * f2 + f2)
        + (f2 * classes + classes)
    )


def _vgg_params(kept: dict[str, int]) -> int:
    """The VGG-style model's parameters by hand (3x3 convolutions without bias, BatchNorm scale and shift)."""
    c1, c2, f1 = kept["0"], kept["4"], kept["9"]
    return (3 * 9 * c1 + 2 * c1) + (c1 * 9 * c2 + 2 * c2) + (c2 * 16 * f1 + f1) + (f1 * 5 + 5)


def _scores(groups) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {g.name: torch.rand(g.size, generator=generator) for g in groups}


def test_the_linear_after_flatten_reads_each_channel_at_every_position():
    model = _lenet5((1, 28, 28))
    groups = {g.name: g for g in channel_groups(model, torch.randn(1, 1, 28, 28))}
    assert set(groups) == {"0", "3", "7", "9"}
    # conv 3 has 16 channels, each 5x5 positions after pooling: channel k is input columns 25k .. 25k + 24 of fc 7
    (consumer,) = groups["3"].of("consumer")
    assert (consumer.module, consumer.span) == ("7", 25)
    assert consumer.channels([0, 5]) == [*range(0, 25), *range(125, 150)]
    assert consumer.channels(range(16)) == list(range(400))
    assert [m.span for m in groups["3"].of("producer")] == [1]


@pytest.mark.parametrize(
    ("unit", "scope", "shape"),
    [
        ("channels", "global", (1, 28, 28)),
        ("channels", "uniform", (1, 16, 16)),
        ("flops", "global", (1, 28, 28)),
        ("flops", "uniform", (3, 20, 20)),
    ],
)
def test_slimmed_lenet5_equals_the_masked_model_and_has_the_hand_counted_size(unit, scope, shape):
    model = _lenet5(shape)
    example = torch.randn(1, *shape)
    groups = channel_groups(model, example)
    flop_model = FlopModel(model, example, groups)
    keep = allocate(_scores(groups), groups, unit, 0.5, scope, flop_model)
    apply_masks(model, channel_masks(model, groups, keep))
    pruned = remove_channels(model, example, keep)
    kept = {name: int(mask.sum()) for name, mask in keep.items()}
    assert all(0 < kept[g.name] < g.size for g in groups if g.size > 1)
    positions = ((shape[1] // 2 - 4) // 2) * ((shape[2] // 2 - 4) // 2)
    assert sum(p.numel() for p in pruned.parameters()) == _lenet5_params(shape[0], positions, kept)
    assert pruned[7].in_features == kept["3"] * positions
    inputs = torch.randn(16, *shape)
    assert check_same_outputs(model, pruned, inputs) < 1e-4
    weights = {
        f"{n}.weight": m.weight for n, m in pruned.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)
    }
    assert count_flops(pruned, example, weights).total == pytest.approx(flop_model.flops(kept), rel=1e-9)


@pytest.mark.parametrize("scope", ["global", "uniform"])
def test_slimmed_vgg_with_a_flattening_head_equals_the_masked_model(scope):
    model = _vgg_flat()
    example = torch.randn(1, 3, 16, 16)
    groups = channel_groups(model, example)
    assert {g.name for g in groups} == {"0", "4", "9"}
    assert {m.module: m.span for m in next(g for g in groups if g.name == "4").members} == {
        "4": 1,
        "5": 1,
        "9": 16,
    }
    keep = allocate(_scores(groups), groups, "channels", 0.4, scope)
    masks = channel_masks(model, groups, keep)
    assert set(masks) == {
        "0.weight",
        "1.weight",
        "1.bias",
        "4.weight",
        "5.weight",
        "5.bias",
        "9.weight",
        "9.bias",
    }
    apply_masks(model, masks)
    pruned = remove_channels(model, example, keep)
    kept = {name: int(mask.sum()) for name, mask in keep.items()}
    assert sum(p.numel() for p in pruned.parameters()) == _vgg_params(kept)
    assert check_same_outputs(model, pruned, torch.randn(16, 3, 16, 16)) < 1e-4


@pytest.mark.parametrize("method", ["l1_filter", "taylor"])
def test_a_structured_run_on_the_lenet5_preset_finishes(tmp_path, method):
    from prunebench.run.runner import execute

    config = RunConfig.from_preset("synthetic-tiny", method, "global", 0.5, 0, epochs=2)
    config = dataclasses.replace(config, track=Track("structured", "channels"))
    assert config.model == "lenet5"
    record = execute(config, CPU, tmp_path)
    structured = record["structured"]
    assert record["status"] == "ok", record.get("error")
    assert structured["channels_total"] == 6 + 16 + 120 + 84
    assert structured["channels_removed"] == pytest.approx(round(226 * 0.5) / 226)
    kept = {group["name"]: group["kept"] for group in structured["groups"]}
    # 16x16 inputs: 2x2 positions after conv 3; 4 classes
    assert structured["params_pruned"] == _lenet5_params(1, 4, kept, classes=4)
    assert structured["max_output_difference"] < 1e-4
