"""Hugging Face ``transformers`` models built from a configuration, with random weights, as harness models.

A model spec is ``hf:<config>``, where ``<config>`` is either a model type with optional overrides,
``hf:bert,hidden_size=64,num_hidden_layers=2`` (``transformers.AutoConfig.for_model``; values are read as JSON
numbers, booleans or ``null`` where they parse, as strings otherwise), or the path of a local ``config.json``
(``hf:path/to/config.json``). Nothing is downloaded: the model is built with ``from_config``, so its weights are the
architecture's own random initialization (seed the global RNG first for a fixed init), never pre-trained ones.

The task follows the input shape: ``(channels, height, width)`` builds ``AutoModelForImageClassification`` with
``num_channels`` and ``image_size`` set from it, ``(length,)`` builds ``AutoModelForSequenceClassification`` over
token ids; ``num_labels`` is the class count. The harness calls ``model(inputs)`` and expects logits, so the model is
wrapped in :class:`LogitsOf`, which passes ``inputs`` as the model's main input (``pixel_values`` or ``input_ids``)
and returns ``.logits``. Its parameter names are the Hugging Face ones under ``model.``.

Needs the optional ``hf`` extra (``pip install 'prunebench[hf]'``).
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from prunebench.core.errors import UsageError

if TYPE_CHECKING:
    from prunebench.catalog.model_registry import ModelSpec

PREFIX = "hf:"


class LogitsOf(nn.Module):
    """``model(inputs)`` of a Hugging Face model as a tensor of logits: ``model(**{main_input_name: inputs}).logits``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.input_name: str = model.main_input_name

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**{self.input_name: inputs}).logits


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``(model type or config path, overrides)`` of ``hf:<config>`` (the prefix is optional)."""
    body = spec.removeprefix(PREFIX)
    name, *pairs = body.split(",")
    if not name:
        raise UsageError(
            f"{spec!r}: name a model type or a config.json after {PREFIX} (e.g. hf:bert,hidden_size=64)"
        )
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{spec!r}: {pair!r} is not key=value")
        overrides[key.strip()] = _value(value.strip())
    return name, overrides


def build_config(spec: str) -> Any:
    """The ``transformers`` configuration of ``spec`` (a ``PretrainedConfig``), from a model type or a local file."""
    try:
        import transformers
    except ImportError as error:
        raise UsageError(
            f"{spec!r} needs the optional transformers package: pip install 'prunebench[hf]'"
        ) from error
    name, overrides = parse_spec(spec)
    if name.endswith(".json"):
        if not Path(name).is_file():
            raise UsageError(f"{spec!r}: no such configuration file {name}")
        config = transformers.AutoConfig.from_pretrained(name, **overrides)
    else:
        types = list(transformers.CONFIG_MAPPING.keys())
        if name not in types:
            close = difflib.get_close_matches(name, types, n=5, cutoff=0.6)
            hint = f"closest: {', '.join(close)}" if close else "see transformers.CONFIG_MAPPING"
            raise UsageError(f"{spec!r}: unknown Hugging Face model type {name!r}; {hint}")
        try:
            config = transformers.AutoConfig.for_model(name, **overrides)
        except ValueError as error:
            raise UsageError(f"{spec!r}: {str(error).splitlines()[0]}") from error
    _check_keys(spec, config, overrides)
    return config


def _check_keys(spec: str, config: Any, overrides: dict[str, Any]) -> None:
    """Refuse an override that is no field of ``config``'s class: ``transformers`` keeps any keyword as an
    attribute and ignores it, so a typo would silently build the architecture's default size."""
    try:
        default = type(config)()
    except Exception:  # noqa: BLE001  (a composite configuration has no defaults to list its keys from)
        return
    fields = set(default.to_dict()) | set(type(config).attribute_map)
    fields |= {key for key in dir(type(config)) if isinstance(getattr(type(config), key), property)}
    for key in overrides:
        if key not in fields:
            close = difflib.get_close_matches(key, sorted(fields), n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise UsageError(f"{spec!r}: {config.model_type} has no configuration key {key!r}{hint}")


def build_hf_model(spec: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A Hugging Face classifier built from ``spec`` (``hf:<config>``) with random weights, returning logits."""
    import transformers

    config = build_config(spec)
    config.num_labels = num_classes
    if len(input_shape) == 3:
        channels, height, width = input_shape
        if height != width:
            raise UsageError(f"{spec!r}: Hugging Face image models take square images, got {height}x{width}")
        config.num_channels = channels
        config.image_size = height
        auto = transformers.AutoModelForImageClassification
    elif len(input_shape) == 1:
        auto = transformers.AutoModelForSequenceClassification
    else:
        raise UsageError(
            f"{spec!r}: inputs of shape {tuple(input_shape)} are neither images (C, H, W) nor token ids (length,)"
        )
    try:
        model = auto.from_config(config)
    except ValueError as error:
        raise UsageError(f"{spec!r}: {str(error).splitlines()[0]}") from error
    return LogitsOf(model)


def hf_model_spec(spec: str) -> ModelSpec:
    """The model registry's entry for ``hf:<config>``: the builder, and a version (part of a run's id) made of the
    ``transformers`` version and a hash of the resolved configuration, so that editing a ``config.json`` or
    upgrading ``transformers`` re-runs the runs that use it."""
    import transformers

    from prunebench.catalog.model_registry import ModelSpec
    from prunebench.core.hashing import stable_hash

    config = build_config(spec).to_dict()
    config.pop("transformers_version", None)
    return ModelSpec(
        name=spec,
        build=lambda input_shape, num_classes: build_hf_model(spec, input_shape, num_classes),
        summary=f"Hugging Face {config.get('model_type', 'model')} from a configuration, random weights",
        source=spec,
        version=f"transformers-{transformers.__version__}-config-{stable_hash(config)}",
    )
