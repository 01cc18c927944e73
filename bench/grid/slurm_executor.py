"""The Slurm executor: a grid's runs as a Slurm job array, through submitit (``bench run --executor slurm``).

Each array task is a runner like any other (:mod:`prunebench.grid.scheduler`): it claims runs from the shared results
directory one at a time until none is left, so the tasks share the grid dynamically, a run lost with its node is
taken over by another task once its claim is stale (``--claim-timeout``), and a ``bench run`` on a workstation can
work on the same directory beside them. The results directory must be on a filesystem every node sees.

Pre-emption and time limits: submitit asks Slurm to send ``SIGUSR2`` before the end (``--signal=USR2@90``); the task
turns it into a stop request, its run checkpoints at the next step boundary, and then submitit's own handler
requeues the task (:class:`SlurmTask` is a ``submitit.helpers.Checkpointable``: it is resubmitted as it was, and
the requeued task resumes the run from its checkpoint). ``SIGTERM`` (a pre-emption that Slurm requeues itself)
checkpoints the same way.
"""

from __future__ import annotations

import shutil
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from prunebench.core.errors import UsageError


def parse_time(value: Any) -> int:
    """A Slurm time limit in whole minutes (rounded up), in any of Slurm's forms: ``90`` (minutes), ``MM:SS``,
    ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``."""
    text = str(value).strip()
    days, _, rest = text.rpartition("-") if "-" in text else ("0", "", text)
    parts = rest.split(":")
    if not (days.isdigit() and 1 <= len(parts) <= 3 and all(p.isdigit() for p in parts)):
        raise UsageError(f"--slurm-time takes minutes or Slurm's [D-]HH:MM:SS, got {value!r}")
    numbers = [int(p) for p in parts]
    if "-" in text:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = (numbers + [0, 0])[:3]
    else:  # MM, MM:SS or HH:MM:SS
        hours, minutes, seconds = (
            ([0, 0] + numbers)[-3:] if len(numbers) == 3 else (0, numbers[0], (numbers + [0])[1])
        )
    total = int(days) * 1440 + hours * 60 + minutes + (1 if seconds else 0)
    if total < 1:
        raise UsageError(f"--slurm-time must be at least one minute, got {value!r}")
    return total


@dataclass(frozen=True)
class SlurmOptions:
    """The job array's resources; each entry is ``--slurm-NAME`` on the command line and ``NAME`` in
    ``[run.slurm]`` of an experiment file."""

    partition: str | None = None
    time: int = 24 * 60
    """Time limit of each task, minutes."""
    gpus: int = 1
    cpus: int = 8
    mem_gb: float | None = None
    account: str | None = None
    qos: str | None = None
    tasks: int = 8
    """Array tasks (runners) to submit."""
    array_parallelism: int | None = None
    extra: dict[str, str] = field(default_factory=dict)
    """Any other sbatch option, passed through (``constraint=a100``, ``exclude=node[1-3]``)."""
    requeues: int = 20
    """How many times a task may be requeued after reaching its time limit (submitit's ``max_num_timeout``, 3 by
    default there). Each requeue resumes where the task stopped, so a grid longer than ``time`` completes within
    ``time * (requeues + 1)`` per task."""
    cluster: str | None = None
    """submitit's cluster: ``slurm`` (or ``None``) is Slurm, refused where ``sbatch`` is missing; ``local`` runs the
    tasks as processes of this machine (to try a setup without Slurm)."""

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SlurmOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown Slurm option {unknown[0]!r}; known: {', '.join(sorted(known))}")
        values = dict(data)
        if values.get("cluster") not in (None, "slurm", "local"):
            raise UsageError(f"the Slurm cluster is 'slurm' or 'local', got {values['cluster']!r}")
        if "time" in values:
            values["time"] = parse_time(values["time"])
        for name in ("gpus", "cpus", "tasks", "array_parallelism", "requeues"):
            value = values.get(name)
            if value is not None:
                if isinstance(value, str) and value.isdigit():
                    value = int(value)
                if (
                    not isinstance(value, int)
                    or isinstance(value, bool)
                    or value < (0 if name in ("gpus", "requeues") else 1)
                ):
                    raise UsageError(
                        f"--slurm-{name.replace('_', '-')} takes a positive integer, got {value!r}"
                    )
                values[name] = value
        if values.get("mem_gb") is not None:
            try:
                values["mem_gb"] = float(values["mem_gb"])
            except (TypeError, ValueError):
                raise UsageError(f"--slurm-mem takes gigabytes, got {values['mem_gb']!r}") from None
        extra = values.get("extra", {})
        if not isinstance(extra, Mapping):
            raise UsageError("[run.slurm] extra must be a table of sbatch options")
        values["extra"] = {str(k): str(v) for k, v in extra.items()}
        return cls(**values)

    def parameters(self) -> dict[str, Any]:
        """submitit's ``update_parameters`` keywords (one task per node and per array element)."""
        return {
            "name": "prunebench",
            "timeout_min": self.time,
            "gpus_per_node": self.gpus,
            "cpus_per_task": self.cpus,
            "mem_gb": self.mem_gb,
            "nodes": 1,
            "tasks_per_node": 1,
            "slurm_partition": self.partition,
            "slurm_account": self.account,
            "slurm_qos": self.qos,
            "slurm_array_parallelism": self.array_parallelism or self.tasks,
            "slurm_additional_parameters": self.extra or None,
        }


