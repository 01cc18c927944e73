"""Where a run happens: the device it trains on and the library versions, recorded with every run."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from prunebench.core.errors import UsageError

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


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the system has one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        index = torch.cuda.current_device() if device.index is None else device.index
        return f"cuda:{index}: {torch.cuda.get_device_name(index)}"
    return f"cpu: {platform.machine()}, {torch.get_num_threads()} threads"


@functools.cache
def library_versions() -> dict[str, str]:
    """Python's and the libraries' versions, and ``prunebench_commit`` when prunebench runs from a git checkout."""
    versions = {"python": platform.python_version()}
    for package in ("prunebench", "torch", "torchvision", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "unknown"
    commit = source_commit()
    if commit is not None:
        versions["prunebench_commit"] = commit
    return versions


def source_commit() -> str | None:
    """The git commit of the checkout prunebench is imported from (``+dirty`` when tracked files changed), if any."""
    source = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(
                ["git", "-C", str(source), *args], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit or git("ls-files", "--error-unmatch", "__init__.py") is None:
        return None  # not a checkout, or an installed copy that merely lies inside one
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
