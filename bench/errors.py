"""Errors the user can act on: the CLI prints each as one line, with no traceback.

:class:`UsageError` (exit status 2) is bad input the user can fix; :class:`WriteError` and :class:`Failed` (exit
status 1) are a command that could not complete for a reason outside its input: a full disk, a killed process.
"""


class UsageError(ValueError):
    """Bad input from the user (unknown name, malformed value, unwritable path, unreadable data file)."""


class WriteError(OSError):
    """A file that could not be written (a full disk, a lost permission): its message names the file."""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


class Failed(RuntimeError):
    """A command that could not complete for a reason outside the user's input (a helper process was killed)."""


def unknown(kind: str, name: str, known: list[str] | tuple[str, ...]) -> UsageError:
    """The error for a name that is not registered, listing what is."""
    return UsageError(f"unknown {kind} {name!r}; registered: {', '.join(sorted(known))}")
