"""The registries of methods, datasets and models: what the registry index declares is checked against what runs,
and other packages register through an entry point."""

from __future__ import annotations

import importlib.metadata

import pytest

from prunebench.core.errors import UsageError
from prunebench.methods import method_registry as registry

OUTSIDE_METHOD = '''
import torch
from prunebench.methods.base import ScoringMethod
from prunebench.methods.method_registry import register


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


def test_the_methods_declared_from_the_index_are_those_that_run():
    """Every built-in method is declared from the index; importing its module registers the same entry, whose
    class lives where the index says and declares the hyperparameters it lists."""
    from prunebench.catalog.registry_index import read_index

    declared = 0
    for module, records in read_index()["methods"].items():
        for record in records:
            cls = registry._class_of(record["name"])
            assert f"{cls.__module__}:{cls.__qualname__}" == f"{module}:{record['class']}"
            entry = registry._CLASSES.get(record["name"])
            assert (entry.version, entry.schedules, entry.summary) == (
                record["version"],
                tuple(record["schedules"]),
                record["summary"],
            )
            assert [h.name for h in registry.listed(cls)] == [h["name"] for h in record["hparams"]]
            declared += 1
    assert declared >= 10


LISTED = {
    "datasets": (
        "prunebench.datasets.dataset_registry",
        "DATASETS",
        ("num_classes", "input_shape", "summary", "source"),
    ),
    "models": ("prunebench.catalog.model_registry", "MODELS", ("summary", "source")),
}


@pytest.mark.parametrize("what", LISTED)
def test_the_datasets_and_models_listed_without_torch_are_those_their_modules_register(what):
    """What the registry declares from the index (in a process that never imports torch) equals what importing the
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
        importlib.import_module(builtin)
    ran = [[getattr(registry_.get(name), f) for f in fields] for name in registry_.names()]
    assert listed == ran
    assert {row[0] for row in listed} >= (
        {"cifar10", "imagenet", "mnist5k"} if what == "datasets" else {"vgg16"}
    )
    deferred = [n for n in registry_.names() if "Deferred" in repr(registry_.get(n))]
    assert not deferred, f"{deferred} still deferred after their modules were imported"


MISMATCHED = """
from prunebench.catalog.model_registry import register_model


@register_model("{name}", summary="s", source="s", version="2")
def mismatched(input_shape, num_classes):
    raise NotImplementedError
"""


@pytest.mark.parametrize("imported_first", [False, True])
def test_a_model_that_registers_other_than_the_index_is_an_error(tmp_path, monkeypatch, imported_first):
    from prunebench.catalog import model_registry

    name = f"mismatched_{int(imported_first)}"
    (tmp_path / f"{name}.py").write_text(MISMATCHED.format(name=name))
    monkeypatch.syspath_prepend(str(tmp_path))
    registry_ = model_registry.MODELS
    registry_.load()
    monkeypatch.setattr(registry_, "_entries", dict(registry_._entries))
    monkeypatch.setattr(registry_, "_modules", dict(registry_._modules))
    record = {"name": name, "summary": "s", "source": "s", "version": "1"}
    expected = r"registers version='2', but the registry index .* states version='1': .*build_index.py"
    if imported_first:  # the module registers "2"; the index, read afterwards, declares "1"
        importlib.import_module(name)
        with pytest.raises(ValueError, match=expected):
            model_registry._declare(name, record)
        return
    model_registry._declare(name, record)
    (listed,) = [spec for spec in model_registry.all_models() if spec.name == name]
    assert listed.version == "1"  # what the index says, before the module is imported
    with pytest.raises(ValueError, match=expected):
        registry_.get(name)


def test_a_dataset_module_the_index_does_not_list_is_imported_and_a_check_is_its_own(tmp_path, monkeypatch):
    import sys

    from prunebench.catalog.registry_index import declare_modules
    from prunebench.datasets import dataset_registry as datasets

    (tmp_path / "unlisted_dataset.py").write_text(
        "from prunebench.datasets import register_dataset\n"
        '@register_dataset("unlisted", num_classes=2, input_shape=(1, 2), summary="s", source="s")\n'
        "def unlisted(request):\n    raise NotImplementedError\n"
    )
    (tmp_path / "listed_dataset.py").write_text(
        "from prunebench.datasets import register_dataset\n"
        "def check(request):\n    raise RuntimeError('checked')\n"
        '@register_dataset("listed", num_classes=3, input_shape=(1, 2), summary="r", source="r", check=check)\n'
        "def listed(request):\n    raise NotImplementedError\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    datasets.DATASETS.load()
    monkeypatch.setattr(datasets.DATASETS, "_entries", dict(datasets.DATASETS._entries))
    monkeypatch.setattr(datasets.DATASETS, "_modules", dict(datasets.DATASETS._modules))
    record = {
        "name": "listed",
        "num_classes": 3,
        "input_shape": [1, 2],
        "summary": "r",
        "source": "r",
        "version": "1",
    }
    declare_modules(
        "datasets", ["unlisted_dataset", "listed_dataset"], datasets._declare, {"listed_dataset": [record]}
    )
    assert "unlisted_dataset" in sys.modules and "listed_dataset" not in sys.modules
    assert datasets.get_dataset("unlisted").num_classes == 2
    (listed,) = [spec for spec in datasets.all_datasets() if spec.name == "listed"]
    assert (listed.num_classes, listed.input_shape) == (3, (1, 2))  # from the index, the module not imported
    assert "listed_dataset" not in sys.modules
    with pytest.raises(RuntimeError, match="checked"):
        datasets.get_dataset("listed").check(None)  # the module's own check, imported on use


def test_hyperparameters_listed_without_torch_are_those_the_classes_declare():
    """``bench list methods --details`` reads each method's hyperparameters from the registry index in a process
    that never imports torch; what it lists equals the imported classes' declarations."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from prunebench.catalog.hparams import format_value\n"
        "from prunebench.methods.method_registry import combinations\n"
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
