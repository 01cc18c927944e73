"""The leaderboard: records of one or more results directories, aggregated over seeds, as Markdown and CSV."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from prunebench.errors import UsageError

FORMATS = ("md", "csv")


def write_leaderboard(directories: Iterable[Path], out: Path, formats: Sequence[str] = FORMATS) -> str:
    """Write ``leaderboard.md`` / ``leaderboard.csv`` into ``out``; return the Markdown text."""
    from prunebench.leaderboard.markdown import render_markdown
    from prunebench.leaderboard.records import load_records
    from prunebench.leaderboard.table import tidy_table
    from prunebench.results import atomic_write_text

    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UsageError(f"unknown format {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    directories = [Path(d) for d in directories]
    records = load_records(directories)
    if not records:
        raise UsageError(
            f"no run records found in {', '.join(map(str, directories))} (looked for runs/*.json)"
        )
    table = tidy_table(records)
    markdown = render_markdown(table)
    if "md" in formats:
        atomic_write_text(Path(out) / "leaderboard.md", markdown)
    if "csv" in formats:
        atomic_write_text(Path(out) / "leaderboard.csv", table.to_csv(index=False))
    return markdown
