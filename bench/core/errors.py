"""Errors the user can act on: the CLI prints each as one line, with no traceback.

:class:`UsageError` (exit status 2) is bad input the user can fix; :class:`WriteError` and :class:`Failed` (exit
status 1) are a command that could not complete for a reason outside its input: a full disk, a killed process.
"""

import errno


class UsageError(ValueError):
    """Bad input from the user (unknown name, malformed value, unwritable path, unreadable data file)."""


class WriteError(OSError):
    """A file that could not be written (a full disk, a lost permission): its message names the file, and for a
    full disk the space needed and free (``detail``)."""

    detail = ""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}{self.detail}"


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
"""No space left on the device, or the user's quota exceeded."""


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` is a write that failed for lack of space: such an error stops a grid (every run after it
    would fail the same way) instead of being recorded as the run's failure."""
    return isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS


class Failed(RuntimeError):
    """A command that could not complete for a reason outside the user's input (a helper process was killed)."""


def grid_stopped(error: BaseException | str) -> Failed:
    """The error that stops a grid on a full disk (:func:`is_disk_full`), whichever runner met it."""
    return Failed(f"{error}; the grid stopped: free some space and rerun to resume it")


def unknown(kind: str, name: str, known: list[str] | tuple[str, ...]) -> UsageError:
    """The error for a name that is not registered, listing what is."""
    return UsageError(f"unknown {kind} {name!r}; registered: {', '.join(sorted(known))}")
