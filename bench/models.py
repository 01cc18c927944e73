"""The model registry. A model is built from the dataset's input shape and class count.

Every convolutional and fully connected model of the registry initializes its Conv and Linear weights with
Kaiming-normal (fan-in, ReLU gain), biases at zero and normalization at identity, as the official code of SNIP (variance scaling), GraSP, SynFlow and OpenLTH do.
PyTorch's default (Kaiming-uniform with ``a = sqrt(5)``, a third of the variance) starves sparse networks at
initialization of signal: random pruning of LeNet-5 at 90% then never leaves chance level. The vision transformer
(:mod:`prunebench.vit`) follows its own paper's initialization.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from prunebench.errors import unknown

ModelBuilder = Callable[[tuple[int, ...], int], nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: ModelBuilder
    summary: str
    source: str


_MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, *, summary: str, source: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register ``build(input_shape, num_classes) -> nn.Module`` under ``name``."""

    def decorate(build: ModelBuilder) -> ModelBuilder:
        _MODELS[name] = ModelSpec(name, build, summary, source)
        return build

    return decorate


def kaiming_init(model: nn.Module) -> nn.Module:
    """Kaiming-normal (fan-in) Conv/Linear weights, zero biases, identity normalization; returns ``model``."""
    for module in model.modules():
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def get_model(name: str) -> ModelSpec:
    if name not in _MODELS:
        raise unknown("model", name, list(_MODELS))
    return _MODELS[name]


def all_models() -> list[ModelSpec]:
    return [_MODELS[name] for name in sorted(_MODELS)]


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A freshly initialized instance of the registered model (seed the global RNG first for a fixed init).

    ``hf:<config>`` builds a Hugging Face model from a configuration with random weights
    (:func:`prunebench.hf.build_hf_model`; needs the optional ``hf`` extra).
    """
    if name.startswith("hf:"):
        from prunebench.hf import build_hf_model

        return build_hf_model(name, tuple(input_shape), num_classes)
    return get_model(name).build(tuple(input_shape), num_classes)


@register_model(
    "lenet300_100",
    summary="Fully connected 300-100 network (266k weights on MNIST)",
    source="LeCun et al. 1998; the pruning baseline of Han et al. 2015 and Lee et al. 2019 (SNIP)",
)
def lenet300_100(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return kaiming_init(
        nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(input_shape), 300),
            nn.ReLU(),
            nn.Linear(300, 100),
            nn.ReLU(),
            nn.Linear(100, num_classes),
        )
    )


@register_model(
    "lenet5",
    summary="LeNet-5 (conv 6-16, fc 120-84) with ReLU and max pooling (61k weights on MNIST)",
    source="LeCun et al. 1998; the Caffe variant used by Han et al. 2015 and Lee et al. 2019 (SNIP)",
)
def lenet5(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    channels, height, width = input_shape
    if min(height, width) < 16:
        raise ValueError(f"lenet5 needs images of at least 16x16, got {height}x{width}")
    flat = 16 * ((height // 2 - 4) // 2) * ((width // 2 - 4) // 2)
    return kaiming_init(
        nn.Sequential(
            nn.Conv2d(channels, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(flat, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )
    )


from prunebench import cifar_models as _cifar_models  # noqa: E402, F401  (registers the CIFAR and ImageNet models)
from prunebench import vit as _vit  # noqa: E402, F401  (registers the vision transformer)
