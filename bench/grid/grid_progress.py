"""Rich progress for a grid: one bar for the grid, one for the epochs of the current run, and a summary table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from prunebench.grid.scheduler import GridReporter, Pretraining
from prunebench.run.run_config import RunConfig


class RichGridReporter(GridReporter):
    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.grid = self.progress.add_task("grid", total=0)
        self.run = self.progress.add_task("run", total=1, visible=False)
        self.console = console

    def __enter__(self) -> RichGridReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def grid_started(self, total: int, skipped: int) -> None:
        self.progress.update(self.grid, total=total, description=f"grid ({skipped} already done)")

    def pretraining_started(self, job: Pretraining) -> None:
        self.progress.update(self.run, description=job.label, completed=0, total=1, visible=True)

    def run_started(self, config: RunConfig) -> None:
        self.progress.update(self.run, description=config.label, completed=0, total=1, visible=True)

    def epoch_done(self, phase: str, epoch: int, epochs: int, loss: float) -> None:
        self.progress.update(
            self.run, completed=epoch + 1, total=epochs, description=f"  {phase} loss {loss:.3f}"
        )

    def run_finished(self, config: RunConfig, record: dict | None) -> None:
        self.progress.advance(self.grid)
        if record is not None and record["status"] != "ok":
            self.console.print(f"[red]{record['status']}[/] {config.label}: {record.get('error', '')}")


def summary_table(records: list[dict], elapsed: float) -> Table:
    """Runs of this invocation by status, with the total wall time."""
    table = Table(
        "status", "runs", "wall time (s)", title=f"This invocation: {len(records)} runs in {elapsed:.1f} s"
    )
    for status in ("ok", "diverged", "failed"):
        chosen = [r for r in records if r["status"] == status]
        if chosen:
            table.add_row(status, str(len(chosen)), f"{sum(r['wall_time_s'] for r in chosen):.1f}")
    return table
