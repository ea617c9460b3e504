"""kwlab's one config system and its one YAML loader.

Every config (a trial's sections, KWConfig, the sweep spec) is a frozen pydantic model: typed, strict (no coercion
across types, but ints are accepted as floats), unknown keys refused, validated on construction. Bad input becomes
one KWLabError line that names the dotted key, e.g. `optim.lr: expected a number, got 'fast'`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Self

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from kwlab.errors import KWLabError, shown

_EXPECTED = {  # pydantic error type -> what kwlab says was expected
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a finite number",
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "bool_type": "true or false", "bool_parsing": "true or false", "string_type": "a string",
    "dict_type": "a mapping", "list_type": "a list", "tuple_type": "a list", "missing": "a value (it is required)",
}

class Config(BaseModel):
    """Base of every kwlab config model; `section` is its dotted prefix in error messages when built on its own."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, validate_default=True)
    section: ClassVar[str] = ""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise config_error(error, self.section, type(self)) from None

    @classmethod
    def from_dict(cls, tree: Any) -> Self:
        """Build from a mapping (e.g. parsed YAML); missing keys take their defaults; an instance passes through."""
        if isinstance(tree, cls):
            return tree
        if not isinstance(tree, dict):
            raise KWLabError(f"{cls.section or 'config'}: expected a mapping of {cls.__name__} fields, got {tree!r}")
        return cls(**tree)

    def to_dict(self) -> dict[str, Any]:
        """A plain nested mapping (YAML/JSON-ready) that `from_dict` turns back into an equal config."""
        return self.model_dump(mode="json")


def _field(model: type[BaseModel] | None, loc: tuple[str, ...]) -> FieldInfo | None:
    """The pydantic field at `loc` under `model` (None when the path leaves the models)."""
    field = None
    for part in loc:
        if model is None or part not in model.model_fields:
            return None
        field = model.model_fields[part]
        candidates = [field.annotation, *getattr(field.annotation, "__args__", ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return field


def _interval(field: FieldInfo | None) -> str | None:
    """A field's numeric bounds as text: '>= 1', 'in [0, 1]', 'in [0, 1)'."""
    if field is None:
        return None
    bounds = {type(m).__name__: getattr(m, type(m).__name__.lower()) for m in field.metadata
              if type(m).__name__ in ("Ge", "Gt", "Le", "Lt")}
    low = ("[", bounds["Ge"]) if "Ge" in bounds else ("(", bounds["Gt"]) if "Gt" in bounds else None
    high = (bounds["Le"], "]") if "Le" in bounds else (bounds["Lt"], ")") if "Lt" in bounds else None
    if low and high:
        return f"in {low[0]}{low[1]:g}, {high[0]:g}{high[1]}"
    if low:
        return f"{'>=' if low[0] == '[' else '>'} {low[1]:g}"
    return f"{'<=' if high[1] == ']' else '<'} {high[0]:g}" if high else None


def _allows_none(field: FieldInfo | None) -> bool:
    return field is not None and type(None) in getattr(field.annotation, "__args__", ())


class ConfigError(KWLabError):
    """A config error at a key path: prints as `prefix.dotted.key: message`; a parent config that holds the failing
    one as a section joins its own path in front (pydantic validates a nested section through its __init__)."""

    def __init__(self, loc: tuple[str, ...], message: str, prefix: str = "") -> None:
        self.loc, self.message = loc, message
        key = ".".join(((prefix,) if prefix else ()) + loc)
        super().__init__(f"{key}: {message}" if key else message)


def config_error(error: ValidationError, prefix: str = "", model: type[BaseModel] | None = None) -> ConfigError:
    """The first error of a pydantic ValidationError as one line: `dotted.key: what was expected, got what`."""
    first = error.errors()[0]
    loc = tuple(str(p) for p in first["loc"] if not str(p).startswith("function-") and p != "[key]")
    kind, value = first["type"], first.get("input")
    inner = (first.get("ctx") or {}).get("error")
    more = f" ({error.error_count() - 1} more)" if error.error_count() > 1 else ""
    if isinstance(inner, ConfigError):  # a nested section's (or a validator's) own error: its path goes under ours
        return ConfigError(loc + inner.loc, inner.message + more, prefix)
    field = _field(model, loc)
    integer = field is not None and int in (field.annotation, *getattr(field.annotation, "__args__", ()))
    noun = "an integer" if integer and float not in getattr(field.annotation, "__args__", ()) else "a number"
    if kind == "extra_forbidden":
        holder = _field(model, loc[:-1]) if loc[:-1] else None
        holder_model = model if not loc[:-1] else next(
            (c for c in [holder.annotation, *getattr(holder.annotation, "__args__", ())] if holder is not None
             and isinstance(c, type) and issubclass(c, BaseModel)), None)
        allowed = f"; allowed: {', '.join(holder_model.model_fields)}" if holder_model is not None else ""
        message = f"unknown key{allowed}"
    elif kind == "literal_error":
        message = f"{value!r} is not one of {first['ctx']['expected'].replace(' or ', ', ')}"
    elif kind == "string_too_long":
        message = f"expected at most {first['ctx']['max_length']} characters, got {len(value)}"
    elif kind == "model_type":
        message = f"expected a mapping of {first['ctx']['class_name']} fields, got {value!r}"
    elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        message = f"expected {noun} {_interval(field)}, got {value!r}"
    elif kind in _EXPECTED:
        expected = _EXPECTED[kind] + (" or null" if _allows_none(field) else "")
        message = f"expected {expected}" + ("" if kind == "missing" else f", got {shown(value)}")
    else:  # a validator's own message ("Value error, ..."), or pydantic's
        message = first["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return ConfigError(loc, message + more, prefix)


# libyaml's C loader where PyYAML has it (5x faster on a long spec), else the pure-Python one
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """PyYAML's safe loader with YAML 1.2's numbers (`1e-3`, `1e6` are floats, not strings, as YAML 1.1 had them)."""


# NOTE: YAML 1.2's float rule (PyYAML implements YAML 1.1, which reads 1e-3 as a string): an exponent needs no dot
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)"
                                                                    r"[eE][-+]?[0-9]+$"), list("-+0123456789."))


def _parse(text: str) -> Any:
    """The YAML text's tree; an alias (`*name`) is refused before anything is built: a few lines of aliases can
    expand into gigabytes (an "alias bomb")."""
    for event in yaml.parse(text, Loader=_Base):
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, f"alias *{event.anchor} is not allowed (kwlab reads no "
                                              "anchors or aliases; write the values out)", event.start_mark)
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a safe loader)


def load_yaml(path: str | Path, what: str = "config") -> Any:
    """Read a YAML file with the safe loader; a missing or binary file or bad YAML is one line naming the file (and
    line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise KWLabError(f"{path}: cannot read {what} ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise KWLabError(f"{path}: cannot read {what}: not UTF-8 text (byte {error.object[error.start]:#04x} at "
                         f"offset {error.start})") from None
    try:
        return _parse(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise KWLabError(f"{path}: invalid YAML{where}: {problem}") from None


def yaml_value(text: str) -> Any:
    """A `--set` value read as YAML (numbers, booleans, null, lists, mappings); text YAML cannot read stays text."""
    try:
        return _parse(text) if text.strip() else None
    except yaml.YAMLError:
        return text


def dump_yaml(tree: Any) -> str:
    """YAML text of a plain tree, keys in their given order."""
    return yaml.safe_dump(tree, sort_keys=False)
