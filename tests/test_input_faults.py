"""Damaged inputs are refused up front with one line naming them: saved masks, experiment files, ``--set`` values,
``--out``, ImageFolder layouts and plugins that fail to import."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from prunebench.catalog.hparams import HParam
from prunebench.cli import main
from prunebench.core.errors import UsageError
from prunebench.grid.experiment import Experiment
from prunebench.pruning.saved_masks import read_mask, unpack

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "default-grid" / "runs"
SMALL_GRID = ["--preset", "synthetic-tiny", "--methods", "magnitude", "--scopes", "global", "--seeds", "1"]


def one_error_line(capsys) -> str:
    """The command's stderr, asserted to be exactly one line."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


@pytest.fixture
def two_runs(tmp_path) -> tuple[Path, list[dict]]:
    """A results directory with two finished pruned runs of the default grid (sparsity 0.95, seed 0), copied with
    their masks."""
    chosen = []
    for path in sorted(EXAMPLES.glob("*.json")):
        record = json.loads(path.read_text())
        wanted = (record["sparsity"], record["seed"], record["status"]) == (0.95, 0, "ok")
        if wanted and record["method"] != "dense" and not record.get("control"):
            chosen.append(record)
        if len(chosen) == 2:
            break
    out = tmp_path / "results"
    (out / "runs").mkdir(parents=True)
    for record in chosen:
        for suffix in (".json", ".mask.npz"):
            shutil.copy(EXAMPLES / f"{record['run_id']}{suffix}", out / "runs")
    return out, chosen


def masks_of(out: Path, tmp_path: Path) -> int:
    """``bench masks`` of ``out`` at the fixture's sparsity, tables only."""
    return main(
        ["masks", str(out), "--sparsity", "0.95", "--format", "none", "--out", str(tmp_path / "tables")]
    )


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def _rewritten(path: Path, **changes: np.ndarray) -> None:
    """The mask file at ``path`` written again with some of its arrays replaced."""
    arrays = {**_arrays(path), **changes}
    path.unlink()
    np.savez_compressed(path, **arrays)


def _one_more_kept(path: Path) -> None:
    """One pruned weight of the first layer marked as kept: the file reads, but disagrees with its record."""
    bits = np.unpackbits(_arrays(path)["bits"])
    bits[int(np.argmin(bits))] = 1
    _rewritten(path, bits=np.packbits(bits))


DAMAGES = {
    "empty": lambda path: path.write_bytes(b""),
    "truncated": lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
    "huge shapes": lambda path: _rewritten(path, shapes=np.array(json.dumps([[10**6, 10**6]] * 3))),
    "short bits": lambda path: _rewritten(path, bits=_arrays(path)["bits"][:-4]),
    "transposed shapes": lambda path: _rewritten(
        path, shapes=np.array(json.dumps([s[::-1] for s in json.loads(str(_arrays(path)["shapes"]))]))
    ),
    "one more kept": _one_more_kept,
}


def test_the_intact_copy_is_compared(two_runs, tmp_path):
    out, records = two_runs
    assert masks_of(out, tmp_path) == 0
    assert len(records) == 2 and (tmp_path / "tables" / "masks_mnist5k_lenet300_100_s0.95.csv").is_file()


def test_every_mask_of_the_default_grid_passes_the_checks_and_reads_as_saved():
    """The checks refuse no genuine mask: each reads exactly as unpacking the file's arrays does."""
    masks = sorted(EXAMPLES.glob("*.mask.npz"))
    assert len(masks) > 100
    for path in masks:
        run_id = path.name.removesuffix(".mask.npz")
        read = read_mask(EXAMPLES.parent, run_id)
        expected = unpack(_arrays(path))
        assert list(read) == list(expected), run_id
        assert all(np.array_equal(read[n], expected[n]) for n in expected), run_id


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_mask_is_one_line_naming_its_file(two_runs, tmp_path, capsys, damage):
    out, records = two_runs
    path = out / "runs" / f"{records[0]['run_id']}.mask.npz"
    DAMAGES[damage](path)
    assert masks_of(out, tmp_path) == 2
    err = one_error_line(capsys)
    assert f"{path} is not a readable mask" in err, err
    assert not (tmp_path / "tables").exists()


def test_a_record_whose_run_id_is_a_path_is_refused(two_runs, tmp_path, capsys):
    """A record edited to ``run_id = "../../elsewhere/ID"`` must not lead ``bench masks`` out of the directory."""
    out, records = two_runs
    record_path = out / "runs" / f"{records[0]['run_id']}.json"
    escaped = f"../../elsewhere/{records[0]['run_id']}"
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(out / "runs" / f"{records[0]['run_id']}.mask.npz", tmp_path / "elsewhere")
    record_path.write_text(json.dumps({**records[0], "run_id": escaped}))
    assert masks_of(out, tmp_path) == 2
    assert f"{escaped!r} is not a run id" in one_error_line(capsys)


