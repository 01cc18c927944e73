"""Claims: which runner executes which run, so that any number of runners can share one results directory.

A runner (a ``bench run`` process, one of its local workers, a Slurm task) claims a run before executing it by
creating ``<out>/claims/<key>.claim`` exclusively (``O_CREAT | O_EXCL``, atomic on a local disk and on NFSv3+ and
the usual cluster filesystems). The file holds the owner's host, pid and start time; its modification time is the
heartbeat, refreshed by a background thread while the run executes. Whoever creates the file owns the run; every
other runner skips it.

A claim whose owner died is taken over: one whose heartbeat is older than ``stale_after_s`` (any host), or whose
owner is a process of this host that no longer exists (at once). Every claim file carries a random token, and the
takeover of the claim with token ``T`` is serialised by creating ``.<key>.<T>.takeover`` exclusively: the one runner
that creates it checks that the claim still holds ``T`` and is still stale, then replaces it by an atomic rename (so
the claim file never disappears, and no third runner can slip in a fresh claim meanwhile), and removes the marker.
A runner that judged ``T`` stale too late finds the marker, or the new token, and gives up. A claim file is written
whole before it appears (written aside, then linked into place), so nobody reads a half-written owner. The owner's
heartbeat thread checks that its file is still its own (its token): a claim lost to a takeover (its owner was
suspended longer than ``stale_after_s``) is noticed, and the run is abandoned without writing anything. A runner
killed inside the takeover's few-millisecond critical section leaves its marker behind; that claim is then taken over
once the marker itself is older than ``stale_after_s``.

The shared dense pre-training is claimed the same way, under its cache key.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prunebench.core.atomic_files import writer_tag

DEFAULT_STALE_AFTER_S = 600.0
"""A claim whose heartbeat is older than this is taken over (``--claim-timeout``)."""
DEFAULT_HEARTBEAT_S = 30.0
"""How often the owner of a claim refreshes its heartbeat."""


@dataclass(frozen=True)
class ClaimInfo:
    """What a claim file says about its owner, and its heartbeat (the file's modification time)."""

    key: str
    host: str
    pid: int
    start: float
    heartbeat: float
    device: str = ""

    def age(self, now: float | None = None) -> float:
        """Seconds since the last heartbeat."""
        return (time.time() if now is None else now) - self.heartbeat


def _token(path: Path) -> str:
    """The random token a claim file was created with ('' when it is gone, or not written yet)."""
    try:
        return str(json.loads(path.read_text()).get("token", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def _mtime(path: Path) -> float:
    """The modification time of ``path`` (now, when it is gone)."""
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return time.time()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # another user's process: alive
        return True
    return True


class Claim:
    """A claim this process holds: refresh its heartbeat with :meth:`start_heartbeat`, give it up with
    :meth:`release` (or use it as a context manager)."""

    def __init__(self, store: ClaimStore, key: str, path: Path, token: str) -> None:
        self.store = store
        self.key = key
        self.path = path
        self.token = token
        self.lost = False
        """Set by the heartbeat when another runner took the claim over: the run must not write anything."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def still_mine(self) -> bool:
        """Whether the claim file is still the one this process created."""
        return _token(self.path) == self.token

    def beat(self) -> None:
        """Refresh the heartbeat now (or notice that the claim was lost)."""
        if not self.still_mine():
            self.lost = True
            return
        try:
            os.utime(self.path)
        except FileNotFoundError:
            self.lost = True

    def start_heartbeat(self) -> Claim:
        """Refresh the heartbeat every ``store.heartbeat_s`` seconds from a daemon thread until released."""
        if self._thread is None:

            def loop() -> None:
                while not self._stop.wait(self.store.heartbeat_s):
                    self.beat()

            self._thread = threading.Thread(target=loop, name=f"heartbeat {self.key}", daemon=True)
            self._thread.start()
        return self

    def release(self) -> None:
        """Stop the heartbeat and remove the claim file, if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if not self.lost and self.still_mine():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Claim:
        return self.start_heartbeat()

    def __exit__(self, *exc: object) -> None:
        self.release()


class ClaimStore:
    """The claims of one results directory (``<out>/claims``)."""

    def __init__(
        self,
        root: Path,
        stale_after_s: float = DEFAULT_STALE_AFTER_S,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
        device: str = "",
    ) -> None:
        self.directory = Path(root) / "claims"
        self.stale_after_s = stale_after_s
        self.heartbeat_s = min(heartbeat_s, stale_after_s / 4)
        self.device = device
        self.host = socket.gethostname()

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.claim"

    def try_claim(self, key: str) -> Claim | None:
        """Claim ``key`` for this process, taking over a stale claim; ``None`` when a live runner holds it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        claim = self._create(key, path)
        if claim is not None:
            return claim
        judged = self._stale_token(path)
        if judged is None:
            return None
        return self._take_over(key, path, judged)

    def _take_over(self, key: str, path: Path, judged: str) -> Claim | None:
        """Replace the stale claim whose token is ``judged``, if this runner is the one that gets to."""
        marker = path.with_name(f".{key}.{judged or 'untokened'}.takeover")
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            if time.time() - _mtime(marker) <= self.stale_after_s:
                return None  # another runner is taking it over
            # left by a runner killed while taking over: removed, and the claim taken over at the next pass
            marker.unlink(missing_ok=True)
            return None
        try:
            status = os.stat(path)
            if _token(path) != judged or not self._is_stale(path, status.st_mtime):
                return None  # taken over (or refreshed) since this runner judged it
            token, staged = self._stage(path)
            os.replace(staged, path)
            return Claim(self, key, path, token)
        except FileNotFoundError:  # released meanwhile: claim it afresh at the next pass
            return None
        finally:
            marker.unlink(missing_ok=True)

    def _stage(self, path: Path) -> tuple[str, Path]:
        """A new claim file for this process, written whole beside ``path``; its token and its path."""
        token = uuid.uuid4().hex
        owner = {
            "host": self.host,
            "pid": os.getpid(),
            "start": time.time(),
            "device": self.device,
            "token": token,
        }
        staged = path.with_name(f".{path.name}.{writer_tag()}.{token}")
        staged.write_text(json.dumps(owner))
        return token, staged

    def _create(self, key: str, path: Path) -> Claim | None:
        """Claim ``key`` if nobody holds a claim file for it (the link fails when one exists)."""
        token, staged = self._stage(path)
        try:
            os.link(staged, path)
        except FileExistsError:
            return None
        finally:
            staged.unlink(missing_ok=True)
        return Claim(self, key, path, token)

    def read(self, path: Path) -> ClaimInfo | None:
        """The claim in ``path``, or ``None`` if it is gone. A file whose content cannot be read yet (its creator is
        between the exclusive create and the write) is reported with no owner."""
        try:
            status = os.stat(path)
            text = path.read_text()
        except FileNotFoundError:
            return None
        try:
            owner = json.loads(text)
            host, pid, start = str(owner["host"]), int(owner["pid"]), float(owner["start"])
            device = str(owner.get("device", ""))
        except (ValueError, KeyError, TypeError):
            host, pid, start, device = "", 0, status.st_mtime, ""
        return ClaimInfo(path.name.removesuffix(".claim"), host, pid, start, status.st_mtime, device)

    def _is_stale(self, path: Path, mtime: float) -> bool:
        if time.time() - mtime > self.stale_after_s:
            return True
        info = self.read(path)
        return info is not None and info.host == self.host and info.pid > 0 and not _pid_alive(info.pid)

    def _stale_token(self, path: Path) -> str | None:
        """The token of the claim in ``path`` when it is stale, else ``None``."""
        try:
            status = os.stat(path)
        except FileNotFoundError:
            return None
        return _token(path) if self._is_stale(path, status.st_mtime) else None

    def is_held(self, key: str) -> bool:
        """Whether a live runner holds ``key``."""
        path = self.path(key)
        try:
            status = os.stat(path)
        except FileNotFoundError:
            return False
        return not self._is_stale(path, status.st_mtime)

    def all(self) -> Iterator[tuple[ClaimInfo, bool]]:
        """Every claim of the directory, with whether it is stale."""
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob("*.claim")):
            info = self.read(path)
            if info is not None:
                yield info, self._is_stale(path, info.heartbeat)
