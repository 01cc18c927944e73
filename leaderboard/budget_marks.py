"""Rows that spent more than the recipe's budget, marked wherever they appear.

Every method gets the recipe's weight-update budget (``config.recipe.epochs`` of each record) except those whose
schedule spends a multiple of it: iterative magnitude pruning (``imp``, ``magnitude@iterative``) retrains once per
pruning round, 11 times the recipe at its default 10 rounds (:mod:`prunebench.run.iterative_schedule`). Such rows are marked
``‖`` in every table from the recipe's budget and the epochs the runs spent (``epochs.budget``), with a footnote
saying how much they spent, so that nobody reads them as an equal-budget comparison.
"""

from __future__ import annotations

from typing import Any

from prunebench.leaderboard.record_reader import (
    DENSE,
    budget_epochs,
    criterion_label,
    group,
    preset_epochs,
    row_group,
    row_label,
    variant,
)
from prunebench.leaderboard.render import Cell

OVER_BUDGET = "‖"


def recipe_budget(record: dict[str, Any]) -> Any:
    """The recipe's budget in epochs (``config.recipe.epochs``); the spent budget for records that lack it."""
    recipe = preset_epochs(record)
    return recipe if recipe is not None else budget_epochs(record)


def over_budget(records: list[dict[str, Any]]) -> dict[str, str]:
    """Per row label (``method (scope)``, and the criterion label of the scope table) whose finished runs spent more
    epochs than their recipe's budget: a short account, e.g. ``imp (global): 44 epochs, 11× the recipe's 4``."""
    found: dict[str, tuple[float, float]] = {}
    for r in records:
        spent, recipe = budget_epochs(r), recipe_budget(r)
        if r["status"] != "ok" or r["method"] == DENSE or not spent or not recipe or spent <= recipe:
            continue
        label = row_label(r["method"], variant(r), r["scope"], row_group(group(r)))
        found[label] = max(found.get(label, (0, 0)), (float(spent), float(recipe)))
        criterion = criterion_label(r["method"], variant(r))
        found[criterion] = max(found.get(criterion, (0, 0)), (float(spent), float(recipe)))
    return {
        label: f"{label}: {spent:g} epochs, {spent / recipe:.3g}× the recipe's {recipe:g}"
        for label, (spent, recipe) in found.items()
    }


def mark_over_budget(sections: list[Any]) -> None:
    """Mark the over-budget rows of every table of every section, with one footnote per table that has any."""
    for section in sections:
        over = over_budget(section.records)
        if not over:
            continue
        for table in section.tables:
            marked = []
            for row in table.rows:
                first = row[0] if row else None
                if first is not None and first.text in over:
                    marks = f"{first.marks} {OVER_BUDGET}".strip()
                    row[0] = Cell(first.text, first.bold, marks)
                    marked.append(first.text)
            accounts = [over[label] for label in dict.fromkeys(marked)]
            if marked:
                table.items.append(
                    f"{OVER_BUDGET}: spent more weight-update epochs than the recipe's budget (iterative pruning "
                    f"retrains once per round), so not an equal-budget comparison: {'; '.join(accounts)}"
                )
