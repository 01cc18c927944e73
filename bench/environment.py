"""Where a run happens: the device it trains on and the library versions, recorded with every run."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

import torch

from prunebench.errors import UsageError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU; ``cuda`` without a GPU is a usage error."""
    if name not in DEVICES:
        raise UsageError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but PyTorch sees no CUDA device; use --device cpu or auto")
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.machine()}, {torch.get_num_threads()} threads"


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("prunebench", "torch", "torchvision", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "unknown"
    return versions
