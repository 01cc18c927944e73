"""The leaderboard as Markdown: per (dataset, model), provenance, the dense baseline, the tables and the plots."""

from __future__ import annotations

from collections.abc import Mapping

import prunebench.leaderboard.provenance as provenance
from prunebench.leaderboard.render import Table, to_markdown
from prunebench.leaderboard.section_tables import dense_line
from prunebench.leaderboard.sections import Section


def _provenance(section: Section) -> list[str]:
    records = section.records
    lines = [
        f"- Budget: {provenance.budget(records)} of weight updates per run",
        f"- Hardware: {provenance.hardware(records)}",
        f"- Versions: {provenance.versions(records)}",
        f"- Grid: {provenance.grid(records)}",
    ]
    lines += [f"- Command: `{command}`" for command in provenance.commands(records)]
    return lines


def render_table(table: Table) -> list[str]:
    """Heading, table, notes and one line per item."""
    parts = [f"### {table.title}", to_markdown(table)]
    if table.notes:
        parts.append(table.notes)
    if table.items:
        parts.append("\n".join(f"- {item}" for item in table.items))
    return parts


def render_section(section: Section, plots: list[str]) -> str:
    """The Markdown of one (dataset, model)."""
    parts = [f"## {section.title}", "\n".join(_provenance(section)), dense_line(section.cells)]
    for table in section.tables:
        parts += render_table(table)
    if plots:
        parts += ["### Plots", "\n\n".join(plots)]
    return "\n\n".join(parts) + "\n"


def render_markdown(sections: list[Section], plots: Mapping[tuple[str, str], list[str]] | None = None) -> str:
    """The whole leaderboard; ``plots`` are image links per (dataset, model)."""
    parts = ["# prunebench leaderboard\n"]
    for section in sections:
        parts.append(render_section(section, (plots or {}).get((section.dataset, section.model), [])))
    return "\n".join(parts)
