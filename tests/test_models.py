"""The standard pruning models: parameter counts against the papers, shapes, and the prunable set."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunebench.models import build_model, get_model
from prunebench.prunable import prunable_weights


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "millions", "tolerance"),
    [
        ("resnet20", 0.27, 0.01),  # He et al. 2016, Table 6
        ("resnet32", 0.46, 0.01),
        ("resnet56", 0.85, 0.01),
        ("resnet32x2", 1.86, 0.02),  # GraSP's 2x-width ResNet-32: four times the weights
        ("vgg16", 14.7, 0.1),
        ("vgg19", 20.0, 0.1),
    ],
)
def test_cifar_models_match_published_sizes(name, millions, tolerance):
    model = build_model(name, (3, 32, 32), 10)
    assert abs(_params(model) / 1e6 - millions) <= tolerance


@pytest.mark.parametrize(("name", "millions"), [("resnet18", 11.69), ("resnet50", 25.56)])
def test_imagenet_resnets_are_torchvision_sizes(name, millions):
    assert round(_params(build_model(name, (3, 224, 224), 1000)) / 1e6, 2) == millions


@pytest.mark.parametrize("name", ["resnet20", "resnet32x2", "vgg16"])
def test_cifar_models_give_logits_for_each_class(name):
    torch.manual_seed(0)
    model = build_model(name, (3, 32, 32), 100).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_resnet_shortcut_projections_are_prunable_convolutions():
    model = build_model("resnet20", (3, 32, 32), 10)
    names = list(prunable_weights(model))
    assert sum("shortcut" in n for n in names) == 2
    assert len(names) == 1 + 18 + 2 + 1  # stem, 9 blocks x 2 convs, 2 projections, classifier


def test_same_seed_same_initial_weights():
    weights = []
    for _ in range(2):
        torch.manual_seed(3)
        weights.append(build_model("resnet20", (3, 32, 32), 10).fc.weight.clone())
    assert torch.equal(*weights)
    assert get_model("resnet32x2").source
