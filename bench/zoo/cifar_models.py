"""The standard pruning models: CIFAR ResNets and VGGs, and torchvision's ImageNet ResNets.

CIFAR ResNets follow He et al. 2016 (Sec. 4.2): three stages of ``n`` basic blocks at widths 16/32/64, depth
``6n + 2``. Shortcuts are **option B** (identity, and a strided 1x1 convolution with BatchNorm where the shape
changes), as in OpenLTH's ``cifar_resnet`` and GraSP's ``resnet``: the projections are ordinary convolutions, so
every method sees the same prunable set as the reference code. Option A's zero-padded identity has no weights and
would change that set; its parameter count differs by 0.003M on ResNet-20.

The VGGs are the CIFAR variants of OpenLTH ``cifar_vgg``, SynFlow ``lottery_vgg`` and GraSP ``vgg``: 3x3
convolutions with BatchNorm and ReLU, max pooling between stages, the last pooling replaced by global average
pooling and a single linear classifier (512 -> classes).

Weights are initialised by :func:`prunebench.zoo.model_zoo.kaiming_init` (Kaiming-normal, fan-in; BatchNorm at identity), as
in OpenLTH.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from prunebench.zoo.model_zoo import kaiming_init, register_model

VGG_PLANS: dict[int, list[int | str]] = {
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
}


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm; a 1x1 strided projection shortcut where the shape changes."""

    def __init__(self, f_in: int, f_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(f_in, f_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(f_out)
        self.conv2 = nn.Conv2d(f_out, f_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(f_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or f_in != f_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(f_in, f_out, 1, stride=stride, bias=False), nn.BatchNorm2d(f_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs, stage widths ``width``, ``2 width``, ``4 width``."""

    def __init__(self, depth: int, width: int, in_channels: int, num_classes: int) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet has depth 6n+2, got {depth}")
        blocks = (depth - 2) // 6
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        layers: list[nn.Module] = []
        f_in = width
        for stage in range(3):
            f_out = width * 2**stage
            for index in range(blocks):
                layers.append(BasicBlock(f_in, f_out, 2 if stage and index == 0 else 1))
                f_in = f_out
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(f_in, num_classes)
        kaiming_init(self)

    def forward(self, x: Tensor) -> Tensor:
        out = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def cifar_vgg(depth: int, in_channels: int, num_classes: int) -> nn.Module:
    """VGG-``depth`` with BatchNorm for 32x32 inputs: global average pooling and one linear layer at the end."""
    layers: list[nn.Module] = []
    channels = in_channels
    for item in VGG_PLANS[depth]:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        assert isinstance(item, int)
        layers += [nn.Conv2d(channels, item, 3, padding=1), nn.BatchNorm2d(item), nn.ReLU(inplace=True)]
        channels = item
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return kaiming_init(nn.Sequential(*layers))


@register_model(
    "resnet20",
    summary="CIFAR ResNet-20, widths 16/32/64 (0.27M parameters)",
    source="He et al. 2016 (CIFAR ResNets, option-B shortcuts as in OpenLTH)"
    "; ResNet-20 of Frankle et al. 2021 (OpenLTH)",
)
def resnet20(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return CifarResNet(20, 16, input_shape[0], num_classes)


@register_model(
    "resnet32",
    summary="CIFAR ResNet-32, widths 16/32/64 (0.46M parameters)",
    source="He et al. 2016 (CIFAR ResNets, option-B shortcuts as in OpenLTH)",
)
def resnet32(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return CifarResNet(32, 16, input_shape[0], num_classes)


@register_model(
    "resnet56",
    summary="CIFAR ResNet-56, widths 16/32/64 (0.86M parameters)",
    source="He et al. 2016 (CIFAR ResNets, option-B shortcuts as in OpenLTH)",
)
def resnet56(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return CifarResNet(56, 16, input_shape[0], num_classes)


@register_model(
    "resnet110",
    summary="CIFAR ResNet-110, widths 16/32/64 (1.7M parameters)",
    source="He et al. 2016 (CIFAR ResNets, option-B shortcuts as in OpenLTH)"
    "; the MaskSparsity and Network Slimming CIFAR setting",
)
def resnet110(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return CifarResNet(110, 16, input_shape[0], num_classes)


@register_model(
    "resnet32x2",
    summary="CIFAR ResNet-32, widths 32/64/128 (1.86M parameters)",
    source="He et al. 2016 (CIFAR ResNets, option-B shortcuts as in OpenLTH)"
    "; 2x width as in Wang et al. 2020 (GraSP) and ProbMask",
)
def resnet32x2(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return CifarResNet(32, 32, input_shape[0], num_classes)


@register_model(
    "vgg16",
    summary="VGG-16 with BatchNorm, CIFAR variant (global pooling, one linear layer; 14.7M parameters)",
    source="Simonyan & Zisserman 2015; CIFAR variant of OpenLTH and Tanaka et al. 2020 (SynFlow)",
)
def vgg16(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return cifar_vgg(16, input_shape[0], num_classes)


@register_model(
    "vgg19",
    summary="VGG-19 with BatchNorm, CIFAR variant (global pooling, one linear layer; 20.0M parameters)",
    source="Simonyan & Zisserman 2015; CIFAR variant of Wang et al. 2020 (GraSP) and ProbMask",
)
def vgg19(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return cifar_vgg(19, input_shape[0], num_classes)


@register_model(
    "resnet18",
    summary="torchvision ResNet-18 for ImageNet, untrained (11.7M parameters)",
    source="He et al. 2016; torchvision.models.resnet18(weights=None)",
)
def resnet18(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    from torchvision.models import resnet18 as build

    return build(weights=None, num_classes=num_classes)


@register_model(
    "resnet50",
    summary="torchvision ResNet-50 for ImageNet, untrained (25.6M parameters)",
    source="He et al. 2016; torchvision.models.resnet50(weights=None)",
)
def resnet50(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    from torchvision.models import resnet50 as build

    return build(weights=None, num_classes=num_classes)
