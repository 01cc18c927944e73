"""The registries of methods, datasets and models: declarations read from the source are checked against what
runs, and other packages register through an entry point."""

from __future__ import annotations

import importlib.metadata

import pytest

from prunebench.errors import UsageError
from prunebench.methods import registry

OUTSIDE_METHOD = '''
import torch
from prunebench.methods.base import ScoringMethod
from prunebench.methods.registry import register


@register("outside_magnitude", schedule="at_init", scopes=("global",), paper="a method from another package")
class OutsideMagnitude(ScoringMethod):
    """|w| at initialization, registered from outside the repository."""

    def scores(self, model, weights, data):
        return {name: w.detach().abs() for name, w in weights.items()}
'''


def test_a_method_from_another_package_registers_through_its_entry_point(
    tmp_path, monkeypatch, method_registry
):
    (tmp_path / "outside_package_method.py").write_text(OUTSIDE_METHOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry._CLASSES, "_loaded", False)
    entry = importlib.metadata.EntryPoint("outside", "outside_package_method", "prunebench.methods")
    monkeypatch.setattr(
        importlib.metadata, "entry_points", lambda group: [entry] if group == entry.group else []
    )
    spec = registry.get_method("outside_magnitude")
    assert spec.schedule == "at_init" and spec.scopes == ("global",)
    assert "magnitude" in {
        s.name for s in registry.all_methods()
    }  # the package's own methods are still there


def test_declarations_are_checked():
    with pytest.raises(ValueError, match="schedule"):
        registry.register("x", schedule="sometimes", scopes=(), paper="")
    with pytest.raises(ValueError, match="scopes"):
        registry.register("x", schedule="at_init", scopes=("everywhere",), paper="")


def test_every_registered_method_declares_a_paper_and_a_summary():
    for spec in registry.all_methods():
        assert spec.paper and spec.summary, spec.name
        if spec.schedule != "dense":
            assert spec.scopes, spec.name


def test_unknown_method_lists_the_registry():
    with pytest.raises(UsageError, match="registered: .*probmask"):
        registry.get_method("nonexistent")


def test_existing_names_mean_what_they_meant_as_criterion_and_schedule():
    expected = {
        "magnitude": ("magnitude", "after_training"),
        "magnitude_init": ("magnitude", "at_init"),
        "gmp": ("magnitude", "gradual"),
        "imp": ("magnitude", "iterative"),
        "random": ("random", "at_init"),
        "lamp": ("lamp", "after_training"),
    }
    for name, key in expected.items():
        spec = registry.get_method(name)
        assert (spec.criterion, spec.schedule) == key, name
        assert registry.get_method("@".join(key)).name == name  # an alias is shown under its name
    assert registry.get_method("magnitude_init").summary.startswith(
        "Keep the largest |w|: score once at init"
    )
    assert registry.get_method("random@after_training").name == "random@after_training"
    with pytest.raises(UsageError, match="runs under the schedules at_init"):
        registry.get_method("snip@gradual")


def test_the_declarations_read_from_the_source_are_those_that_run():
    """Every built-in method is read without importing its module; importing it registers the same entry."""
    import pkgutil
    from pathlib import Path

    import prunebench.methods
    from prunebench.declarations import read_declarations

    read = 0
    for module in pkgutil.iter_modules(prunebench.methods.__path__):
        if module.name in registry._MACHINERY:
            continue
        found = read_declarations(Path(module.module_finder.path) / f"{module.name}.py")
        assert found is not None, f"{module.name}: its registrations cannot be read without importing it"
        for declared in found.registrations:
            target = f"prunebench.methods.{module.name}:{declared.class_name}"
            entry = registry._entry(declared.name, target, declared.summary, **declared.arguments)
            cls = registry._class_of(declared.name)
            assert registry._CLASSES.get(declared.name) == entry, declared.name
            assert f"{cls.__module__}:{cls.__qualname__}" == target
            read += 1
    assert read >= 10


