"""Models: the registered ones, and models given by reference. A model is built from the data's shape and class count.

``--model`` takes a registered name (``bench list models``), ``torchvision:NAME`` (a torchvision classification
model with random weights, no download; ``torchvision:NAME@WEIGHTS`` with a torchvision weights enum from the torch
hub cache, or ``torchvision:NAME@FILE`` with a local state dict, starts from those weights), ``hf:<config>`` (a
Hugging Face model from a configuration, random weights, or a pretrained checkpoint, see
:mod:`prunebench.zoo.hf_models`) or ``package.module:factory`` (the user's own code, called as
``factory(input_shape, num_classes)``; trained weights when it sets ``factory.pretrained = True``). Pretrained models
are :mod:`prunebench.zoo.pretrained`'s. Models from other packages register through the ``prunebench.models``
entry-point group. The registry itself (:func:`register_model`, :func:`all_models`) is
:mod:`prunebench.catalog.model_registry`, which imports no torch; this module re-exports it.

Every convolutional and fully connected model of the registry initializes its Conv and Linear weights with
Kaiming-normal (fan-in, ReLU gain), biases at zero and normalization at identity, as the official code of SNIP (variance scaling), GraSP, SynFlow and OpenLTH do.
PyTorch's default (Kaiming-uniform with ``a = sqrt(5)``, a third of the variance) starves sparse networks at
initialization of signal: random pruning of LeNet-5 at 90% then never leaves chance level. The vision transformer
(:mod:`prunebench.zoo.vit`) follows its own paper's initialization.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from prunebench.catalog.model_registry import MODELS, ModelSpec, register_model
from prunebench.catalog.model_registry import (
    all_models as all_models,  # re-exported: the registry's public names
)
from prunebench.core.errors import UsageError
from prunebench.core.references import load_reference, reference_version
from prunebench.zoo.pretrained import (
    STATE_SUFFIXES,
    PretrainedSpec,
    factory_spec,
    files_digest,
    is_pretrained,
    load_matching,
    load_state_file,
    weights_digest,
)

TORCHVISION = "torchvision:"


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
    """The model ``name``: registered, ``torchvision:NAME``, ``hf:<config>`` or ``package.module:factory``."""
    if name.startswith(TORCHVISION):
        return _torchvision_model(name[len(TORCHVISION) :])
    if name.startswith("hf:"):
        from prunebench.zoo.hf_models import hf_model_spec

        return hf_model_spec(name)
    if ":" in name:
        factory = load_reference(name, "model")
        return factory_spec(name, factory, reference_version(factory))
    return MODELS.get(name)


def pretrained_digest(name: str, input_shape: tuple[int, ...], num_classes: int) -> str | None:
    """The SHA-256 of the given weights of the model ``name`` on data of ``input_shape`` and ``num_classes`` (the
    run identity's ``weights``), or ``None`` for a model that starts from the seed's initialization."""
    return weights_digest(get_model(name), input_shape, num_classes)


def model_is_pretrained(name: str) -> bool:
    """Whether the model ``name`` starts from given weights (:mod:`prunebench.zoo.pretrained`)."""
    return is_pretrained(get_model(name))


def _torchvision_model(spec: str) -> ModelSpec:
    """A torchvision classification model adapted to the data's channels: random weights, or ``NAME@WEIGHTS``'s."""
    import torchvision
    from torchvision import models

    name, _, weights = spec.partition("@")
    known = models.list_models(module=models)
    if name not in known:
        raise UsageError(
            f"unknown torchvision model {name!r}; torchvision {torchvision.__version__} has: {', '.join(known)}"
        )
    version = f"torchvision-{torchvision.__version__.split('+')[0]}"
    if weights:
        return _torchvision_pretrained(f"{TORCHVISION}{spec}", name, weights, version)

    def build(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return _torchvision_for(name, input_shape, num_classes)

    return ModelSpec(
        f"{TORCHVISION}{name}",
        build,
        f"torchvision {name}, random weights (torchvision's own initialization)",
        f"torchvision.models.get_model({name!r}, weights=None)",
        version,
    )


def _torchvision_for(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    from torchvision import models

    return adapt_input_channels(models.get_model(name, weights=None, num_classes=num_classes), input_shape[0])


def _torchvision_pretrained(spec: str, name: str, weights: str, version: str) -> PretrainedSpec:
    """``torchvision:NAME@WEIGHTS`` (an enum member, from the torch hub cache) or ``torchvision:NAME@FILE`` (a
    state dict): the model built for the data, with the given tensors of every shape that fits it."""
    if weights.endswith(STATE_SUFFIXES) or os.sep in weights or "/" in weights:
        path = Path(weights).expanduser()
        files, source = [path], f"torchvision {name}, weights from {path.name}"

        def state() -> dict[str, torch.Tensor]:
            return load_state_file(path, spec)
    else:
        enum = _weights_enum(spec, name, weights)
        files, source = [_hub_file(enum)], f"torchvision {name}, {type(enum).__name__}.{enum.name}"

        def state() -> dict[str, torch.Tensor]:
            return _enum_state(spec, name, enum)

    def build(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return load_matching(_torchvision_for(name, input_shape, num_classes), state(), spec)

    def digest(input_shape: tuple[int, ...], num_classes: int) -> str:
        if not files[0].is_file():
            state()  # its one-line error: where the file is expected
        return files_digest(files)

    return PretrainedSpec(spec, build, f"{source} (pretrained)", source, version, digest)


def _weights_enum(spec: str, name: str, weights: str):
    from torchvision import models

    members = models.get_model_weights(name)
    try:
        return members[weights]
    except KeyError:
        raise UsageError(
            f"{spec!r}: torchvision {name} has no weights {weights!r}; it has: {', '.join(members.__members__)}"
            f" (or give a state dict file: torchvision:{name}@PATH{STATE_SUFFIXES[0]})"
        ) from None


def _hub_file(enum) -> Path:
    """Where torchvision keeps the file of the weights ``enum``: the torch hub cache's ``checkpoints/``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(enum.url).path)


def _enum_state(spec: str, name: str, enum) -> dict[str, torch.Tensor]:
    """The state dict of the weights ``enum`` through torchvision's own builder (which adapts old checkpoints),
    read from the torch hub cache only: a missing file is a one-line error saying where it is expected."""
    from torchvision import models

    path = _hub_file(enum)
    if not path.is_file():
        raise UsageError(
            f"{spec!r}: the weights {type(enum).__name__}.{enum.name} are not in the torch hub cache: expected "
            f"{path} (nothing is downloaded; fetch {enum.url} there, or set TORCH_HOME)"
        )
    with torch.device("cpu"):
        return models.get_model(name, weights=enum, progress=False).state_dict()


def adapt_input_channels(model: nn.Module, channels: int) -> nn.Module:
    """``model`` with its first convolution rebuilt for ``channels`` input channels when it expects others.

    torchvision's image models expect RGB; on one-channel data (the embedded MNIST) the first convolution gets the
    data's channel count and a fresh initialization of the same kind (PyTorch's default for ``Conv2d``).
    """
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            if module.in_channels != channels:
                replacement = nn.Conv2d(
                    channels,
                    module.out_channels,
                    module.kernel_size,
                    module.stride,
                    module.padding,
                    module.dilation,
                    module.groups,
                    module.bias is not None,
                    module.padding_mode,
                )
                parent, _, attribute = module_name.rpartition(".")
                setattr(model.get_submodule(parent) if parent else model, attribute, replacement)
            break
    return model


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A freshly initialized instance of the model ``name`` (seed the global RNG first for a fixed init); a builder
    that returns anything but a ``torch.nn.Module`` is a usage error."""
    model = get_model(name).build(tuple(input_shape), num_classes)
    if not isinstance(model, nn.Module):
        raise UsageError(f"model {name} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


_VALUE_FILLS = frozenset(
    {
        "normal_",
        "uniform_",
        "erfinv_",
        "clamp_",
        "clamp_min_",
        "clamp_max_",
        "exponential_",
        "log_normal_",
        "cauchy_",
        "geometric_",
    }
)
"""In-place operations that change a tensor's values only: what initialization functions call."""


class _SkipValueFills(torch.overrides.TorchFunctionMode):
    """The in-place fills of :data:`_VALUE_FILLS` return a meta tensor untouched: it has no values to fill. On the
    meta device PyTorch runs several of them (``normal_``, ``erfinv_``, ``clamp_``) through its Python
    decompositions, whose first use imports the compiler stack (``torch._dynamo``, about 2 s)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = args[0] if args else kwargs.get("tensor")  # torch.nn.init passes its tensor by keyword
        if getattr(func, "__name__", None) in _VALUE_FILLS and getattr(target, "is_meta", False):
            return target
        return func(*args, **kwargs)


def build_model_shapes(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The model ``name`` on the ``meta`` device: its modules and their tensors' shapes, without memory or values
    (initialization is skipped). Raises what the model's code raises where it cannot run on ``meta``."""
    with torch.device("meta"), _SkipValueFills():
        return build_model(name, input_shape, num_classes)


DRY_BATCH = 2
"""Examples in the dry forward of :func:`check_model_fits`."""


def _dry_input(model: nn.Module, input_shape: tuple[int, ...], device: torch.device | str) -> torch.Tensor:
    """A batch of :data:`DRY_BATCH` zero inputs for ``model``: token ids (``long``) when its first module with
    parameters is an ``Embedding`` (a language model), images or features (``float32``) otherwise."""
    first = next((m for m in model.modules() if next(m.parameters(recurse=False), None) is not None), None)
    dtype = torch.long if isinstance(first, nn.Embedding) else torch.float32
    return torch.zeros((DRY_BATCH, *input_shape), dtype=dtype, device=device)


def check_model_fits(
    name: str, input_shape: tuple[int, ...], num_classes: int, data: str
) -> tuple[nn.Module, torch.Tensor]:
    """The model ``name`` built for the data ``data`` and the inputs of one dry forward pass that checks it takes
    the data's inputs and returns one logit per class (per token and class for a language model on token ids); a
    one-line :class:`UsageError` otherwise (every run would
    fail, or a model of the wrong output width would train on logits no label reaches).

    The model is built and run on the ``meta`` device (shapes only, no memory, no values), in evaluation mode; where
    its code cannot run there, on the CPU. The model and inputs are on the device it ran on.
    """
    builders = (("meta", build_model_shapes), ("cpu", build_model))
    for device, build in builders:
        try:
            model = build(name, input_shape, num_classes)
            inputs = _dry_input(model, input_shape, device)
            output = _dry_forward(model, inputs)
            break
        except UsageError:
            raise
        except Exception as error:  # noqa: BLE001  (user code: on meta it may need real tensors; on the CPU it fails)
            if device == "meta":
                continue
            lines = str(error).strip().splitlines()
            reason = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
            raise UsageError(
                f"model {name} cannot take the inputs of {data} (shape {tuple(input_shape)}): {reason}"
            ) from None
    if not isinstance(output, torch.Tensor):
        raise UsageError(f"model {name} returns a {type(output).__name__}, not a tensor of logits")
    if tuple(output.shape) not in _logit_shapes(input_shape, num_classes):
        raise UsageError(
            f"model {name} gives outputs of shape {tuple(output.shape[1:])} per example on {data}, which has "
            f"{num_classes} classes: it must return one logit per class (per token, for a language model)"
        )
    return model, inputs


def _logit_shapes(input_shape: tuple[int, ...], num_classes: int) -> set[tuple[int, ...]]:
    """The output shapes of a dry batch that are logits: one per class, and on token ids of shape ``(length,)``
    also one per token and class (a language model's ``[B, T, V]``)."""
    shapes = {(DRY_BATCH, num_classes)}
    if len(input_shape) == 1:
        shapes.add((DRY_BATCH, input_shape[0], num_classes))
    return shapes


@torch.no_grad()
def _dry_forward(model: nn.Module, inputs: torch.Tensor) -> object:
    model.eval()
    return model(inputs)


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


class _ResidualBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and an identity shortcut (He et al. 2016's basic block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + x)


@register_model(
    "cnn_bn",
    summary="Small CNN with BatchNorm and one residual block (conv 16-32, block 32, fc; 28k weights on MNIST)",
    source="The structured track's CPU model: BatchNorm scales for Network Slimming and MaskSparsity, and a residual "
    "addition whose coupled channels are pruned together",
)
def cnn_bn(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    channels = input_shape[0]
    return kaiming_init(
        nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            _ResidualBlock(32),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, num_classes),
        )
    )
