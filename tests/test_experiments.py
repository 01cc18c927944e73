"""Experiments as data: run identity, hyperparameters from flags and files, sweeps, seeds, the user's own code."""

from __future__ import annotations

import dataclasses
import json
import math
import textwrap
from pathlib import Path

import pytest
import torch

from prunebench.catalog.hparams import HParam
from prunebench.cli import _experiment, build_parser, main
from prunebench.core.errors import UsageError
from prunebench.grid.experiment import Experiment
from prunebench.grid.grid_choices import parse_seeds
from prunebench.grid.grid_run import run_grid
from prunebench.grid.result_store import ResultStore
from prunebench.methods.method_registry import all_methods, combinations, get_method
from prunebench.run.run_config import PrunableOptions, RunConfig
from prunebench.zoo.presets import get_preset

CPU = torch.device("cpu")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "experiment.toml"


def _other_value(hparam: HParam, accepts) -> object:
    """A value of ``hparam`` other than its default that ``accepts`` (the method's own check)."""
    default = hparam.default
    base = hparam.base
    if base is bool:
        candidates = [not default]
    elif base is int:
        start = default if default is not None else 1
        candidates = [start + 1, start + 2, start - 1, 2, 10]
    elif base is float:
        start = default if default is not None else 0.5
        candidates = [start * 0.5, start + 0.01, start * 1.1, start - 0.01, 0.5, 0.01]
    elif "tuple" in hparam.type_name:
        candidates = [(1, 16, 16), (2, 2), (0.5,)]
    else:
        candidates = [c for c in getattr(base, "__args__", ()) if c != default] + ["other"]
    if hparam.optional and default is not None:
        candidates.append(None)
    for candidate in candidates:
        if candidate == default:
            continue
        try:
            accepts({hparam.name: candidate})
        except UsageError:
            continue
        return candidate
    raise AssertionError(f"no valid non-default value found for {hparam.name} ({hparam.type_name})")


def _config(method: str, settings=None, **changes) -> RunConfig:
    scope = get_method(method).scopes[0] if get_method(method).scopes else "none"
    return RunConfig.from_preset("synthetic-tiny", method, scope, 0.9, 0, settings=settings, **changes)


@pytest.mark.parametrize("spec", combinations(), ids=lambda s: s.name)
def test_changing_any_hyperparameter_changes_the_run_id(spec):
    """Every hyperparameter of every registered method (and schedule it runs under) enters the id."""
    base = _config(spec.name)
    seen = {base.run_id}
    for name, hparam in spec.hparams.items():
        value = _other_value(hparam, spec.resolve)
        changed = _config(spec.name, {name: value})
        assert changed.hparams[name] == hparam.coerce(value)
        assert changed.run_id not in seen, f"{spec.name}.{name}={value!r} does not change the run id"
        seen.add(changed.run_id)
        assert changed.variant == f"{name}={changed.variant.partition('=')[2]}" and changed.variant


def test_a_setting_equal_to_the_default_is_the_same_run():
    default = get_method("gmp").hparams["end"].default
    assert _config("gmp", {"end": default}).run_id == _config("gmp").run_id
    assert _config("gmp", {"end": default}).variant == ""


def test_descriptive_text_is_not_part_of_the_identity():
    from dataclasses import replace

    preset = get_preset("synthetic-tiny")
    described = replace(preset, name="renamed", summary="another description", source="elsewhere")
    for method in ("magnitude", "probmask", "dense"):
        scope = get_method(method).scopes[0] if get_method(method).scopes else "none"
        a = RunConfig.from_preset(preset, method, scope, 0.9, 0)
        b = RunConfig.from_preset(described, method, scope, 0.9, 0)
        assert a.run_id == b.run_id
        assert a.preset != b.preset


