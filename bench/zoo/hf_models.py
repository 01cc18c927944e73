"""Hugging Face ``transformers`` models as harness models: built from a configuration (random weights) or loaded
from a pretrained checkpoint, offline.

A model spec is ``hf:<name>[,key=value...]``, where ``<name>`` is

* a model type, ``hf:bert,hidden_size=64,num_hidden_layers=2`` (``transformers.AutoConfig.for_model``), or the path
  of a local ``config.json`` (``hf:path/to/config.json``): built with ``from_config``, so its weights are the
  architecture's own random initialization (seed the global RNG first for a fixed init);
* a local checkpoint directory (``config.json`` beside ``model.safetensors`` or ``pytorch_model.bin``, as
  ``save_pretrained`` writes it) or a hub id whose files are in the Hugging Face cache (``hf:org/name``): loaded with
  ``from_pretrained(..., local_files_only=True)``, a pretrained model (:mod:`prunebench.zoo.pretrained`) whose
  weight files' SHA-256 enters the run id. Nothing is ever downloaded: a hub id not in the cache is a one-line error.

The ``key=value`` overrides are configuration fields (values read as JSON numbers, booleans or ``null`` where they
parse, as strings otherwise), except ``task``, which picks the head: ``classification`` or ``causal-lm``.

The task follows the input shape: ``(channels, height, width)`` builds ``AutoModelForImageClassification`` with
``num_channels`` and ``image_size`` set from it; ``(length,)`` (token ids) builds ``AutoModelForCausalLM`` for
``task=causal-lm`` or a checkpoint whose ``architectures`` is a causal LM (``...ForCausalLM``, ``...LMHeadModel``), its
logits ``[B, T, V]`` one per token over a vocabulary that must be the data's class count, and
``AutoModelForSequenceClassification`` otherwise; ``num_labels`` is the class count. A checkpoint's tensors whose
shape the data changes (a classifier for another class count, an image embedding for other channels) keep the
architecture's initialization (``ignore_mismatched_sizes``). The harness calls ``model(inputs)`` and expects logits,
so the model is wrapped in :class:`LogitsOf`, which passes ``inputs`` as the model's main input (``pixel_values`` or
``input_ids``) and returns ``.logits``. Its parameter names are the Hugging Face ones under ``model.``.

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

TASKS = ("classification", "causal-lm")
"""The heads the ``task`` option picks."""

CAUSAL_LM_ARCHITECTURES = ("ForCausalLM", "LMHeadModel")
"""How the class names of causal language models end (``GPT2LMHeadModel``, ``LlamaForCausalLM``)."""

WEIGHT_FILES = ("model*.safetensors", "pytorch_model*.bin")
"""The weight files of a checkpoint directory, in the order ``transformers`` prefers them (shards included)."""


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


def _transformers(spec: str) -> Any:
    try:
        import transformers
    except ImportError as error:
        raise UsageError(
            f"{spec!r} needs the optional transformers package: pip install 'prunebench[hf]'"
        ) from error
    return transformers


def _task(spec: str, overrides: dict[str, Any]) -> str | None:
    """The ``task`` option, taken out of ``overrides`` (``None`` when not given)."""
    task = overrides.pop("task", None)
    if task is not None and task not in TASKS:
        raise UsageError(f"{spec!r}: task={task!r} is not one of {', '.join(TASKS)}")
    return task


def checkpoint_dir(spec: str) -> Path | None:
    """The local directory of the pretrained checkpoint ``spec`` names (a directory, or a hub id's snapshot in the
    Hugging Face cache), or ``None`` for a configuration (a model type or a ``config.json``)."""
    transformers = _transformers(spec)
    name, _ = parse_spec(spec)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UsageError(
                f"{spec!r}: the directory {path} has no config.json (save_pretrained writes one)"
            )
        return path
    if name.endswith(".json") or name in transformers.CONFIG_MAPPING:
        return None
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.constants import HF_HUB_CACHE

    try:
        cached = try_to_load_from_cache(name, "config.json")
    except ValueError:  # not a valid hub id (huggingface_hub's HFValidationError)
        cached = None
    if isinstance(cached, str):
        return Path(cached).parent
    close = difflib.get_close_matches(name, list(transformers.CONFIG_MAPPING.keys()), n=5, cutoff=0.6)
    hint = f"closest: {', '.join(close)}" if close else "see transformers.CONFIG_MAPPING"
    raise UsageError(
        f"{spec!r}: unknown Hugging Face model type {name!r}; {hint} (nor is it a local directory or a model in "
        f"the Hugging Face cache {HF_HUB_CACHE}; nothing is downloaded)"
    )


def weight_files(spec: str, directory: Path) -> list[Path]:
    """The weight files of a checkpoint directory (:data:`WEIGHT_FILES`, the first kind present); a one-line error
    when it has none."""
    for pattern in WEIGHT_FILES:
        found = sorted(directory.glob(pattern))
        if found:
            return found
    raise UsageError(
        f"{spec!r}: {directory} has a config.json but no weights (model.safetensors or pytorch_model.bin); "
        f"for random weights name the file: {PREFIX}{directory / 'config.json'}"
    )


def build_config(spec: str) -> Any:
    """The ``transformers`` configuration of ``spec`` (a ``PretrainedConfig``): a model type's, a local file's or a
    pretrained checkpoint's, with the overrides (``task`` aside)."""
    transformers = _transformers(spec)
    name, overrides = parse_spec(spec)
    _task(spec, overrides)
    checkpoint = checkpoint_dir(spec)
    if checkpoint is not None:
        config = transformers.AutoConfig.from_pretrained(checkpoint, local_files_only=True, **overrides)
    elif name.endswith(".json"):
        if not Path(name).is_file():
            raise UsageError(f"{spec!r}: no such configuration file {name}")
        config = transformers.AutoConfig.from_pretrained(name, **overrides)
    else:
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


