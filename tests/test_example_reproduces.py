"""The committed example is what its records give: ``bench leaderboard examples/default-grid`` writes every one of
its files (Markdown, every CSV, LaTeX and the plots) byte for byte, so no published copy can drift from the data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from prunebench.cli import main

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "default-grid"


def _published(root: Path) -> list[Path]:
    """The files of a results directory that are published: all but the records and the plots' digest (a cache of
    what the figures were drawn from, not committed)."""
    return sorted(
        p.relative_to(root)
        for p in root.rglob("*")
        if p.is_file() and "runs" not in p.relative_to(root).parts and not p.name.startswith(".")
    )


@pytest.mark.filterwarnings("ignore")
def test_the_example_leaderboard_is_regenerated_byte_for_byte(tmp_path):
    copy = tmp_path / "default-grid"
    shutil.copytree(EXAMPLE / "runs", copy / "runs")
    assert main(["leaderboard", str(copy), "--format", "md,csv,tex,png"]) == 0
    committed, written = _published(EXAMPLE), _published(copy)
    assert written == committed
    differ = [str(p) for p in committed if (EXAMPLE / p).read_bytes() != (copy / p).read_bytes()]
    assert differ == []
