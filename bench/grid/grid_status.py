"""``bench status DIR``: where a grid stands, from its results directory alone (records, claims, checkpoints).

* done: runs with a finished record (``ok`` or ``diverged``); failed: runs whose record says ``failed`` (a rerun
  retries them);
* running: runs with a live claim, with the runner's host, pid and device, since when, and its last heartbeat;
* stale: claims whose owner is gone (dead pid on this host, or no heartbeat for the claim timeout): the next runner
  takes them over;
* interrupted: runs with a checkpoint, no record and no live claim (a rerun resumes them from it);
* pending: runs of the grid (given by the same flags or experiment file as ``bench run``) with no record, no live
  claim and no checkpoint. Without the grid, only what the directory holds is counted.

Each run of the grid is counted once, in the first of done, failed, running, interrupted and pending that applies,
so that the counts add up to the grid's size. The shared dense pre-trainings are not runs: their claims and
checkpoints are listed apart (``pretraining``), and a checkpoint left beside a finished record (its runner died
between the two writes; the next ``bench run`` removes it) is not an interrupted run.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunebench.grid.claims import DEFAULT_STALE_AFTER_S, ClaimInfo, ClaimStore


@dataclass
class GridStatus:
    statuses: Counter = field(default_factory=Counter)
    running: list[ClaimInfo] = field(default_factory=list)
    stale: list[ClaimInfo] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)
    pretraining: list[ClaimInfo] = field(default_factory=list)
    """Live claims of dense pre-trainings (jobs of the grid, not runs: shown in the table, not counted as runs)."""
    pretrainings_cached: int = 0
    pretrainings_planned: int | None = None
    """The grid's dense pre-trainings (:func:`~prunebench.grid.scheduler.pretrainings`), when the grid is given."""
    pending: int | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return self.statuses["ok"] + self.statuses["diverged"]

    def summary(self) -> str:
        """One line: done, failed, running, interrupted, pending."""
        parts = [f"done {self.done}", f"failed {self.statuses['failed']}", f"running {len(self.running)}"]
        if self.stale:
            parts.append(f"stale claims {len(self.stale)}")
        if self.pretrainings_planned:
            parts.append(f"dense pre-trainings cached {self.pretrainings_cached}/{self.pretrainings_planned}")
        elif self.pretrainings_cached:
            parts.append(f"dense pre-trainings cached {self.pretrainings_cached}")
        if self.pretraining:
            parts.append(f"dense pre-trainings running {len(self.pretraining)}")
        parts.append(f"interrupted {len(self.interrupted)}")
        parts.append("pending ?" if self.pending is None else f"pending {self.pending}")
        return ", ".join(parts)


def _record_status(path: Path) -> str:
    try:
        status = json.loads(path.read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return "unreadable"
    return status if status in ("ok", "diverged", "failed") else "unreadable"


def _count_pretrainings(status: GridStatus, cache: Path, configs: list | None) -> None:
    """How many of the grid's dense pre-trainings are cached (of all in the cache when the grid is not given)."""
    cached = (
        {path.stem.removeprefix("dense-") for path in cache.glob("dense-*.pt")} if cache.is_dir() else set()
    )
    if configs is None:
        status.pretrainings_cached = len(cached)
        return
    from prunebench.grid.scheduler import (
        pretrainings,
    )  # torch, only for a grid given: `bench status DIR` stays fast

    planned = {job.key for job in pretrainings(configs)}
    status.pretrainings_planned = len(planned)
    status.pretrainings_cached = len(planned & cached)


def grid_status(
    out: Path, configs: list | None = None, stale_after_s: float = DEFAULT_STALE_AFTER_S
) -> GridStatus:
    """The state of the results directory ``out`` (and of the grid ``configs`` when given)."""
    out = Path(out)
    status = GridStatus()
    wanted = {c.run_id: c for c in configs} if configs is not None else None
    status.labels = {run_id: c.label for run_id, c in (wanted or {}).items()}
    runs = out / "runs"
    recorded = set()
    if runs.is_dir():
        for path in runs.glob("*.json"):
            run_id = path.stem
            if wanted is not None and run_id not in wanted:
                continue
            recorded.add(run_id)
            status.statuses[_record_status(path)] += 1
    _count_pretrainings(status, out / "cache", configs)
    claims = ClaimStore(out, stale_after_s)
    held = set()
    for info, stale in claims.all():
        pretraining = info.key.startswith("dense-")
        if wanted is not None and info.key not in wanted and not pretraining:
            continue
        if stale:
            status.stale.append(info)
            continue
        held.add(info.key)
        if pretraining:
            status.pretraining.append(info)
        elif info.key not in recorded:
            status.running.append(info)
    checkpoints = out / "checkpoints"
    if checkpoints.is_dir():
        for path in checkpoints.glob("*.pt"):
            key = path.stem
            if key.startswith("dense-") or key in held or key in recorded:
                continue
            if wanted is None or key in wanted:
                status.interrupted.append(key)
    if wanted is not None:
        counted = recorded | held | set(status.interrupted)
        status.pending = sum(1 for run_id in wanted if run_id not in counted)
    return status


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def status_table(status: GridStatus) -> Any:
    """The running (and stale) claims as a rich table."""
    from rich.table import Table

    now = time.time()
    table = Table("run", "state", "host", "pid", "device", "since", "heartbeat")
    rows = [
        *((i, "running") for i in status.pretraining + status.running),
        *((i, "stale") for i in status.stale),
    ]
    for info, state in rows:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.start))
        label = status.labels.get(info.key, info.key)
        if info.key.startswith("dense-"):
            label = f"dense pre-training {info.key[6:]}"
        table.add_row(
            label, state, info.host, str(info.pid), info.device, started, _ago(now - info.heartbeat)
        )
    return table
