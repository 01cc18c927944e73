"""Errors the user can fix: the CLI prints them as one line, with no traceback."""


class UsageError(ValueError):
    """Bad input from the user (unknown name, malformed value, unwritable path)."""


def unknown(kind: str, name: str, known: list[str] | tuple[str, ...]) -> UsageError:
    """The error for a name that is not registered, listing what is."""
    return UsageError(f"unknown {kind} {name!r}; registered: {', '.join(sorted(known))}")
