"""The leaderboard: records of one or more results directories, aggregated over seeds, as Markdown, CSV and plots."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from prunebench.errors import UsageError

FORMATS = ("md", "csv", "png", "svg")
DEFAULT_FORMATS = ("md", "csv", "png")
INTERVALS = ("t", "bootstrap")


def _check(formats: Sequence[str], ci: str) -> None:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UsageError(f"unknown format {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    if ci not in INTERVALS:
        raise UsageError(f"unknown interval {ci!r}; choose from {', '.join(INTERVALS)}")


def write_leaderboard(
    directories: Iterable[Path],
    out: Path,
    formats: Sequence[str] = DEFAULT_FORMATS,
    *,
    ci: str = "t",
    dataset: str | None = None,
    model: str | None = None,
    methods: Sequence[str] | None = None,
    density_sparsity: float | None = None,
) -> str:
    """Merge the records of ``directories`` and write the leaderboard into ``out``; return the Markdown text.

    ``md``: ``leaderboard.md``; ``csv``: ``leaderboard.csv`` (tidy) and ``leaderboard_wide.csv`` (as in the
    Markdown); ``png`` / ``svg``: ``plots/<dataset>_<model>_{accuracy,density}.<ext>``, linked from the Markdown.
    ``ci`` is ``t`` (Student) or ``bootstrap``. Skipped and duplicate records are reported as ``RecordWarning``.
    """
    from prunebench.leaderboard.markdown import render_markdown, wide_table
    from prunebench.leaderboard.records import load_records, select, warn_mixed_budgets
    from prunebench.leaderboard.table import tidy_table
    from prunebench.results import atomic_write_text

    _check(formats, ci)
    directories = [Path(d) for d in directories]
    out = Path(out)
    records = load_records(directories)
    if not records:
        raise UsageError(
            f"no run records found in {', '.join(map(str, directories))} (looked for runs/*.json)"
        )
    records = select(records, dataset, model, methods)
    if not records:
        raise UsageError("no run records match the --dataset / --model / --methods selection")
    warn_mixed_budgets(records)
    table = tidy_table(records, ci)
    plots = {}
    plot_formats = [f for f in formats if f in ("png", "svg")]
    if plot_formats:
        from prunebench.leaderboard.plots import write_plots

        plots = write_plots(table, records, out, plot_formats, density_sparsity)
    markdown = render_markdown(table, records, ci, plots)
    if "md" in formats:
        atomic_write_text(out / "leaderboard.md", markdown)
    if "csv" in formats:
        atomic_write_text(out / "leaderboard.csv", table.to_csv(index=False))
        atomic_write_text(out / "leaderboard_wide.csv", wide_table(table).to_csv(index=False))
    return markdown
