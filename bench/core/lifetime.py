"""Processes that end with their parent: a worker of ``bench run --jobs N`` (:mod:`prunebench.grid.local_worker`) or a writer
process of ``bench data prepare`` (:mod:`prunebench.datasets.ffcv_writer`) must not outlive a parent that was
killed outright, holding a device, memory or shared memory. Imports nothing heavy, so that forked writer
processes can use it at no cost.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

PARENT_GONE = "the parent process died"
"""The stop request of a process whose parent is gone."""


def set_parent_death_signal(signum: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``signum`` to this process when its parent dies (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signum, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def watch_parent(parent: int, interval: float = 1.0) -> None:
    """Ask the run to stop (checkpoint and exit) when the parent process ``parent`` is gone (a daemon thread)."""
    from prunebench.run.run_checkpoint import STOP

    def loop() -> None:
        while True:
            if os.getppid() != parent:
                STOP.request(PARENT_GONE)
                return
            threading.Event().wait(interval)

    threading.Thread(target=loop, name="parent watch", daemon=True).start()