def test_a_module_whose_registration_is_not_literal_is_imported(tmp_path):
    from prunebench.declarations import read_declarations

    literal = tmp_path / "literal.py"
    literal.write_text(
        'PAPER = "a paper"\n'
        '@register("m", schedule="at_init", scopes=("global",), paper=PAPER, version=3)\n'
        'class M:\n    """One line.\n\n    More."""\n'
        'alias("m2", "m@at_init", paper="other")\n'
    )
    found = read_declarations(literal)
    assert found is not None
    (registration,) = found.registrations
    assert (registration.name, registration.class_name, registration.summary) == ("m", "M", "One line.")
    assert registration.arguments == {
        "schedule": "at_init",
        "scopes": ("global",),
        "paper": "a paper",
        "version": 3,
    }
    assert [(a.args, a.kwargs) for a in found.aliases] == [(("m2", "m@at_init"), {"paper": "other"})]
    for source in (
        '@register("m", schedule="at_init", scopes=("global",), paper=" ".join(["a", "b"]))\nclass M: ...\n',
        'for n in ("a", "b"):\n    register(n, schedule="at_init", scopes=(), paper="p")(object)\n',
        '@register("m", schedule="at_init", scopes=SCOPES, paper="p")\nclass M: ...\n',
    ):
        computed = tmp_path / "computed.py"
        computed.write_text(source)
        assert read_declarations(computed) is None, source
    helper = tmp_path / "helper.py"
    helper.write_text("import torch\n\ndef f():\n    return 1\n")
    assert read_declarations(helper).registrations == []


LISTED = {
    "datasets": (
        "prunebench.datasets.registry",
        "DATASETS",
        ("num_classes", "input_shape", "summary", "source"),
    ),
    "models": ("prunebench.model_registry", "MODELS", ("summary", "source")),
}


