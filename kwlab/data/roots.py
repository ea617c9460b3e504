"""Where file-based datasets are looked for, and the one-line error when they are not there."""

from __future__ import annotations

import os
from pathlib import Path

from kwlab.data.registry import DataSpec
from kwlab.errors import KWLabError

ENV_VAR = "KWLAB_DATA"
DEFAULT_BASE = "data"  # torchvision's conventional ./data, for sets no package installs


def resolve_root(spec: DataSpec, default: str) -> tuple[Path, str]:
    """Absolute root to search and where it came from: data.root, then $KWLAB_DATA, then `default`."""
    if spec.root is not None:
        raw, origin = spec.root, "data.root"
    elif os.environ.get(ENV_VAR, "").strip():
        raw, origin = os.environ[ENV_VAR], ENV_VAR
    else:
        raw, origin = default, "default"
    return Path(os.path.abspath(os.path.expanduser(raw))), origin


def missing_error(name: str, expected: str, root: Path, origin: str, how: str) -> KWLabError:
    """Build the standard one-line 'dataset not found' error."""
    return KWLabError(f"{name}: expected {expected} under {root} (root from {origin}) but did not find them; {how}")