def test_the_identity_holds_versions_and_everything_that_changes_a_result():
    from prunebench.run.run_config import HARNESS_VERSION

    identity = _config("magnitude").identity
    assert identity["harness_version"] == HARNESS_VERSION
    assert identity["method"]["versions"] == {"magnitude": 1, "schedule:after_training": 1}
    assert (identity["method"]["criterion"], identity["method"]["schedule"]) == (
        "magnitude",
        "after_training",
    )
    assert identity["dataset"] == {"name": "synthetic", "version": "1"}
    assert identity["model"] == {"name": "lenet5", "version": "1"}
    assert identity["recipe"]["epochs"] == 4
    for change in ({"epochs": 3}, {"prunable": PrunableOptions(keep_first_dense=True)}):
        assert _config("magnitude", **change).run_id != _config("magnitude").run_id


def test_a_method_version_bump_changes_the_run_id(method_registry):
    from prunebench.methods.base import ScoringMethod

    class Scorer(ScoringMethod):
        """|w|."""

        def scores(self, model, weights, data):
            return {n: w.detach().abs() for n, w in weights.items()}

    method_registry.register("versioned", schedule="at_init", scopes=("global",), paper="test")(Scorer)
    first = _config("versioned").run_id
    entries = method_registry._CLASSES._entries
    entries["versioned"] = dataclasses.replace(entries["versioned"], version=2)
    assert _config("versioned").run_id != first


def test_a_changed_default_reruns_only_the_affected_runs(tmp_path, method_registry):
    from prunebench.methods.base import ScoringMethod

    class Scaled(ScoringMethod):
        """Random scores times a constant (the constant is a hyperparameter)."""

        def __init__(self, scale: float = 1.0) -> None:
            self.scale = scale

        def scores(self, model, weights, data):
            return {n: torch.rand(w.shape) * self.scale for n, w in weights.items()}

    method_registry.register("scaled", schedule="at_init", scopes=("global",), paper="test")(Scaled)
    experiment = Experiment(
        preset="synthetic-tiny", methods="scaled,magnitude", scopes="global", sparsity=[0.9], seeds=1
    )
    experiment.set("recipe", "epochs", [2])
    store = ResultStore(tmp_path)
    assert len(run_grid(experiment.configs(), store, CPU)) == 3
    assert run_grid(experiment.configs(), store, CPU) == []
    Scaled.__init__.__defaults__ = (2.0,)  # a new default, as a plugin update would bring
    rerun = run_grid(experiment.configs(), store, CPU)
    assert [(r["method"], r["hparams"]) for r in rerun] == [("scaled", {"scale": 2.0})]


def test_flags_and_an_experiment_file_give_the_same_runs(tmp_path):
    argv = [
        "run",
        "--preset",
        "synthetic-tiny",
        "--methods",
        "magnitude,gmp,probmask",
        "--scopes",
        "global,uniform,learned",
        "--sparsity",
        "0.9,0.95",
        "--seeds",
        "1-2",
        "--epochs",
        "3",
        "--set",
        "gmp.end=0.5,0.8",
        "--set",
        "probmask.samples=4",
        "--set",
        "recipe.optim.lr=0.1",
        "--keep-first-dense",
    ]
    from_flags = _experiment(build_parser().parse_args(argv)).configs()
    file = tmp_path / "experiment.toml"
    file.write_text(
        textwrap.dedent(
            """
            preset = "synthetic-tiny"
            methods = ["magnitude", "gmp", "probmask"]
            scopes = ["global", "uniform", "learned"]
            sparsity = [0.9, 0.95]
            seeds = "1-2"
            keep_first_dense = true

            [recipe]
            epochs = 3
            optim.lr = 0.1

            [hparams.gmp]
            end = [0.5, 0.8]

            [hparams.probmask]
            samples = 4
            """
        )
    )
    from_file = _experiment(build_parser().parse_args(["run", "--config", str(file)])).configs()
    assert [c.run_id for c in from_flags] == [c.run_id for c in from_file]
    variants = {c.variant for c in from_file if c.method == "gmp"}
    assert variants == {"end=0.5", ""}  # 0.8 is the default: no variant label
    assert {c.seed for c in from_file} == {1, 2}
    assert all(c.prunable.keep_first_dense for c in from_file)
    assert len(from_file) == 2 * (1 + 2 * (2 + 2 * 2 + 1))


