"""The user-error type: the CLI turns it into one line on stderr and exit code 1."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or options (not a bug).

    The message is one line saying what is wrong and, where useful, what to do.
    Use :func:`at` to name a file, line and field consistently.
    """


def at(path: object, line: int | None = None, field: str | None = None) -> str:
    """Format a location as ``file:line: field 'x'`` for error messages."""
    loc = str(path)
    if line is not None:
        loc += f":{line}"
    if field is not None:
        loc += f": field '{field}'"
    return loc
