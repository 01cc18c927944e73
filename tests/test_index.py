"""The registry index: the committed file is what the modules register, a listing read from it imports no method
module, a module that registers other than the index states is an error naming the command that refreshes it, and
methods may be dataclasses."""

from __future__ import annotations

import importlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pytest

from prunebench.catalog import registry_index as declarations
from prunebench.cli import main
from prunebench.methods.base import ScoringMethod

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_index_is_what_the_modules_register():
    """The index built afresh (in a new interpreter, every module imported) equals the committed file."""
    code = "import sys\nfrom prunebench.catalog.index_builder import index_text\nsys.stdout.write(index_text())\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    committed = declarations.INDEX_FILE.read_text(encoding="utf-8")
    assert result.stdout == committed, f"the registry index is stale: run `{declarations.REBUILD}`"


def test_the_index_lists_every_module_of_the_package_and_what_the_listings_show():
    from prunebench.methods import method_registry as registry

    index = declarations.read_index()
    assert set(index["methods"]) == set(registry.package_modules())  # base.py, masked.py... listed, empty
    assert index["methods"]["prunebench.methods.base"] == []
    (magnitude,) = index["methods"]["prunebench.methods.magnitude"]
    assert {a["name"]: a["schedule"] for a in magnitude["aliases"]}.items() >= {
        "gmp": "gradual",
        "imp": "iterative",
    }.items()
    assert {record["name"] for records in index["models"].values() for record in records} >= {
        "lenet5",
        "vgg16",
    }
    (embedded,) = [r for r in index["datasets"]["prunebench.datasets.embedded"] if r["name"] == "mnist5k"]
    assert embedded["num_classes"] == 10 and embedded["input_shape"] == [1, 28, 28]


def test_an_unreadable_index_names_the_command_that_rewrites_it(tmp_path, monkeypatch):
    broken = tmp_path / "registry_index.json"
    broken.write_text('{"methods": {}}')
    monkeypatch.setattr(declarations, "INDEX_FILE", broken)
    declarations.read_index.cache_clear()
    try:
        with pytest.raises(RuntimeError, match=r"has no models: run `python scripts/build_index.py`"):
            declarations.read_index()
        broken.write_text("{")
        with pytest.raises(RuntimeError, match=r"cannot be read .*: run `python scripts/build_index.py`"):
            declarations.read_index()
    finally:
        declarations.read_index.cache_clear()


@dataclass
class Smoothed(ScoringMethod):
    """|w| times a constant (a dataclass method)."""

    scale: Annotated[float, "factor on the scores"] = 0.5
    rounds: int | None = 3

    def scores(self, model, weights, data):
        return {name: w.detach().abs() * self.scale for name, w in weights.items()}


def test_a_dataclass_method_lists_its_hyperparameters(capsys, method_registry):
    method_registry.register("smoothed", schedule="at_init", scopes=("global",), paper="a test")(Smoothed)
    assert main(["list", "methods", "--details", "smoothed"]) == 0
    out = capsys.readouterr().out
    rows = [line.split("│")[1:-1] for line in out.splitlines() if line.startswith("│")]
    assert [[cell.strip() for cell in row] for row in rows] == [
        ["scale", "float", "0.5", "factor on the scores"],
        ["rounds", "int | None", "3", "-"],
    ]
    assert method_registry.get_method("smoothed").resolve({"rounds": "none"}) == {
        "scale": 0.5,
        "rounds": None,
    }


PLUGIN = '''
from dataclasses import dataclass

from prunebench.methods.base import ScoringMethod
from prunebench.methods.method_registry import register


@register("{name}", schedule="at_init", scopes=("global",), paper="a test", version={version})
@dataclass
class Scaled(ScoringMethod):
    """Scores times a constant."""

    scale: float = {default}

    def scores(self, model, weights, data):
        return {{name: w.detach().abs() * self.scale for name, w in weights.items()}}
'''


def _record(name: str, default: float = 0.5, version: int = 1) -> dict:
    """The index's record of :data:`PLUGIN` registered as ``name`` with ``default`` and ``version``."""
    return {
        "name": name,
        "class": "Scaled",
        "summary": "Scores times a constant.",
        "schedules": ["at_init"],
        "scopes": ["global"],
        "paper": "a test",
        "version": version,
        "track": "unstructured",
        "hparams": [{"name": "scale", "type_name": "float", "default": default, "help": ""}],
        "aliases": [{"name": f"{name}_alias", "schedule": "at_init", "scopes": None, "paper": "its own"}],
    }


def _plugin(tmp_path, monkeypatch, name: str, default: float = 0.5, version: int = 1) -> None:
    (tmp_path / f"{name}.py").write_text(PLUGIN.format(name=name, default=default, version=version))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)


def test_a_declared_dataclass_method_is_listed_from_the_index_then_imported(
    tmp_path, monkeypatch, method_registry
):
    name = "indexed_scaled"
    _plugin(tmp_path, monkeypatch, name)
    declarations.declare_modules("methods", [name], method_registry._declare, index={name: [_record(name)]})
    spec = method_registry.get_method(f"{name}_alias")
    assert (spec.criterion, spec.paper) == (name, "its own")
    assert [(h.name, h.default) for h in spec.listed_hparams().values()] == [("scale", 0.5)]
    assert name not in sys.modules  # listed from the index
    assert spec.cls.__name__ == "Scaled" and name in sys.modules  # imported on use, checked against the index
    assert spec.resolve({"scale": 2}) == {"scale": 2.0}


@pytest.mark.parametrize("imported_first", [False, True])
@pytest.mark.parametrize("changed", ["version", "default"])
def test_a_method_that_registers_other_than_the_index_is_an_error(
    tmp_path, monkeypatch, method_registry, imported_first, changed
):
    name = f"stale_{changed}_{int(imported_first)}"
    registered = {"version": 2} if changed == "version" else {"default": 0.7}
    _plugin(tmp_path, monkeypatch, name, **registered)
    declare = [name], method_registry._declare
    expected = {
        "version": r"registers version=2, but the registry index \(registry_index.json\) states version=1: ",
        "default": r"registers scale=\('float', 0.7, ''\), but .* states scale=\('float', 0.5, ''\): ",
    }[changed] + r"the index is stale; run `python scripts/build_index.py`"
    if imported_first:
        importlib.import_module(name)
        with pytest.raises(ValueError, match=expected):
            declarations.declare_modules("methods", *declare, index={name: [_record(name)]})
        return
    declarations.declare_modules("methods", *declare, index={name: [_record(name)]})
    with pytest.raises(ValueError, match=expected):
        method_registry.get_method(name).cls  # noqa: B018  (importing the class checks it)


def test_a_module_the_index_does_not_list_is_imported(tmp_path, monkeypatch, method_registry):
    name = "unlisted_scaled"
    _plugin(tmp_path, monkeypatch, name, default=0.25)
    declarations.declare_modules("methods", [name], method_registry._declare, index={})
    assert name in sys.modules
    assert method_registry.get_method(name).hparams["scale"].default == 0.25