@pytest.mark.parametrize("what", LISTED)
def test_the_datasets_and_models_listed_without_torch_are_those_their_modules_register(what):
    """What the registry reads from the source (in a process that never imports torch) equals what importing the
    modules registers."""
    import json
    import subprocess
    import sys

    module_name, registry_name, fields = LISTED[what]
    fields = ("name", *fields, "version")
    code = (
        f"import json, sys; from {module_name} import {registry_name} as r\n"
        f"rows = [[getattr(e, f) for f in {fields!r}] for e in r.entries()]\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(json.dumps(rows))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    listed = [[tuple(v) if isinstance(v, list) else v for v in row] for row in json.loads(result.stdout)]

    module = importlib.import_module(module_name)
    registry_ = getattr(module, registry_name)
    for builtin in module.BUILTIN_MODULES:
        importlib.import_module(f"{module_name.rpartition('.')[0]}.{builtin}")
    ran = [[getattr(registry_.get(name), f) for f in fields] for name in registry_.names()]
    assert listed == ran
    assert {row[0] for row in listed} >= (
        {"cifar10", "imagenet", "mnist5k"} if what == "datasets" else {"vgg16"}
    )
    deferred = [n for n in registry_.names() if "Deferred" in repr(registry_.get(n))]
    assert not deferred, f"{deferred} still deferred after their modules were imported"


MISMATCHED = """
from prunebench.model_registry import register_model

VERSION = "1"
globals()["VERSION"] = "2"  # rebound where the source reader cannot see it


@register_model("{name}", summary="s", source="s", version=VERSION)
def mismatched(input_shape, num_classes):
    raise NotImplementedError
"""


@pytest.mark.parametrize("imported_first", [False, True])
def test_a_model_that_registers_other_than_its_declaration_is_an_error(tmp_path, monkeypatch, imported_first):
    from prunebench import model_registry

    name = f"mismatched_{int(imported_first)}"
    path = tmp_path / f"{name}.py"
    path.write_text(MISMATCHED.format(name=name))
    monkeypatch.syspath_prepend(str(tmp_path))
    registry_ = model_registry.MODELS
    registry_.load()
    monkeypatch.setattr(registry_, "_entries", dict(registry_._entries))
    monkeypatch.setattr(registry_, "_modules", dict(registry_._modules))
    if imported_first:  # the module registers "2"; the source, read afterwards, declares "1"
        importlib.import_module(name)
        with pytest.raises(ValueError, match=r"its declaration read from the source .* states"):
            model_registry._declare(path, name)
        return
    model_registry._declare(path, name)
    (listed,) = [spec for spec in model_registry.all_models() if spec.name == name]
    assert listed.version == "1"  # what the source says, before the module is imported
    with pytest.raises(ValueError, match=r"registers .*'version': '2'.* states .*'version': '1'"):
        registry_.get(name)


def test_a_dataset_whose_registration_cannot_be_read_is_imported_and_its_check_is_its_own(
    tmp_path, monkeypatch
):
    from prunebench.datasets import registry as datasets

    path = tmp_path / "computed_dataset.py"
    path.write_text(
        "from prunebench.datasets import register_dataset\n"
        "def check(request):\n    raise RuntimeError('checked')\n"
        'NAMES = ["computed", "dataset"]\n'
        '@register_dataset("_".join(NAMES), num_classes=2, input_shape=(1, 2), summary="s", source="s")\n'
        "def computed(request):\n    raise NotImplementedError\n"
        '@register_dataset("read_dataset", num_classes=3, input_shape=(1, 2), summary="r", source="r", check=check)\n'
        "def read(request):\n    raise NotImplementedError\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    datasets.DATASETS.load()
    monkeypatch.setattr(datasets.DATASETS, "_entries", dict(datasets.DATASETS._entries))
    monkeypatch.setattr(datasets.DATASETS, "_modules", dict(datasets.DATASETS._modules))
    import sys

    assert "computed_dataset" not in sys.modules
    datasets._declare(path, "computed_dataset")
    assert "computed_dataset" in sys.modules  # "_".join(...) is not a literal: the module was imported
    spec = datasets.get_dataset("read_dataset")
    assert (spec.num_classes, spec.input_shape) == (3, (1, 2))
    with pytest.raises(RuntimeError, match="checked"):
        spec.check(None)


def test_hyperparameters_listed_without_torch_are_those_the_classes_declare():
    """``bench list methods --details`` reads each method's ``__init__`` from its source (base classes included)
    in a process that never imports torch; what it lists equals the imported classes' declarations."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from prunebench.hparams import format_value\n"
        "from prunebench.methods.registry import combinations\n"
        "def rows(hparams):\n"
        "    return [(h.name, h.type_name, format_value(h.default), h.help) for h in hparams.values()]\n"
        "specs = combinations()\n"
        "listed = {spec.key: rows(spec.listed_hparams()) for spec in specs}\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "imported = {spec.key: rows(spec.hparams) for spec in specs}\n"
        "assert 'torch' in sys.modules\n"
        "assert listed == imported, [key for key in listed if listed[key] != imported[key]]\n"
        "print(sum(len(r) for r in listed.values()), len(specs))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    hyperparameters, methods = map(int, result.stdout.split())
    assert methods >= 16 and hyperparameters > 50


def test_an_init_is_read_from_source_through_its_base_and_refused_when_it_needs_the_module(tmp_path):
    """A class without ``__init__`` has its base's; literal constants and ``typing`` names resolve; a default that
    needs an import, a decorator that writes the ``__init__``, or a class that is not there, gives ``None`` (the
    registry then imports the module)."""
    from prunebench.declarations import init_from_source
    from prunebench.hparams import declared_hparams

    source = tmp_path / "plugin.py"
    source.write_text(
        "from __future__ import annotations\n"
        "import math\n"
        "from typing import Annotated\n"
        "LIMIT = 3\n\n"
        "class Base:\n"
        "    def __init__(self, *, depth: Annotated[int, 'layers kept'] = LIMIT, rate: float | None = 1 / 4):\n"
        "        raise AssertionError('never called')\n\n"
        "class Child(Base):\n"
        "    '''No __init__ of its own.'''\n\n"
        "class Computed:\n"
        "    def __init__(self, *, scale: float = math.pi):\n"
        "        pass\n\n"
        "@dataclass\n"
        "class Generated(Base):\n"
        "    width: int = 2\n"
    )
    init = init_from_source(source, "Child")
    declared = declared_hparams(type("Child", (), {"__init__": init}))
    assert [(h.name, h.type_name, h.default, h.help) for h in declared.values()] == [
        ("depth", "int", 3, "layers kept"),
        ("rate", "float | None", 0.25, ""),
    ]
    assert init_from_source(source, "Computed") is None
    assert (
        init_from_source(source, "Generated") is None
    )  # the decorator writes an __init__ the source does not show
    assert init_from_source(source, "Missing") is None
