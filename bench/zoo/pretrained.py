"""Pretrained starting points: the given weights a model spec names, loaded offline, and their content hash.

Four kinds of model start from given weights instead of the seed's initialization (``docs/models-and-data.md``,
"Pretrained models"): ``torchvision:NAME@WEIGHTS`` (a torchvision weights enum, from the torch hub cache),
``torchvision:NAME@FILE`` (a local state dict, ``.pt``/``.pth``/``.safetensors``), ``hf:`` on a local checkpoint
directory or a Hugging Face cache entry (:mod:`prunebench.zoo.hf_models`), and a ``package.module:factory`` that
declares ``factory.pretrained = True``. Their spec is a :class:`PretrainedSpec`, whose :attr:`~PretrainedSpec.digest`
is the SHA-256 of the weights: it enters the run's identity (``weights``), so that other weights are another run.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunebench.catalog.model_registry import ModelSpec
from prunebench.core.errors import UsageError

STATE_SUFFIXES = (".pt", ".pth", ".safetensors")
"""The file types of a state dict given by path."""

FACTORY_FLAG = "pretrained"
"""The attribute a ``module:factory`` sets to ``True`` to say that it returns trained weights."""


@dataclass(frozen=True)
class PretrainedSpec(ModelSpec):
    """A model whose builder returns given weights; ``digest(input_shape, num_classes)`` is their SHA-256."""

    digest: Callable[[tuple[int, ...], int], str] | None = None


def is_pretrained(spec: ModelSpec) -> bool:
    """Whether the model of ``spec`` starts from given weights."""
    return isinstance(spec, PretrainedSpec)


def weights_digest(spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int) -> str | None:
    """The SHA-256 of the given weights of ``spec``'s model on data of ``input_shape`` and ``num_classes`` (the run
    identity's ``weights``), or ``None`` for a model that starts from the seed's initialization."""
    if not isinstance(spec, PretrainedSpec) or spec.digest is None:
        return None
    return spec.digest(tuple(input_shape), num_classes)


@functools.lru_cache(maxsize=64)
def _file_sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def files_digest(paths: Iterable[Path]) -> str:
    """SHA-256 of the files ``paths`` (one file: its own SHA-256; several, as a sharded checkpoint: the SHA-256 of
    their names and SHA-256s in order). Each file is read once per size and modification time."""
    hashes = []
    for path in paths:
        resolved = Path(path).resolve()
        stat = resolved.stat()
        hashes.append((Path(path).name, _file_sha256(resolved, stat.st_size, stat.st_mtime_ns)))
    if len(hashes) == 1:
        return hashes[0][1]
    return hashlib.sha256("".join(f"{name}:{sha}\n" for name, sha in hashes).encode()).hexdigest()


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's tensors in sorted name order: each name, dtype, shape and raw bytes."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_state_file(path: Path, spec: str) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (``.safetensors`` through ``safetensors``, ``.pt``/``.pth`` through
    ``torch.load(weights_only=True)``, on the CPU); a one-line usage error when it is missing or holds no state dict."""
    if not path.is_file():
        raise UsageError(f"{spec!r}: no such weights file {path}")
    if path.suffix not in STATE_SUFFIXES:
        raise UsageError(f"{spec!r}: {path.name} is not a state dict file ({', '.join(STATE_SUFFIXES)})")
    if path.suffix == ".safetensors" and importlib.util.find_spec("safetensors") is None:
        raise UsageError(f"{spec!r}: reading {path.name} needs safetensors: pip install 'prunebench[hf]'")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001  (truncated, not a torch file, unsafe pickle: all unusable)
        reason = " ".join(f"{type(error).__name__}: {error}".split())  # one line
        raise UsageError(f"{spec!r}: cannot read {path}: {reason}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"{spec!r}: {path} holds a {type(state).__name__}, not a state dict of tensors")
    return state


def load_matching(model: nn.Module, state: Mapping[str, Any], spec: str) -> nn.Module:
    """``model`` with the tensors of ``state`` (a usage error naming one when their names differ from the model's).

    A tensor whose shape differs from the model's keeps the model's own initialization: the classifier of a model
    built for another class count, the first convolution rebuilt for the data's channels. On the ``meta`` device
    (shapes only) the names are checked and nothing is copied."""
    expected = model.state_dict()
    missing, unknown = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    if missing or unknown:
        parts = [f"{len(missing)} of the model's tensors missing (e.g. {missing[0]})"] if missing else []
        parts += [f"{len(unknown)} tensors the model does not have (e.g. {unknown[0]})"] if unknown else []
        raise UsageError(f"{spec!r}: the weights do not fit the model: {', '.join(parts)}")
    if any(tensor.is_meta for tensor in expected.values()):
        return model
    fitting = {
        name: value for name, value in state.items() if tuple(value.shape) == tuple(expected[name].shape)
    }
    model.load_state_dict(fitting, strict=False)
    return model


def factory_spec(name: str, factory: Callable[..., nn.Module], version: str) -> ModelSpec:
    """The spec of ``package.module:factory``: a :class:`PretrainedSpec` when the factory declares
    :data:`FACTORY_FLAG`, whose digest hashes the state dict of the model it returns for the data (built once on the
    CPU with the random stream seeded 0, the caller's stream untouched)."""
    summary = f"{name} (user code)"
    if getattr(factory, FACTORY_FLAG, False) is not True:
        return ModelSpec(name, factory, summary, name, version)

    def digest(input_shape: tuple[int, ...], num_classes: int) -> str:
        return _factory_digest(factory, tuple(input_shape), num_classes)

    return PretrainedSpec(name, factory, f"{summary}, trained weights", name, version, digest)


@functools.lru_cache(maxsize=16)
def _factory_digest(factory: Callable[..., nn.Module], input_shape: tuple[int, ...], num_classes: int) -> str:
    with torch.random.fork_rng(devices=[]), torch.device("cpu"):
        torch.manual_seed(0)
        model = factory(input_shape, num_classes)
    if not isinstance(model, nn.Module):
        raise UsageError(
            f"model factory {factory.__name__} returned a {type(model).__name__}, not a torch.nn.Module"
        )
    return state_digest(model.state_dict())
