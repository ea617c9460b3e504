"""The one error type kwlab raises for bad user input; the CLI prints it as one line and exits with code 2."""

from __future__ import annotations

from collections.abc import Iterable


class KWLabError(ValueError):
    """A user-facing error: its message names the bad value and what was expected."""


def not_one_of(value: object, allowed: Iterable[object]) -> str:
    """The standard text for a value outside its allowed set: "'x' is not one of 'a', 'b'"."""
    return f"{value!r} is not one of {', '.join(repr(a) for a in allowed)}"


def choice_error(what: str, value: object, allowed: Iterable[object]) -> KWLabError:
    """Build the standard 'unknown X' error listing the allowed values."""
    return KWLabError(f"{what}: {not_one_of(value, allowed)}")
