"""The standard pruning models: parameter counts against the papers, shapes, and the prunable set."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from prunebench.pruning.prunable import prunable_weights
from prunebench.zoo.model_zoo import build_model, build_model_shapes, get_model


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


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("lenet300_100", (1, 28, 28)),
        ("resnet20", (3, 32, 32)),
        ("vit_tiny", (1, 28, 28)),
        ("cnn_bn", (1, 28, 28)),
    ],
)
def test_a_shapes_only_build_has_the_real_models_tensors_on_the_meta_device(name, shape):
    real = build_model(name, shape, 10)
    meta = build_model_shapes(name, shape, 10)
    assert {k: tuple(v.shape) for k, v in meta.state_dict().items()} == {
        k: tuple(v.shape) for k, v in real.state_dict().items()
    }
    assert all(t.is_meta for t in meta.state_dict().values())


def test_a_shapes_only_build_leaves_torch_compiler_stack_unimported():
    # On the meta device PyTorch runs normal_, erfinv_ and clamp_ through Python decompositions whose first use
    # imports torch._dynamo (about 2 s): planning a grid and `bench list prunable` build models this way.
    code = (
        "import sys\n"
        "from prunebench.zoo.model_zoo import build_model_shapes\n"
        "for name, shape in [('lenet300_100', (1, 28, 28)), ('resnet20', (3, 32, 32)), ('vit_tiny', (1, 28, 28))]:\n"
        "    build_model_shapes(name, shape, 10)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
