"""The committed examples are what their records give: ``bench leaderboard examples/NAME`` writes every one of their
files (Markdown, every CSV, LaTeX and the plots) byte for byte, so no published copy can drift from the data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from prunebench.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _published(root: Path) -> list[Path]:
    """The files of a results directory that are published: all but the records and the plots' digest (a cache of
    what the figures were drawn from, not committed)."""
    return sorted(
        p.relative_to(root)
        for p in root.rglob("*")
        if p.is_file() and "runs" not in p.relative_to(root).parts and not p.name.startswith(".")
    )


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", ["default-grid", "one-shot-mnist", "one-shot-lm"])
def test_the_example_leaderboard_is_regenerated_byte_for_byte(tmp_path, name):
    example = EXAMPLES / name
    copy = tmp_path / name
    shutil.copytree(example / "runs", copy / "runs")
    assert main(["leaderboard", str(copy), "--format", "md,csv,tex,png"]) == 0
    committed, written = _published(example), _published(copy)
    assert written == committed
    differ = [str(p) for p in committed if (example / p).read_bytes() != (copy / p).read_bytes()]
    assert differ == []
