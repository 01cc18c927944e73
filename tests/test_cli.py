"""The command line: user errors are one line with no traceback, refused before any work; listing; a small run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from prunebench.cli import main


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_unknown_method_lists_the_registered_ones(capsys, tmp_path):
    err = _error(capsys, ["run", "--methods", "nope", "--out", str(tmp_path)])
    assert "unknown method 'nope'" in err and "magnitude" in err and "lamp" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sparsity", "0.9,1.2"], "(0, 1)"),
        (["--sparsity", "0"], "(0, 1)"),
        (["--sparsity", "0.9,,x"], "comma-separated"),
        (["--scopes", "everywhere"], "unknown scope 'everywhere'"),
        (["--preset", "imagenet-huge"], "unknown preset 'imagenet-huge'"),
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--jobs", "0"], "--jobs takes a positive integer"),
        (["--methods", "lamp", "--scopes", "uniform"], "supports scopes global"),
    ],
)
def test_bad_input_is_refused_before_any_work(capsys, tmp_path, argv, message):
    out = tmp_path / "out"
    err = _error(capsys, ["run", "--out", str(out), *argv])
    assert message in err
    assert not out.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_out_dir_is_a_clear_error(capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert "cannot write results" in _error(
        capsys, ["run", "--out", str(locked / "x"), "--methods", "magnitude"]
    )


def test_list_prunable_shows_the_prunable_set_with_shapes_and_what_is_left_out(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["list", "prunable", "lenet5"]) == 0
    out = capsys.readouterr().out
    assert (
        "61,470 prunable weights in 5 tensors" in out and "6x1x5x5" in out
    )  # 150 + 2400 + 48000 + 10080 + 840
    assert main(["list", "prunable", "vit_tiny", "--dataset", "mnist5k"]) == 0
    out = capsys.readouterr().out
    assert "attention Q/K/V (packed)" in out and "192x64" in out and "pos_embed" in out


def test_list_prunable_needs_a_model_and_a_shape(capsys):
    assert "name a model" in _error(capsys, ["list", "prunable"])
    assert "give --dataset NAME or --input-shape" in _error(capsys, ["list", "prunable", "hf:bert"])
    assert "comma-separated integers" in _error(
        capsys, ["list", "prunable", "lenet5", "--input-shape", "a,b"]
    )


def test_out_dir_that_is_a_file_is_a_clear_error(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    err = _error(capsys, ["run", "--out", str(blocker), "--methods", "magnitude"])
    assert "cannot write results" in err


@pytest.mark.parametrize("what", ["methods", "datasets", "models", "presets"])
def test_list(capsys, what):
    assert main(["list", what]) == 0
    out = capsys.readouterr().out
    expected = {
        "methods": "lamp",
        "datasets": "mnist5k",
        "models": "lenet5",
        "presets": "mnist5k-lenet300",
    }[what]
    assert expected in out


def test_a_small_grid_runs_and_writes_the_leaderboard(capsys, tmp_path):
    argv = [
        "run",
        "--preset",
        "synthetic-tiny",
        "--epochs",
        "2",
        "--methods",
        "magnitude,lamp",
        "--scopes",
        "global",
    ]
    argv += ["--sparsity", "0.9", "--seeds", "2", "--out", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Total wall time" in out
    assert (tmp_path / "leaderboard.md").exists() and (tmp_path / "leaderboard.csv").exists()
    assert len(list((tmp_path / "runs").glob("*.json"))) == 2 + 2 * 2


def test_help_is_fast_and_does_not_import_torch():
    code = (
        "import sys; from prunebench.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("what", "listed"),
    [
        ("methods", "probmask"),
        ("methods --details all", "temperature_start"),
        ("presets", "mnist5k-lenet300"),
        ("datasets", "imagenet"),
        ("models", "resnet32x2"),
    ],
)
def test_listing_the_registries_does_not_import_torch(what, listed):
    code = (
        "import sys; from prunebench.cli import main\n"
        f"assert main(['list', *{what.split()!r}]) == 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert listed in result.stdout


def test_console_script_help():
    bench = Path(sys.executable).parent / "bench"
    result = subprocess.run([str(bench), "run", "--help"], capture_output=True, text=True, check=True)
    assert "--sparsity" in result.stdout and "--force" in result.stdout


def test_exit_status_is_non_zero_when_a_run_failed(capsys, tmp_path, method_registry):
    from prunebench.methods.base import ScoringMethod

    @method_registry.register("broken", schedule="at_init", scopes=("global",), paper="test")
    class Broken(ScoringMethod):
        """Fails while scoring."""

        def scores(self, model, weights, data):
            raise RuntimeError("broken on purpose")

    argv = [
        "run",
        "--preset",
        "synthetic-tiny",
        "--epochs",
        "2",
        "--methods",
        "broken,magnitude",
        "--scopes",
        "global",
    ]
    assert main([*argv, "--sparsity", "0.9", "--seeds", "1", "--out", str(tmp_path)]) == 1
    assert "1 run(s) failed" in capsys.readouterr().out