def parse_extra(items: Sequence[str]) -> dict[str, str]:
    """``--slurm-extra KEY=VALUE`` (repeatable) as a dict."""
    extra = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--slurm-extra takes KEY=VALUE (e.g. constraint=a100), got {item!r}")
        extra[key.strip()] = value.strip()
    return extra


try:
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # pragma: no cover - submitit is an extra
    _Checkpointable = object  # type: ignore[assignment,misc]


class SlurmTask(_Checkpointable):
    """One array task: a runner over the grid on this node's device (its first GPU, else the CPU)."""

    def __init__(self, todo: list, out: str, options: Any, settings: Any, since: float) -> None:
        self.todo = todo
        self.out = out
        self.options = options
        self.settings = settings
        self.since = since
        """When the grid was submitted: a requeued task (resubmitted as it was) skips the runs finished since."""

    def __call__(self) -> dict[str, int]:
        import torch

        from prunebench.grid.result_store import ResultStore
        from prunebench.grid.scheduler import Runner, set_deterministic
        from prunebench.run.run_checkpoint import STOP, RunInterrupted

        STOP.clear()
        set_deterministic(self.settings.deterministic)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        preempt = _preemption_signal()
        previous = {sig: signal.getsignal(sig) for sig in (preempt, signal.SIGTERM)}

        def stop(signum: int, frame: Any) -> None:
            STOP.request(signal.Signals(signum).name)

        for sig in previous:
            signal.signal(sig, stop)
        runner = Runner(
            self.todo,
            ResultStore(Path(self.out)),
            device,
            settings=self.settings,
            options=self.options,
            since=self.since,
        )
        try:
            records = runner.run()
        except RunInterrupted:
            print(
                f"prunebench: stopped by {STOP.reason}; the run in progress is checkpointed", file=sys.stderr
            )
            handler = previous[preempt]
            if STOP.reason == signal.Signals(preempt).name and callable(handler):
                handler(preempt, None)  # submitit: checkpoint (resubmit this task as it is), requeue and exit
            return {"records": len(runner.records), "interrupted": 1}
        finally:
            _remove_placeholder_folder(Path(self.out) / "slurm" / "%j")
        return {"records": len(records), "interrupted": 0}


def _preemption_signal() -> int:
    """The signal submitit has Slurm send before a time limit or a pre-emption (``SIGUSR2`` unless configured)."""
    try:
        from submitit.core.job_environment import JobEnvironment

        return JobEnvironment._usr_sig()
    except Exception:  # noqa: BLE001
        return signal.SIGUSR2


def check_cluster(slurm: SlurmOptions) -> None:
    """Refuse ``--executor slurm`` where there is no Slurm to submit to (submitit would run local processes
    instead, and report their pids as job ids), unless the local cluster is asked for."""
    if slurm.cluster != "local" and shutil.which("sbatch") is None:
        raise UsageError(
            "--executor slurm: no Slurm here (sbatch is not on the PATH); to run the tasks as processes of this "
            'machine instead, set cluster = "local" in [run.slurm] or pass --slurm-cluster local'
        )


def submit(
    todo: list, out: Path, run_options: Any, settings: Any, slurm: SlurmOptions, since: float | None = None
) -> list:
    """Submit ``slurm.tasks`` array tasks over ``todo``; return submitit's jobs (their ``job_id``). Where there is no
    Slurm, submitit itself refuses (``bench run`` refuses first: :func:`check_cluster`).

    ``since``: when the grid was planned (:meth:`~prunebench.grid.result_store.ResultStore.clock`, taken before ``todo`` was
    made; ``None``: now), handed to every task so that none, requeued or late, runs again what others finished."""
    try:
        import submitit
    except ImportError:
        raise UsageError(
            "--executor slurm needs submitit: pip install 'prunebench[slurm]' (or submitit)"
        ) from None
    from prunebench.grid.result_store import ResultStore

    since = ResultStore(Path(out)).clock() if since is None else since
    logs = Path(out) / "slurm"
    cluster = "local" if slurm.cluster == "local" else "slurm"
    executor = submitit.AutoExecutor(
        folder=logs / "%j", cluster=cluster, **{f"{cluster}_max_num_timeout": slurm.requeues}
    )
    executor.update_parameters(**slurm.parameters())
    with executor.batch():
        jobs = [
            executor.submit(SlurmTask(list(todo), str(out), run_options, settings, since))
            for _ in range(slurm.tasks)
        ]
    _remove_placeholder_folder(logs / "%j")
    return jobs


def _remove_placeholder_folder(folder: Path) -> None:
    """submitit creates its folder pattern literally (``slurm/%j/``) before substituting the job ids (and its local
    cluster's controller again when it starts the tasks): remove it, at submission and when a task ends, when
    nothing was written there."""
    try:
        folder.rmdir()
    except OSError:  # not empty, or already gone
        pass


def follow(jobs: list, out: Path, configs: list, interval: float = 30.0, echo=print) -> None:
    """Print the grid's counts (:func:`prunebench.grid.grid_status.grid_status`) every ``interval`` seconds until every
    job has ended."""
    from prunebench.grid.grid_status import grid_status

    last = None
    while True:
        done = all(job.done() for job in jobs)
        line = grid_status(Path(out), configs).summary()
        if line != last or done:
            echo(line)
            last = line
        if done:
            return
        time.sleep(interval)