def _is_causal_lm(spec: str, config: Any, pretrained: bool) -> bool:
    """Whether ``spec`` is a causal language model: ``task=causal-lm``, or a checkpoint of one without ``task``."""
    task = _task(spec, parse_spec(spec)[1])
    if task is not None:
        return task == "causal-lm"
    return pretrained and any(a.endswith(CAUSAL_LM_ARCHITECTURES) for a in config.architectures or ())


def _auto_class(
    spec: str, config: Any, input_shape: tuple[int, ...], num_classes: int, pretrained: bool
) -> Any:
    """The ``transformers`` auto class of the task (see the module docstring), ``config`` set for the data."""
    import transformers

    config.num_labels = num_classes
    if len(input_shape) == 3:
        channels, height, width = input_shape
        if height != width:
            raise UsageError(f"{spec!r}: Hugging Face image models take square images, got {height}x{width}")
        config.num_channels = channels
        config.image_size = height
        return transformers.AutoModelForImageClassification
    if len(input_shape) != 1:
        raise UsageError(
            f"{spec!r}: inputs of shape {tuple(input_shape)} are neither images (C, H, W) nor token ids (length,)"
        )
    if not _is_causal_lm(spec, config, pretrained):
        return transformers.AutoModelForSequenceClassification
    if pretrained and config.vocab_size != num_classes:
        raise UsageError(
            f"{spec!r}: the language model's vocabulary has {config.vocab_size} tokens, the data's {num_classes}"
        )
    config.vocab_size = num_classes
    return transformers.AutoModelForCausalLM


def build_hf_model(spec: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The Hugging Face model of ``spec`` for the data, returning logits: random weights from a configuration, or a
    checkpoint's (offline)."""
    config = build_config(spec)
    checkpoint = checkpoint_dir(spec)
    auto = _auto_class(spec, config, tuple(input_shape), num_classes, checkpoint is not None)
    try:
        if checkpoint is None:
            model = auto.from_config(config)
        else:
            model = auto.from_pretrained(
                checkpoint, config=config, local_files_only=True, ignore_mismatched_sizes=True
            )
    except (ValueError, OSError) as error:
        raise UsageError(f"{spec!r}: {str(error).strip().splitlines()[0]}") from error
    return LogitsOf(model)


def hf_model_spec(spec: str) -> ModelSpec:
    """The model registry's entry for ``hf:<name>``: the builder, and a version (part of a run's id) made of the
    ``transformers`` version and a hash of the resolved configuration, so that editing a ``config.json`` or
    upgrading ``transformers`` re-runs the runs that use it. A checkpoint's entry is a
    :class:`~prunebench.zoo.pretrained.PretrainedSpec` whose digest is its weight files' SHA-256."""
    import transformers

    from prunebench.catalog.model_registry import ModelSpec
    from prunebench.core.hashing import stable_hash
    from prunebench.zoo.pretrained import PretrainedSpec, files_digest

    config = build_config(spec).to_dict()
    config.pop("transformers_version", None)
    fields = {
        "name": spec,
        "build": lambda input_shape, num_classes: build_hf_model(spec, input_shape, num_classes),
        "source": spec,
        "version": f"transformers-{transformers.__version__}-config-{stable_hash(config)}",
    }
    kind = config.get("model_type", "model")
    checkpoint = checkpoint_dir(spec)
    if checkpoint is None:
        return ModelSpec(summary=f"Hugging Face {kind} from a configuration, random weights", **fields)
    files = weight_files(spec, checkpoint)
    return PretrainedSpec(
        summary=f"Hugging Face {kind}, pretrained ({checkpoint.name})",
        digest=lambda input_shape, num_classes: files_digest(files),
        **fields,
    )
