"""The one error type kwlab raises for bad user input (the CLI prints it as one line and exits with code 2), its
subclass for a results location that cannot be written, and kwlab's one-line warnings."""

from __future__ import annotations

import sys
from collections.abc import Iterable


class KWLabError(ValueError):
    """A user-facing error: its message names the bad value and what was expected."""


class WriteError(KWLabError):
    """A file of kwlab's could not be written (a full disk, a read-only or missing folder): the message names the
    folder, the file and the system's reason."""


_WARNED: set[str] = set()


def warn(message: str) -> None:
    """Print `warning: message` on stderr, once per process for the same message."""
    if message not in _WARNED:
        _WARNED.add(message)
        print(f"warning: {message}", file=sys.stderr, flush=True)


def shown(value: object, limit: int = 120) -> str:
    """`repr(value)` for a one-line message, cut to `limit` characters with the full length said when longer."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def not_one_of(value: object, allowed: Iterable[object]) -> str:
    """The standard text for a value outside its allowed set: "'x' is not one of 'a', 'b'"."""
    return f"{shown(value)} is not one of {', '.join(repr(a) for a in allowed)}"


def choice_error(what: str, value: object, allowed: Iterable[object]) -> KWLabError:
    """Build the standard 'unknown X' error listing the allowed values."""
    return KWLabError(f"{what}: {not_one_of(value, allowed)}")
