"""`KWConfig`: the KernelWarehouse hyper-parameters of a model, validated on construction."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Any

from kwlab.errors import KWLabError, choice_error

SHARING_RANGES = ("none", "role", "stage", "network")
INIT_STRATEGIES = ("one_to_one", "none")
LAYOUTS = ("default", "reference", "auto")
ATTENTION_NORMS = ("auto", "batch", "layer")
MEMORY_MODES = ("fast", "lean")


def parse_number(value: Any, field: str) -> float:
    """Read a positive number given as int, float or a fraction string such as "1/4"."""
    if isinstance(value, bool):
        raise KWLabError(f"{field}: expected a positive number, got {value!r}")
    try:
        number = float(Fraction(value)) if isinstance(value, str) else float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise KWLabError(f"{field}: expected a positive number such as 1, 0.5 or 1/4, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise KWLabError(f"{field}: expected a positive number, got {value!r}")
    return number


@dataclass(frozen=True)
class KWConfig:
    """KernelWarehouse settings: budget b, kernel cell size m (via the cell ratios), sharing range l, attention."""

    budget: float = 1.0  # b: warehouse cells n = b x (cells cut from the layers sharing it)
    cell_in_ratio: float = 1.0  # cell input channels = gcd(input channels per group) x ratio
    cell_out_ratio: float = 1.0  # cell output channels = gcd(output channels) x ratio
    sharing: str | int = "stage"  # l: none | role | stage | network | k (groups of k neighbouring layers)
    attention: str = "caf"  # attention function, a key of kwlab.kw.attention.ATTENTION_FUNCTIONS
    init: str = "one_to_one"  # one_to_one: blend toward the initial assignment beta with temperature tau; none: no blend
    reduction: float = 1 / 16  # attention hidden width = max(int(C_in x reduction), min_hidden)
    min_hidden: int = 16
    nonlocal_basis_ratio: float = 1.0  # < 1 predicts other layers' cells through a low-rank basis
    spatial_partition: bool = True  # cut kernels into 1x1 cells (True) or keep whole k x k cells
    layout: str = "default"  # default (reference where one exists, else auto) | reference | auto
    attention_norm: str = "auto"  # norm inside the attention: auto (from the layout) | batch | layer
    memory: str = "fast"  # fast: keep per-sample kernels for backward where that is faster | lean: never keep them

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise values in place once
        for name in ("budget", "cell_in_ratio", "cell_out_ratio", "reduction", "nonlocal_basis_ratio"):
            set_(self, name, parse_number(getattr(self, name), f"kw.{name}"))
        for name in ("cell_in_ratio", "cell_out_ratio", "reduction"):
            if getattr(self, name) > 1:
                raise KWLabError(f"kw.{name}: expected a number in (0, 1], got {getattr(self, name)!r}")
        set_(self, "sharing", _parse_sharing(self.sharing))
        from kwlab.kw.attention import ATTENTION_FUNCTIONS  # late import: the registry imports nothing from here

        if self.attention not in ATTENTION_FUNCTIONS:
            raise choice_error("kw.attention", self.attention, sorted(ATTENTION_FUNCTIONS))
        for name, allowed in (("init", INIT_STRATEGIES), ("layout", LAYOUTS), ("attention_norm", ATTENTION_NORMS),
                              ("memory", MEMORY_MODES)):
            if getattr(self, name) not in allowed:
                raise choice_error(f"kw.{name}", getattr(self, name), allowed)
        if isinstance(self.min_hidden, bool) or not isinstance(self.min_hidden, int) or self.min_hidden < 1:
            raise KWLabError(f"kw.min_hidden: expected a positive integer, got {self.min_hidden!r}")
        if not isinstance(self.spatial_partition, bool):
            raise KWLabError(f"kw.spatial_partition: expected true or false, got {self.spatial_partition!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | KWConfig) -> KWConfig:
        """Build from a mapping, rejecting unknown keys by name."""
        if isinstance(values, KWConfig):
            return values
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise choice_error("kw: unknown field", unknown[0], sorted(known))
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (for YAML/JSON)."""
        return dataclasses.asdict(self)


def _parse_sharing(value: str | int) -> str | int:
    if isinstance(value, bool):
        raise choice_error("kw.sharing", value, [*SHARING_RANGES, "a positive integer k"])
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int):
        if value < 1:
            raise KWLabError(f"kw.sharing: a group size k must be a positive integer, got {value}")
        return value
    if value not in SHARING_RANGES:
        raise choice_error("kw.sharing", value, [*SHARING_RANGES, "a positive integer k"])
    return value