def test_flags_beside_a_file_override_it(tmp_path):
    file = tmp_path / "e.toml"
    file.write_text(
        'preset = "synthetic-tiny"\nmethods = ["magnitude"]\nsparsity = [0.5]\n[hparams.gmp]\nend = 0.6\n'
    )
    args = build_parser().parse_args(
        ["run", "--config", str(file), "--methods", "gmp", "--set", "gmp.end=0.7"]
    )
    configs = _experiment(args).configs()
    assert {c.method for c in configs} == {"dense", "gmp"}
    assert {c.hparams["end"] for c in configs if c.method == "gmp"} == {0.7}
    assert {c.sparsity for c in configs if c.method == "gmp"} == {0.5}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sparsity = [0.9, 1.5]\n", "sparsity (line 1): sparsity must lie in (0, 1)"),
        ('methods = ["magnitude"]\nscopes = "all"\ncolour = "red"\n', "colour (line 3): unknown key"),
        (
            'methods = ["gmp"]\n\n[hparams.gmp]\nend = "late"\n',
            "hparams.gmp.end (line 4): gmp: hyperparameter end takes float",
        ),
        (
            'methods = ["gmp"]\n[hparams.gmp]\nending = 0.5\n',
            "hparams.gmp.ending (line 3): gmp has no hyperparameter 'ending'",
        ),
        ("seeds = 0\n", "seeds (line 1): --seeds must be at least 1"),
        ("methods = 3\n", 'methods (line 1): must be "all" or a list of names'),
        ("[recipe]\nepochs = 1\n", "recipe (line 1): --epochs must be at least 2"),
        ("[recipe]\noptim.speed = 1\n", "recipe.optim.speed (line 2): the recipe has no field 'optim.speed'"),
        ("[run]\nspeed = 1\n", "run.speed (line 2): unknown key"),
        ("methods = [\n", "not valid TOML"),
    ],
)
def test_an_invalid_experiment_file_names_the_key_and_line(tmp_path, capsys, text, message):
    file = tmp_path / "bad.toml"
    file.write_text(text)
    assert main(["run", "--config", str(file), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(file) in err and message in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "probmask.samples=many"], "probmask: hyperparameter samples takes int, got 'many'"),
        (
            ["--set", "probmask.colour=red"],
            "probmask has no hyperparameter 'colour'; its hyperparameters: samples",
        ),
        (["--set", "nosuch.x=1"], "unknown method 'nosuch'"),
        (["--set", "samples=4"], "--set takes METHOD.HYPERPARAMETER=VALUE"),
        (
            ["--methods", "magnitude", "--set", "gmp.end=0.5"],
            "hyperparameters are set for gmp, which is not in the grid",
        ),
        (["--set", "gmp.end=1.5"], "gmp: the pruning window must satisfy"),
        (["--set", "gmp.end=0.5,,0.6"], "empty value"),
        (["--seeds", "5-2"], "seed range 5-2 is empty"),
        (["--seeds", "99999999999999999999"], "at most 1000 seeds"),
        (["--model", "torchvision:resnet9000"], "unknown torchvision model 'resnet9000'"),
        (["--model", "no_such_module:factory"], "cannot import 'no_such_module'"),
        (["--dataset", "nosuch"], "unknown dataset 'nosuch'"),
        (["--set", "recipe.optim.lr=-1"], "optimizer needs lr >= 0"),
    ],
)
def test_bad_settings_are_one_line_errors_before_any_work(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert main(["run", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error: ") and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_seeds_as_counts_ranges_and_lists():
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds(3) == [0, 1, 2]
    assert parse_seeds("3-5") == [3, 4, 5]
    assert parse_seeds("0,2,7") == [0, 2, 7]
    assert parse_seeds("0-1,5,1") == [0, 1, 5]
    assert parse_seeds([4, 6]) == [4, 6]
    for bad in ("x", "-1", "2-", [1.5], True):
        with pytest.raises(UsageError):
            parse_seeds(bad)


def test_sweeps_expand_the_grid_and_keep_variants_apart():
    experiment = Experiment(
        preset="synthetic-tiny", methods="gmp,probmask", scopes="all", sparsity=[0.9], seeds=1
    )
    experiment.set("gmp", "start", [0.1, 0.3])
    experiment.set("gmp", "end", [0.6, 0.9])
    experiment.set("probmask", "samples", [1, 2, 4])
    configs = experiment.configs()
    gmp = {(c.hparams["start"], c.hparams["end"]) for c in configs if c.method == "gmp"}
    assert gmp == {(0.1, 0.6), (0.1, 0.9), (0.3, 0.6), (0.3, 0.9)}
    assert len([c for c in configs if c.method == "gmp"]) == 4 * 3  # three scopes each
    assert {c.variant for c in configs if c.method == "probmask"} == {"samples=1", "", "samples=4"}
    assert len({c.run_id for c in configs}) == len(configs)


def test_a_method_named_twice_runs_once():
    configs = Experiment(
        preset="synthetic-tiny", methods="magnitude,magnitude,snip", sparsity=[0.9], seeds=1
    ).configs()
    methods = [c.method for c in configs]
    assert methods.count("magnitude") == 4 and methods.count("snip") == 4 and len(configs) == 9


def test_list_methods_details_shows_every_hyperparameter(capsys):
    assert main(["list", "methods", "--details", "probmask"]) == 0
    out = capsys.readouterr().out
    for name, hparam in get_method("probmask").hparams.items():
        assert name in out and hparam.type_name.split(" ")[0] in out
    assert main(["list", "methods", "--details"]) == 0
    out = capsys.readouterr().out
    assert all(spec.name in out for spec in all_methods())


def test_torchvision_model_and_a_factory_dataset_run_end_to_end(tmp_path, monkeypatch):
    package = tmp_path / "user_data_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch.utils.data import TensorDataset

            def tiny():
                generator = torch.Generator().manual_seed(0)
                images = torch.randn(48, 3, 16, 16, generator=generator)
                labels = torch.arange(48) % 3
                images[labels == 1] += 1.0
                return TensorDataset(images[:32], labels[:32]), TensorDataset(images[32:], labels[32:])
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = ["run", "--preset", "synthetic-tiny", "--epochs", "2", "--model", "torchvision:resnet18"]
    argv += ["--dataset", "user_data_pkg:tiny", "--methods", "magnitude", "--scopes", "global"]
    argv += ["--sparsity", "0.5", "--seeds", "1", "--jobs", "1", "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    records = [json.loads(p.read_text()) for p in (tmp_path / "out" / "runs").glob("*.json")]
    assert {(r["method"], r["status"]) for r in records} == {("dense", "ok"), ("magnitude", "ok")}
    pruned = next(r for r in records if r["method"] == "magnitude")
    assert pruned["model"] == "torchvision:resnet18" and pruned["dataset"] == "user_data_pkg:tiny"
    assert pruned["prunable_nonzero"] == round(pruned["prunable_weights"] * 0.5)
    assert pruned["config"]["model"]["version"].startswith("torchvision-")
    assert pruned["config"]["dataset"]["version"].startswith("sha256:")


def test_a_model_factory_from_user_code_runs_and_its_source_is_its_version(tmp_path, monkeypatch):
    module = tmp_path / "user_models_mod.py"
    module.write_text(
        textwrap.dedent(
            """
            import math
            from torch import nn

            def mlp(input_shape, num_classes):
                return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 32), nn.ReLU(), nn.Linear(32, num_classes))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    experiment = Experiment(
        preset="synthetic-tiny",
        model="user_models_mod:mlp",
        methods="snip",
        scopes="erk",
        sparsity=[0.8],
        seeds=1,
    )
    experiment.set("recipe", "epochs", [2])
    configs = experiment.configs()
    records = run_grid(configs, ResultStore(tmp_path / "out"), CPU)
    snip = next(r for r in records if r["method"] == "snip")
    assert snip["status"] == "ok" and [layer["name"] for layer in snip["layers"]] == ["1.weight", "3.weight"]
    assert snip["prunable_nonzero"] == round(snip["prunable_weights"] * 0.2)
    module.write_text(module.read_text() + "\n# edited\n")
    import sys

    del sys.modules["user_models_mod"]
    assert experiment.configs()[1].run_id != configs[1].run_id  # the model's code changed: the run is new


def test_image_folder_dataset_is_versioned_by_its_files(tmp_path):
    from prunebench.datasets import get_dataset
    from prunebench.datasets.generated import write_image_folder
    from prunebench.datasets.user import _image_folder

    root = write_image_folder(tmp_path / "folder", classes=2, per_class=2)
    spec = get_dataset(f"imagefolder:{root}:32")
    assert (spec.num_classes, spec.input_shape) == (2, (3, 32, 32))
    (root / "train" / "n00000000" / "extra.png").write_bytes(
        (root / "train" / "n00000000" / "image_0000.png").read_bytes()
    )
    _image_folder.cache_clear()  # a new process would compute the fingerprint afresh
    assert get_dataset(f"imagefolder:{root}:32").version != spec.version


def test_a_plugin_that_fails_to_import_is_one_warning_and_the_rest_works(
    monkeypatch, capsys, method_registry
):
    import importlib.metadata

    entry = importlib.metadata.EntryPoint("broken", "no_such_plugin_module", "prunebench.methods")
    monkeypatch.setattr(
        importlib.metadata, "entry_points", lambda group: [entry] if group == entry.group else []
    )
    monkeypatch.setattr(method_registry._CLASSES, "_loaded", False)
    assert main(["list", "methods"]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line]
    assert len(warnings) == 1 and "plugin 'broken' (no_such_plugin_module) failed to import" in warnings[0]
    assert "magnitude" in captured.out


@pytest.mark.parametrize("group", ["models", "datasets", "presets"])
def test_models_datasets_and_presets_register_through_entry_points(tmp_path, monkeypatch, group):
    import importlib.metadata

    from prunebench.datasets.dataset_registry import DATASETS
    from prunebench.zoo.model_zoo import MODELS
    from prunebench.zoo.presets import PRESETS

    registry = {"models": MODELS, "datasets": DATASETS, "presets": PRESETS}[group]
    source = {
        "models": 'from prunebench.zoo.model_zoo import register_model\nfrom torch import nn\n@register_model("plugged", summary="s", source="s")\ndef plugged(shape, classes):\n    return nn.Linear(1, classes)\n',
        "datasets": 'from prunebench.datasets import register_dataset\n@register_dataset("plugged", num_classes=2, input_shape=(1,), summary="s", source="s")\ndef plugged(request):\n    raise NotImplementedError\n',
        "presets": 'from dataclasses import replace\nfrom prunebench.zoo.presets import get_preset, register_preset\nregister_preset(replace(get_preset("synthetic-tiny"), name="plugged"))\n',
    }[group]
    (tmp_path / f"plugin_{group}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.load()
    monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    monkeypatch.setattr(registry, "_loaded", False)
    entry = importlib.metadata.EntryPoint("plugged", f"plugin_{group}", f"prunebench.{group}")
    monkeypatch.setattr(
        importlib.metadata, "entry_points", lambda group: [entry] if group == entry.group else []
    )
    assert "plugged" in registry.names()
    assert main(["list", group]) == 0


def test_format_one_records_are_read_as_they_are_and_superseded_by_current_ones(tmp_path):
    from prunebench.leaderboard.record_reader import RecordWarning, load_records

    experiment = Experiment(
        preset="synthetic-tiny", methods="magnitude", scopes="global", sparsity=[0.9], seeds=1
    )
    experiment.set("recipe", "epochs", [2])
    records = run_grid(experiment.configs(), ResultStore(tmp_path / "new"), CPU)
    legacy = []
    for record in records:
        old = {k: v for k, v in record.items() if k not in ("variant", "criterion", "hparams")}
        old.update(version=1, run_id="old-" + record["run_id"], method_hparams=record["hparams"])
        legacy.append(old)
    (tmp_path / "old" / "runs").mkdir(parents=True)
    for old in legacy:
        (tmp_path / "old" / "runs" / f"{old['run_id']}.json").write_text(json.dumps(old))
    with pytest.warns(RecordWarning, match="2 records of format 1 .* 2 read as they are, 0 replaced"):
        assert {r["run_id"] for r in load_records([tmp_path / "old"])} == {o["run_id"] for o in legacy}
    with pytest.warns(RecordWarning, match="0 read as they are, 2 replaced by current records"):
        merged = load_records([tmp_path / "old", tmp_path / "new"])
    assert {r["run_id"] for r in merged} == {r["run_id"] for r in records}
    store = ResultStore(tmp_path / "old")
    assert all(store.read(o["run_id"])[0] is None for o in legacy)  # never resumed from


def test_records_keep_the_package_version_and_commit(tmp_path):
    experiment = Experiment(
        preset="synthetic-tiny", methods="random", scopes="global", sparsity=[0.9], seeds=1
    )
    experiment.set("recipe", "epochs", [2])
    record = run_grid(experiment.configs()[:1], ResultStore(tmp_path), CPU)[0]
    assert record["versions"]["prunebench"] != "unknown"
    commit = record["versions"].get("prunebench_commit")
    assert commit is None or len(commit.split("+")[0]) == 40


def test_the_example_experiment_file_runs(tmp_path):
    """The committed example (shown in the README) is valid and runs; here at a tiny budget on synthetic data."""
    argv = ["run", "--config", str(EXAMPLE), "--preset", "synthetic-tiny", "--epochs", "2", "--seeds", "1"]
    argv += ["--sparsity", "0.9", "--out", str(tmp_path), "--jobs", "1"]
    configs = _experiment(build_parser().parse_args(argv[:-2])).configs()
    assert any(c.variant for c in configs)
    assert main(argv) == 0
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*.json")]
    assert len(records) == len(configs) and all(r["status"] == "ok" for r in records)
    assert all(math.isfinite(r["top1"]) for r in records)


def test_prune_embeddings_enters_the_run_and_its_id(tmp_path, monkeypatch):
    """``--prune-embeddings`` adds the Embedding to every method's prunable set; it is part of the run id, while the
    prunable-set options at their defaults leave the id as it was before they existed."""
    (tmp_path / "token_task.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn
            from torch.utils.data import TensorDataset

            def data():
                generator = torch.Generator().manual_seed(0)
                ids = torch.randint(0, 20, (64, 6), generator=generator)
                labels = (ids[:, 0] >= 10).long()
                return TensorDataset(ids[:48], labels[:48]), TensorDataset(ids[48:], labels[48:])

            def model(input_shape, num_classes):
                return nn.Sequential(nn.Embedding(20, 8), nn.Flatten(), nn.Linear(8 * input_shape[0], num_classes))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    experiment = Experiment(
        preset="synthetic-tiny",
        dataset="token_task:data",
        model="token_task:model",
        methods="magnitude",
        scopes="global",
        sparsity=[0.5],
        seeds=1,
    )
    experiment.set("recipe", "epochs", [2])
    plain = experiment.configs()
    assert plain[1].identity["prunable"] == {}
    experiment.prune_embeddings = True
    with_embeddings = experiment.configs()
    assert with_embeddings[1].identity["prunable"] == {"prune_embeddings": True}
    assert with_embeddings[1].run_id != plain[1].run_id
    assert (
        with_embeddings[0].run_id != plain[0].run_id
    )  # the dense record's accounting counts the embedding too
    records = run_grid(with_embeddings, ResultStore(tmp_path / "out"), CPU)
    pruned = next(r for r in records if r["method"] == "magnitude")
    assert pruned["status"] == "ok", pruned.get("error")
    assert [layer["name"] for layer in pruned["layers"]] == ["0.weight", "2.weight"]
    assert pruned["prunable_nonzero"] == round(pruned["prunable_weights"] * 0.5) == round((160 + 96) * 0.5)
