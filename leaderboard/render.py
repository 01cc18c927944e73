"""One table model, three renderings: Markdown, LaTeX (booktabs) and a CSV frame, cell for cell the same table.

A cell is plain text (``±``, ``×``, ``−`` and ``α`` included), a bold flag and footnote marks (``†``, ``‡``, ``§``,
``¶``, ``◊``); notes may use Markdown's ``**bold**`` and ```code```, which LaTeX renders as ``\\textbf`` and ``\\texttt``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True)
class Cell:
    """One table cell: its text, whether it is bold, and the footnote marks that follow it."""

    text: str = ""
    bold: bool = False
    marks: str = ""


@dataclass(frozen=True)
class Table:
    """A table: ``labels`` leading label columns (left-aligned), the others numeric (right-aligned).

    ``notes`` is the paragraph after the table and ``items`` one line each after it (a list in Markdown, joined by
    semicolons in LaTeX); ``groups`` are the row indices where a new group starts (a rule in LaTeX); ``caption`` is
    added to the title in the LaTeX caption.
    """

    name: str
    title: str
    header: list[str]
    rows: list[list[Cell]]
    labels: int = 1
    notes: str = ""
    items: list[str] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    caption: str = ""


def markdown_cell(cell: Cell) -> str:
    text = f"**{cell.text}**" if cell.bold and cell.text else cell.text
    return f"{text} {cell.marks}" if cell.marks else text


def to_markdown(table: Table) -> str:
    """The table as a GitHub Markdown table (labels left, numbers right), without title, notes or items."""
    lines = [
        "| " + " | ".join(table.header) + " |",
        "|" + "---|" * table.labels + "---:|" * (len(table.header) - table.labels),
    ]
    lines += ["| " + " | ".join(markdown_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def to_frame(table: Table) -> pd.DataFrame:
    """The table as a frame of strings, each cell as in the Markdown."""
    return pd.DataFrame([[markdown_cell(c) for c in row] for row in table.rows], columns=table.header)


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_LATEX_SYMBOLS = {
    "±": r"$\pm$",
    "×": r"$\times$",
    "−": r"$-$",
    "–": "--",
    "α": r"$\alpha$",
    "≥": r"$\geq$",
    "<": r"$<$",
    "|": r"$|$",
    ">": r"$>$",
    "…": r"\ldots{}",
    "é": r"\'e",
    "ő": r"\H{o}",
    "†": r"\dag{}",
    "‡": r"\ddag{}",
    "§": r"\S{}",
    "¶": r"\P{}",
    "‖": r"$\|$",
    "◊": r"$\lozenge$",
}


def latex_escape(text: str) -> str:
    """``text`` as LaTeX: special characters escaped, the table's symbols as LaTeX commands."""
    table = {**_LATEX_SPECIAL, **_LATEX_SYMBOLS}
    return "".join(table.get(char, char) for char in text)


def latex_inline(text: str) -> str:
    """A note as LaTeX: escaped, Markdown's ``**bold**`` and ```code``` as ``\\textbf`` and ``\\texttt``."""
    parts = re.split(r"(\*\*[^*]+\*\*|`[^`]+`)", text)
    out = []
    for part in parts:
        if part.startswith("**") and part.endswith("**") and len(part) > 4:
            out.append(r"\textbf{" + latex_escape(part[2:-2]) + "}")
        elif part.startswith("`") and part.endswith("`") and len(part) > 2:
            out.append(r"\texttt{" + latex_escape(part[1:-1]) + "}")
        else:
            out.append(latex_escape(part))
    return "".join(out)


def latex_cell(cell: Cell) -> str:
    text = latex_escape(cell.text)
    if cell.bold and cell.text:
        text = r"\textbf{" + text + "}"
    if cell.marks:
        text += r"\textsuperscript{" + latex_escape(cell.marks.replace(" ", "")) + "}"
    return text


def to_latex(table: Table, label: str) -> str:
    """The table as a LaTeX ``table`` float with booktabs rules, its title (and caption) as the caption."""
    caption = latex_inline(table.title + (f". {table.caption}" if table.caption else ""))
    columns = "l" * table.labels + "r" * (len(table.header) - table.labels)
    lines = [
        r"\begin{table}[htbp]",
        r"\centering",
        r"\small",
        r"\caption{" + caption + "}",
        r"\label{" + label + "}",
        r"\begin{tabular}{" + columns + "}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in table.header) + r" \\",
        r"\midrule",
    ]
    for index, row in enumerate(table.rows):
        if index in table.groups and index > 0:
            lines.append(r"\midrule")
        lines.append(" & ".join(latex_cell(c) for c in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    notes = " ".join([table.notes, "; ".join(table.items) + "." if table.items else ""]).strip()
    if notes:
        lines += [r"\par\smallskip", r"{\footnotesize " + latex_inline(notes) + "}"]
    lines.append(r"\end{table}")
    return "\n".join(lines)
