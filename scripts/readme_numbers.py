"""Write the README's default-grid block from the committed example, so that its numbers cannot drift from the data.

Usage: ``python scripts/readme_numbers.py`` rewrites the block between the markers in README.md;
``python scripts/readme_numbers.py --check`` exits 1 when the README's block differs from what the example gives
(``tests/test_readme_example.py`` runs the check). Every number of the block is read from
``examples/default-grid``'s CSV files, which ``bench leaderboard examples/default-grid`` writes from the records.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "default-grid"
README = ROOT / "README.md"
BEGIN, END = (
    "<!-- default-grid numbers: begin (scripts/readme_numbers.py) -->",
    "<!-- default-grid numbers: end -->",
)


def _signed(value: float) -> str:
    return f"{value:+.2f}".replace("-", "−")


def _difference(row: pd.Series) -> str:
    """The cell as the leaderboard's scope table writes it: ± the half-width, ``(no spread)`` where the paired
    differences are all equal (their interval is unbounded at these seeds), bold where significant, ◊ where the
    two-level test (seeds and test examples) disagrees."""
    half = (float(row["ci_high"]) - float(row["ci_low"])) / 2
    text = (
        f"{_signed(row['difference'])} ± {half:.2f}"
        if math.isfinite(half)
        else f"{_signed(row['difference'])} (no spread)"
    )
    text = f"**{text}**" if _true(row["significant"]) else text
    two_level = row.get("two_level_significant", "")
    return f"{text} ◊" if two_level != "" and _true(two_level) != _true(row["significant"]) else text


def _true(value: object) -> bool:
    return str(value) == "True"


def _scope_table(scopes: pd.DataFrame, sparsities: list[float]) -> list[str]:
    pairs = scopes[(scopes["scope_a"] == "global") & (scopes["scope_b"] == "uniform")]
    header = " | ".join(f"{s:g} ({round(1 / (1 - s))}×)" for s in sparsities)
    lines = [f"| criterion | difference | {header} |", "|---|---|" + "---:|" * len(sparsities)]
    for method, rows in pairs.groupby("method", sort=True):
        by = {row["sparsity"]: _difference(row) for _, row in rows.iterrows()}
        cells = " | ".join(by.get(s, "") for s in sparsities)
        lines.append(f"| {method} | global − uniform | {cells} |")
    return lines


def _counts(scopes: pd.DataFrame, sparsities: list[float]) -> str:
    total = len(scopes)
    significant = int(scopes["significant"].map(_true).sum())
    per_column = len(scopes) // max(len(sparsities), 1)
    low = scopes[scopes["sparsity"] < max(sparsities)]
    within = int((low["difference"].abs() <= 2.0).sum())
    seeds = int(scopes["n"].max())
    return (
        f"With {seeds} seeds and {per_column} comparisons per column, Holm's correction leaves {significant} of the "
        f"{total} differences significant; below {max(sparsities):g}, {within} of {len(low)} differences are within "
        "two points." + _two_level(scopes)
    )


def _two_level(scopes: pd.DataFrame) -> str:
    if "two_level_significant" not in scopes:
        return ""
    tested = scopes[scopes["two_level_significant"] != ""]
    significant = int(tested["two_level_significant"].map(_true).sum())
    return (
        f" Over seeds and test examples together (a new seed and a new test set, docs/statistics.md), {significant} "
        f"of the {len(tested)} are; ◊ marks where the two levels disagree."
    )


def _resolution(example: Path) -> str:
    from prunebench.leaderboard.power import comparable_records, resolution

    found = resolution(comparable_records(example))
    parts = [f"{row['detectable']:.1f} points at {row['sparsity']:g}" for _, row in found.iterrows()]
    seeds = int(found["n"].min())
    return (
        f"At {seeds} seeds this grid resolves differences of about {', '.join(parts)} (80% power after Holm's "
        "correction; `bench power examples/default-grid` gives the seeds each comparison needs)."
    )


def _best(board: pd.DataFrame, sparsity: float, count: int = 5) -> str:
    cells = board[(board["sparsity"] == sparsity) & (board["method"] != "dense")]
    top = cells.sort_values("top1_mean", ascending=False).head(count)
    named = ", ".join(f"{row['method']} ({row['scope']}) {row['top1_mean']:.1f}" for _, row in top.iterrows())
    return f"The {count} best cells at {sparsity:g} (mean top-1 over seeds): {named}."


def render(example: Path = EXAMPLE) -> str:
    """The README's block for the example in ``example``."""
    board = pd.read_csv(example / "leaderboard.csv", keep_default_na=False)
    scopes = pd.read_csv(example / "leaderboard_scopes.csv", keep_default_na=False)
    sparsities = sorted({float(s) for s in scopes["sparsity"]})
    dense = board[board["method"] == "dense"].iloc[0]
    runs = len(list((example / "runs").glob("*.json")))
    half = (dense["top1_ci_high"] - dense["top1_ci_low"]) / 2
    lines = [
        BEGIN,
        f"{runs} records; dense baseline {dense['top1_mean']:.2f} ± {half:.2f} (mean ± half-width of the 95% t "
        f"interval over {int(dense['n'])} seeds). The `global − uniform` rows of the scope table (the whole "
        f"table has {len(scopes) // max(len(sparsities), 1)} comparisons per sparsity):",
        "",
        *_scope_table(scopes, sparsities),
        "",
        _counts(scopes, sparsities) + " " + _resolution(example) + " " + _best(board, max(sparsities)),
        END,
    ]
    return "\n".join(lines)


def _replace(text: str, block: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + block + text[end:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the README's block is not the example's"
    )
    args = parser.parse_args()
    text = README.read_text()
    if BEGIN not in text or END not in text:
        print(f"README.md has no block between {BEGIN!r} and {END!r}", file=sys.stderr)
        return 2
    updated = _replace(text, render())
    if args.check:
        if updated != text:
            print(
                "README.md's default-grid block differs from examples/default-grid: run scripts/readme_numbers.py"
            )
            return 1
        return 0
    README.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
