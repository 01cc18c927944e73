"""Faults and broken inputs, as a new user meets them: edited or corrupt records and caches, killed writers, a full
disk, broken data, bad flags. Each test checks the exit status, the one-line message and the files left behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from prunebench.cli import main
from prunebench.record import RECORD_VERSION, problem

GRID = [
    "--preset",
    "synthetic-tiny",
    "--epochs",
    "2",
    "--scopes",
    "global",
    "--sparsity",
    "0.9",
    "--seeds",
    "1",
]


def bench(capsys, out: Path, *argv: str, methods: str = "magnitude") -> tuple[int, list[str]]:
    """``bench run`` of a small grid into ``out`` in one process: its exit status and its stderr lines."""
    status = main(["run", *GRID, "--methods", methods, "--jobs", "1", "--out", str(out), *argv])
    return status, capsys.readouterr().err.splitlines()


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    """A finished small grid (the dense baseline and one pruned run), run once for the module."""
    out = tmp_path_factory.mktemp("grid")
    assert main(["run", *GRID, "--methods", "magnitude", "--jobs", "1", "--out", str(out)]) == 0
    return out


@pytest.fixture
def out(grid, tmp_path) -> Path:
    """A copy of :func:`grid`, the test's own."""
    return Path(shutil.copytree(grid, tmp_path / "out"))


def records(out: Path) -> dict[str, dict]:
    """The records under ``out/runs`` by file name (unparsable files as ``None``)."""
    found = {}
    for path in sorted((out / "runs").glob("*.json")):
        try:
            found[path.name] = json.loads(path.read_text())
        except ValueError:
            found[path.name] = None
    return found


def leftovers(out: Path) -> list[str]:
    """Temporary files anywhere under ``out``."""
    return sorted(p.name for p in out.rglob(".*") if p.suffix in (".tmp", ".partial"))


# Row 2: a finished record edited to an older version (or without top1) is not finished: it runs again, said once.
def test_an_edited_record_is_run_again_with_one_note(capsys, out):
    first = records(out)
    dense, pruned = sorted(first, key=lambda name: first[name]["method"])
    older = {**first[dense], "version": RECORD_VERSION - 1}
    (out / "runs" / dense).write_text(json.dumps(older))
    (out / "runs" / pruned).write_text(json.dumps({k: v for k, v in first[pruned].items() if k != "top1"}))

    status, err = bench(capsys, out)
    assert status == 0
    notes = [line for line in err if "could not be used" in line]
    assert len(notes) == 1 and notes[0].startswith(
        "bench: warning: 2 record(s) could not be used and are run again"
    )
    assert str(out / "runs" / dense) in notes[0] and f"record version {RECORD_VERSION - 1}" in notes[0]
    again = records(out)
    assert sorted(again) == sorted(first) and all(problem(r) is None for r in again.values())
    assert all(again[name]["finished_at"] >= first[name]["finished_at"] for name in again)
    table = (out / "leaderboard.csv").read_text()
    assert "magnitude" in table and "dense" in table
    status, err = bench(capsys, out)  # now finished: nothing runs again, nothing to say
    assert status == 0 and not any("could not be used" in line for line in err)
    assert records(out) == again


# Row 3: a record file holding [] or "x" never raises; the grid resumes and runs those runs again.
@pytest.mark.parametrize("content", ["[]", '"x"', "{", ""])
def test_a_record_that_is_not_an_object_is_run_again(capsys, out, content):
    names = sorted(records(out))
    (out / "runs" / names[0]).write_text(content)
    status, err = bench(capsys, out)
    assert status == 0 and not any("Traceback" in line for line in err)
    assert all(line.startswith("bench: warning: ") for line in err)
    assert (
        sum(
            f"1 record(s) could not be used and are run again: {out / 'runs' / names[0]}" in line
            for line in err
        )
        == 1
    )
    assert all(problem(r) is None for r in records(out).values()) and sorted(records(out)) == names


def _killed_writer(target: Path, mode: str) -> None:
    """A process killed (SIGKILL) while it writes ``target`` through ``atomic_file``: it leaves its temporary file."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from prunebench.results import atomic_file
        with atomic_file(Path({str(target)!r}), {mode!r}) as stream:
            stream.write({"b'x' * 4096" if "b" in mode else "'x' * 4096"})
            stream.flush()
            print("writing", flush=True)
            time.sleep(60)
        """
    )
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    writer.kill()
    writer.wait()


# Row 11: temporary files of writers killed with SIGKILL are removed by the next run, with one summary line; the
# temporary file of a live writer is left alone.
def test_temporaries_of_killed_writers_are_removed_by_the_next_run(capsys, out):
    kept = records(out)
    _killed_writer(out / "runs" / "killed.json", "w")
    _killed_writer(out / "cache" / "dense-killed.pt", "wb")
    old = out / "runs" / ".old.json.tmp"  # no writer named (an older name): stale by its age alone
    old.write_text("{")
    os.utime(old, (0, 0))
    live = (
        out / "runs" / f".live.json.{os.getpid()}@elsewhere.x.tmp"
    )  # another host's writer: not ours to judge
    live.write_text("{")
    assert len(leftovers(out)) == 4

    status, err = bench(capsys, out)
    assert status == 0
    summary = [line for line in err if "stale temporary" in line]
    assert len(summary) == 1 and summary[0].startswith("bench: warning: removed 3 stale temporary file(s) (")
    assert leftovers(out) == [live.name]
    assert records(out) == kept
