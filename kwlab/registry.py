"""One pattern for every kwlab registry (attention functions, methods, datasets, sharing rules): a decorator that adds
an entry, a listing, and a one-line error for an unknown name that lists the known ones.

A name is registered once: registering it again keeps the first entry and warns, so a plugin never silently replaces
a built-in (or another plugin's) entry.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from kwlab.errors import choice_error

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind; `kind` names them in messages (e.g. 'attention function', 'kw.attention')."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind, self.key = kind, key  # key: the config key users write the name under, for error messages
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding `entry` under `name`; an existing name is kept and a warning is raised."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name: expected a non-empty string, got {name!r}")

        def add(entry: T) -> T:
            if name in self._entries:
                warnings.warn(f"{self.kind} {name!r} is already registered; keeping the first", stacklevel=2)
            else:
                self._entries[name] = entry
            return entry

        return add

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def get(self, name: str) -> T:
        """The entry of `name`, or a one-line error listing the known names."""
        if name not in self._entries:
            raise choice_error(self.key, name, self.names())
        return self._entries[name]

    __getitem__ = get

    def __delitem__(self, name: str) -> None:
        """Remove an entry (tests and interactive sessions undo what they registered)."""
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
