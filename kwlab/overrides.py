"""`--set key=value` overrides by dotted path, shared by every command that reads a config."""

from __future__ import annotations

import copy
from typing import Any

from kwlab.config import yaml_value
from kwlab.errors import KWLabError


def parse_assignment(text: str) -> tuple[str, Any]:
    """Split 'a.b=value' and read the value as YAML (numbers, booleans, null, lists); '1/4' stays a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise KWLabError(f"--set {text!r}: expected KEY=VALUE, e.g. kw.budget=4")
    return key.strip(), yaml_value(raw)


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set tree['a']['b'] = value for key 'a.b', creating missing sections."""
    *parents, leaf = key.split(".")
    node = tree
    for i, part in enumerate(parents):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise KWLabError(f"--set {key}: {'.'.join(parents[: i + 1])} is a value, not a section")
        node = child
    node[leaf] = value


def apply_overrides(tree: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """Apply each 'key=value' of `assignments` to a copy of `tree`."""
    result = copy.deepcopy(tree)
    for text in assignments:
        set_dotted(result, *parse_assignment(text))
    return result
