"""A local worker process of ``bench run --jobs N`` (see :mod:`prunebench.grid.local_executor`): ``python -m prunebench.grid.local_worker``.

Reads its :class:`~prunebench.grid.local_executor.WorkerOrders` (pickled) from stdin, runs the claim loop on its device and
reports each event as one JSON line on stdout. Exits 0 when the grid is done, 3 when it stopped on request (its run
checkpointed), 4 when the disk is full (the error sent as an event), 1 on an error (one line on stderr).
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import sys


class _EventReporter:
    """Events for the parent, one JSON line each. A parent that is gone (a broken pipe) is a stop request: the run
    in progress checkpoints at its next step boundary, as when the parent's death is noticed otherwise, instead of
    failing on the event it could not send."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def _send(self, **event) -> None:
        from prunebench.core.lifetime import PARENT_GONE
        from prunebench.run.run_checkpoint import STOP

        if STOP.reason == PARENT_GONE:
            return
        try:
            self.stream.write(json.dumps(event, default=str) + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):  # ValueError: the stream was closed after a broken pipe
            STOP.request(PARENT_GONE)

    def grid_started(self, total: int, skipped: int) -> None: ...

    def pretraining_started(self, job) -> None:
        self._send(event="pretraining", key=job.key)

    def run_started(self, config) -> None:
        self._send(event="started", run_id=config.run_id)

    def epoch_done(self, phase: str, epoch: int, epochs: int, loss: float) -> None:
        self._send(event="epoch", phase=phase, epoch=epoch, epochs=epochs, loss=loss)

    def run_finished(self, config, record: dict | None) -> None:
        self._send(event="finished", run_id=config.run_id, record=record)

    def disk_full(self, error: OSError) -> None:
        self._send(event="disk_full", message=str(error))


def main() -> int:
    from prunebench.core.extension_registry import PluginWarning
    from prunebench.core.lifetime import set_parent_death_signal, watch_parent
    from prunebench.grid.local_executor import DISK_FULL_STATUS, INTERRUPTED_STATUS

    parent = os.getppid()
    set_parent_death_signal(signal.SIGTERM)
    orders = pickle.loads(sys.stdin.buffer.read())
    events = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr  # anything printed goes to the terminal, not into the event stream

    import warnings

    import torch

    from prunebench.core.errors import is_disk_full
    from prunebench.grid.result_store import ResultStore
    from prunebench.grid.scheduler import Runner, set_deterministic
    from prunebench.run.run_checkpoint import STOP, RunInterrupted

    STOP.clear()

    def stop(signum, frame) -> None:
        STOP.request(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    watch_parent(parent)
    if os.getppid() != parent:
        return INTERRUPTED_STATUS
    torch.set_num_threads(orders.threads)
    set_deterministic(orders.settings.deterministic)
    warnings.showwarning = lambda message, *args, **kwargs: print(
        f"bench: warning: {message}", file=sys.stderr
    )
    warnings.simplefilter("ignore", PluginWarning)  # the parent said it when it planned the grid, once
    reporter = _EventReporter(events)
    runner = Runner(
        orders.todo,
        ResultStore(orders.out),
        torch.device(orders.device),
        reporter=reporter,
        options=orders.options,
        settings=orders.settings,
        since=orders.since,
    )
    try:
        runner.run()
    except RunInterrupted:
        return INTERRUPTED_STATUS
    except Exception as error:  # noqa: BLE001  (one line for the parent's terminal)
        if is_disk_full(error):
            reporter.disk_full(error)
            return DISK_FULL_STATUS
        print(f"bench: worker error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
