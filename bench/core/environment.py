"""Where a run happens: the device it trains on, the machine under it and the library versions, recorded with every
run."""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

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


def machine(device: torch.device) -> dict[str, Any]:
    """The machine a run computes on, as far as it changes the last bits of a result: the CPU model, the instruction
    set PyTorch's CPU kernels dispatch to (``cpu_capability``: ``AVX512``, ``AVX2``, ``DEFAULT``, ...; the
    ``ATEN_CPU_CAPABILITY`` variable lowers it), torch's intra-op threads and, on a CUDA device, its name, compute
    capability, driver, CUDA runtime and cuDNN versions. The static facts are read once per process."""
    found: dict[str, Any] = {**_cpu(), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        found.update(_cuda(torch.cuda.current_device() if device.index is None else device.index))
    return found


@functools.cache
def _cpu() -> dict[str, str]:
    return {
        "cpu": cpu_model(),
        "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "arch": platform.machine() or "unknown",
    }


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s ``model name``, else what :mod:`platform` knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@functools.cache
def _cuda(index: int) -> dict[str, Any]:
    major, minor = torch.cuda.get_device_capability(index)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "cuda_device": torch.cuda.get_device_name(index),
        "cuda_capability": f"{major}.{minor}",
        "cuda_driver": cuda_driver(),
        "cuda_runtime": torch.version.cuda,
        "cudnn": cudnn,
    }


def cuda_driver() -> str | None:
    """The NVIDIA driver's version: from NVML where ``pynvml`` is installed, else from ``nvidia-smi`` where it is on
    the path (torch itself does not expose it); ``None`` where neither answers."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            found = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        return found.decode() if isinstance(found, bytes) else str(found)
    except Exception:  # noqa: BLE001  (not installed, no driver, or an NVML error: try nvidia-smi)
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        result = subprocess.run(
            [smi, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = result.stdout.split()
    return lines[0] if result.returncode == 0 and lines else None


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
