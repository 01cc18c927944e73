"""The leaderboard: records of one or more results directories, aggregated over seeds, as Markdown, CSV, LaTeX and
plots."""

from __future__ import annotations

import gc
from collections.abc import Iterable, Sequence
from pathlib import Path

from prunebench.core.errors import UsageError
from prunebench.leaderboard.budget_marks import mark_over_budget
from prunebench.leaderboard.controls_table import add_control_tables, split_controls
from prunebench.leaderboard.leaderboard_files import write_files
from prunebench.leaderboard.record_reader import collector_paused, load_records, select
from prunebench.leaderboard.scopes import scope_comparisons
from prunebench.leaderboard.sections import build_sections
from prunebench.leaderboard.setups import label_setups
from prunebench.leaderboard.structured_section import split, write_structured
from prunebench.leaderboard.tidy_table import tidy_table

FORMATS = ("md", "csv", "tex", "png", "svg")
DEFAULT_FORMATS = ("md", "csv", "tex", "png")
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
    top5: bool = False,
) -> str:
    """Merge the records of ``directories`` and write the leaderboard into ``out``; return the Markdown text.

    ``md``: ``leaderboard.md``; ``tex``: ``leaderboard.tex`` (booktabs tables); ``csv``: ``leaderboard.csv`` (tidy
    cells), ``leaderboard_scopes.csv`` (tidy scope differences), ``leaderboard_wide.csv`` (the accuracy table as in
    the Markdown) and ``leaderboard_wide_<table>.csv`` (the other tables); ``png`` / ``svg``:
    ``plots/<dataset>_<model>_{accuracy,speedup,density}.<ext>``, linked from the Markdown. The tables are written
    before the figures, so that a figure that fails leaves them complete. ``ci`` is ``t`` (Student) or
    ``bootstrap``; ``top5`` adds the top-5 table. Allocation controls appear in their own table only
    (:mod:`prunebench.leaderboard.controls_table`); rows that spent more than the recipe's budget are marked
    (:mod:`prunebench.leaderboard.budget_marks`); runs that differ in more than their seed (recipe, prunable-set
    options, versions) are rows of their own (:mod:`prunebench.leaderboard.setups`). Skipped and duplicate records are
    reported as ``RecordWarning``.
    Records of the structured track get their own sections (:mod:`prunebench.leaderboard.structured_section`), appended to
    the Markdown, and ``leaderboard_structured.csv``.
    """
    _check(formats, ci)
    directories = [Path(d) for d in directories]
    out = Path(out)
    with collector_paused():
        records = load_records(directories)
        gc.freeze()  # they live until the end: the collections that building the tables triggers skip them
    try:
        if not records:
            raise UsageError(
                f"no run records found in {', '.join(map(str, directories))} (looked for runs/*.json)"
            )
        records = select(records, dataset, model, methods)
        if not records:
            raise UsageError("no run records match the --dataset / --model / --methods selection")
        label_setups(records)  # runs that differ in more than their seed are different rows
        records, controls = split_controls(records)  # controls appear in their own table only
        records, structured = split(records)
        cells = tidy_table(records, ci)
        comparisons = scope_comparisons(records)
        sections = build_sections(
            cells, comparisons, records, ci, density_sparsity=density_sparsity, top5=top5
        )
        add_control_tables(sections, controls)
        mark_over_budget(sections)
        markdown = write_files(out, formats, cells, comparisons, sections)
        return write_structured(out, formats, markdown, structured, ci) if structured else markdown
    finally:
        gc.unfreeze()
