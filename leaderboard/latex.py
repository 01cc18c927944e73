"""The leaderboard as LaTeX: every table of every (dataset, model) as a booktabs ``table`` float, to ``\\input``."""

from __future__ import annotations

from prunebench.leaderboard.render import to_latex
from prunebench.leaderboard.sections import Section

PREAMBLE = """\
% prunebench leaderboard: tables for \\input{leaderboard.tex}; needs \\usepackage{booktabs}.
% Labels: tab:<dataset>_<model>-<table>, table in scopes, allocation, controls, accuracy, top5, cost.
"""


def render_latex(sections: list[Section]) -> str:
    """Every table of every section, each labelled ``tab:<dataset>_<model>-<table>``."""
    parts = [PREAMBLE.rstrip()]
    for section in sections:
        parts.append(f"% {section.title}")
        parts += [to_latex(table, f"tab:{section.stem}-{table.name}") for table in section.tables]
    return "\n\n".join(parts) + "\n"