def test_a_mask_linked_from_outside_the_results_directory_is_refused(two_runs, tmp_path, capsys):
    out, records = two_runs
    path = out / "runs" / f"{records[0]['run_id']}.mask.npz"
    outside = tmp_path / "outside.mask.npz"
    path.rename(outside)
    path.symlink_to(outside)
    assert masks_of(out, tmp_path) == 2
    assert f"{path} leads outside {out}" in one_error_line(capsys)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b'preset = "caf\xe9"\n', "not UTF-8 text (byte 13)"),
        ("[run]\nout = 5\n", "run.out (line 2): must be a string, got 5"),
        ("[run]\ndata_root = 5\n", "run.data_root (line 2): must be a string, got 5"),
        ("[run]\nslurm = 3\n", "run.slurm (line 2): must be a table, got 3"),
        ("seeds = 1.5\n", "seeds (line 1): must be an integer, a string or a list of integers, got 1.5"),
        ('[run]\ncompile = "yes"\n', "run.compile (line 2): must be true or false, got 'yes'"),
        ('[run]\ndeterministic = "x"\n', "run.deterministic (line 2): must be true or false, got 'x'"),
        ("[run]\nwait = 2\n", "run.wait (line 2): must be true or false, got 2"),
        ("[run]\nforce = 1\n", "run.force (line 2): must be true or false, got 1"),
        ("[run]\njobs = true\n", "run.jobs (line 2): must be a string or an integer, got True"),
        ('[run]\nper_device = "2"\n', "run.per_device (line 2): must be an integer, got '2'"),
        ("sparsity = []\n", "sparsity (line 1): no sparsity given"),
        (
            'sparsity = "0.9"\n',
            "sparsity (line 1): must be a number, an N:M pattern such as \"2:4\", or a list of them, got '0.9'",
        ),
        (
            "sparsity = [0.9, true]\n",
            'sparsity (line 1): must be a number, an N:M pattern such as "2:4", or a list of them',
        ),
    ],
)
def test_a_wrongly_typed_key_is_one_line_naming_it(tmp_path, capsys, text, message):
    file = tmp_path / "grid.toml"
    file.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / "out"
    assert main(["run", "--config", str(file), "--out", str(out)]) == 2
    err = one_error_line(capsys)
    assert str(file) in err and message in err, err
    assert not out.exists()


def test_every_run_key_takes_a_value_of_its_type(tmp_path):
    """The type check refuses only what is wrong: integers for numbers and for jobs, tables for slurm."""
    file = tmp_path / "grid.toml"
    file.write_text(
        "sparsity = 0.9\nseeds = [0, 2]\n[run]\n"
        'out = "r"\ndevice = "cpu"\njobs = 2\nloader = "torch"\ndata_root = "d"\ncompile = true\nforce = false\n'
        'executor = "local"\ndevices = "cpu"\nper_device = 1\ncheckpoint_every = 3\nclaim_timeout = 30\n'
        'deterministic = true\nwait = false\n[run.slurm]\npartition = "gpu"\n'
    )
    experiment = Experiment.from_toml(file)
    execution = experiment.execution
    assert experiment.sparsity == [0.9] and experiment.seeds == [0, 2]
    assert (execution.jobs, execution.checkpoint_every, execution.claim_timeout) == ("2", 3, 30)
    assert execution.compile is True and execution.slurm == {"partition": "gpu"}


def test_an_unclosed_tuple_in_set_is_refused_when_planning(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["run", "--out", str(out), "--methods", "synflow", "--set", "synflow.input_shape=(1,28"]
    assert main(argv) == 2
    err = one_error_line(capsys)
    assert "hyperparameter input_shape takes tuple of int | None, got '(1,28'" in err, err
    assert not out.exists()


def test_a_tuple_reads_with_or_without_matching_brackets_and_nothing_else():
    shape = HParam("input_shape", tuple[int, ...] | None, None)
    for text in ("1,28,28", "(1, 28, 28)", "[1,28,28]", " ( 1,28,28 ) "):
        assert shape.parse(text) == (1, 28, 28), text
    for text in ("(1,28", "1,28)", "((1,28))", "[1,28)", "(1,{28})"):
        with pytest.raises(UsageError, match="takes tuple of int"):
            shape.parse(text)


def test_an_empty_out_is_refused_not_the_current_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", *SMALL_GRID, "--sparsity", "0.9", "--out", ""]) == 2
    assert "--out is empty" in one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def _image_folder(root: Path, files: dict[str, list[str]]) -> Path:
    """An ImageFolder at ``root``: ``{"train/cat": ["a.jpg"], ...}`` (empty files: no image is opened)."""
    for folder, names in files.items():
        (root / folder).mkdir(parents=True)
        for name in names:
            (root / folder / name).write_bytes(b"")
    return root


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"train/cat": [], "train/dog": ["a.jpg"], "val/cat": ["b.jpg"], "val/dog": ["c.jpg"]},
            "train has no image of class 'cat'",
        ),
        (
            {"train/cat": ["a.jpg"], "train/dog": ["b.jpg"], "val/dog": ["c.jpg"]},
            "val has no image of class 'cat'",
        ),
    ],
)
def test_an_image_folder_class_without_images_is_a_usage_error(tmp_path, capsys, files, message):
    root = _image_folder(tmp_path / "pets", files)
    out = tmp_path / "out"
    assert main(["run", "--dataset", f"imagefolder:{root}", "--out", str(out)]) == 2
    err = one_error_line(capsys)
    assert message in err and "needs images in train/ and val/" in err, err
    assert not out.exists()


def test_a_plugin_that_exits_at_import_is_skipped_with_one_warning(
    tmp_path, monkeypatch, method_registry, capsys
):
    (tmp_path / "exiting_plugin_module.py").write_text("raise SystemExit(5)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(method_registry._CLASSES, "_loaded", False)
    entry = importlib.metadata.EntryPoint("exiting", "exiting_plugin_module", "prunebench.methods")
    monkeypatch.setattr(
        importlib.metadata, "entry_points", lambda group: [entry] if group == entry.group else []
    )
    assert main(["list", "methods"]) == 0
    captured = capsys.readouterr()
    assert "magnitude" in captured.out  # the package's own methods are listed
    warning = [line for line in captured.err.splitlines() if "exiting" in line]
    assert len(warning) == 1 and "failed to import and is skipped: SystemExit: 5" in warning[0], captured.err
