"""A sweep's `imports:`: the user's own modules (attention functions, methods, models, datasets registered with
kwlab's decorators), imported in the driver and in every Ray worker before any trial is built."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path

from kwlab.errors import KWLabError


def resolve(entries: list[str], base: Path) -> list[str]:
    """Each entry as a worker can import it: a path to a .py file (relative to `base`, the spec's folder) made
    absolute, a module name kept as it is."""
    resolved = []
    for entry in entries:
        if entry.endswith(".py"):
            path = Path(entry) if Path(entry).is_absolute() else base / entry
            if not path.is_file():
                raise KWLabError(f"imports: {entry}: no such file (looked at {path})")
            resolved.append(str(path.resolve()))
        else:
            resolved.append(entry)
    return resolved


def load(entries: list[str]) -> None:
    """Import every entry (absolute .py paths or module names) once per process; a failure is one line naming the
    module and the exception."""
    for entry in entries:
        try:
            if entry.endswith(".py"):
                name = f"kwlab_plugin_{Path(entry).stem}_{hashlib.sha1(entry.encode()).hexdigest()[:8]}"
                if name in sys.modules:
                    continue
                spec = importlib.util.spec_from_file_location(name, entry)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[name]
                    raise
            else:
                importlib.import_module(entry)
        except Exception as error:  # any exception a user's module raises on import
            raise KWLabError(f"imports: cannot import {entry} ({type(error).__name__}: {error})") from None
