"""`KWConfig`: the KernelWarehouse hyper-parameters of a model, validated on construction."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from kwlab.config import Config
from kwlab.errors import not_one_of
from kwlab.methods.kw.functions import ATTENTION_FUNCTIONS

SHARING_RANGES = ("none", "role", "stage", "network")
INIT_STRATEGIES = ("one_to_one", "none")
LAYOUTS = ("default", "reference", "auto")
ATTENTION_NORMS = ("auto", "batch", "layer")
MEMORY_MODES = ("fast", "lean")


def parse_number(value: Any) -> float:
    """Read a positive number given as int, float or a fraction string such as "1/4"."""
    if isinstance(value, bool):
        raise ValueError(f"expected a positive number, got {value!r}")
    try:
        number = float(Fraction(value)) if isinstance(value, str) else float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise ValueError(f"expected a positive number such as 1, 0.5 or 1/4, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"expected a positive number, got {value!r}")
    return number


class KWConfig(Config):
    """KernelWarehouse settings: budget b, kernel cell size m (via the cell ratios), sharing range l, attention."""

    section: ClassVar[str] = "kw"

    budget: float = 1.0  # b: warehouse cells n = b x (cells cut from the layers sharing it)
    cell_in_ratio: float = 1.0  # cell input channels = gcd(input channels per group) x ratio
    cell_out_ratio: float = 1.0  # cell output channels = gcd(output channels) x ratio
    sharing: str | int = "stage"  # l: none | role | stage | network | k (groups of k neighbouring layers)
    attention: str = "caf"  # attention function, a name registered in kwlab.methods.kw.functions
    init: Literal["one_to_one", "none"] = "one_to_one"  # one_to_one: blend toward beta with temperature tau
    reduction: float = 1 / 16  # attention hidden width = max(int(C_in x reduction), min_hidden)
    min_hidden: int = Field(16, ge=1)
    nonlocal_basis_ratio: float = 1.0  # < 1 predicts other layers' cells through a low-rank basis
    spatial_partition: bool = True  # cut kernels into 1x1 cells (True) or keep whole k x k cells
    layout: Literal["default", "reference", "auto"] = "default"  # default: reference where one exists, else auto
    attention_norm: Literal["auto", "batch", "layer"] = "auto"  # norm inside the attention (auto: from the layout)
    memory: Literal["fast", "lean"] = "fast"  # fast: backward may keep per-sample kernels | lean: never

    @field_validator("budget", "cell_in_ratio", "cell_out_ratio", "reduction", "nonlocal_basis_ratio", mode="before")
    @classmethod
    def _positive(cls, value: Any) -> float:
        return parse_number(value)

    @field_validator("cell_in_ratio", "cell_out_ratio", "reduction")
    @classmethod
    def _at_most_one(cls, value: float) -> float:
        if value > 1:
            raise ValueError(f"expected a number in (0, 1], got {value!r}")
        return value

    @field_validator("sharing", mode="before")
    @classmethod
    def _sharing(cls, value: Any) -> str | int:
        allowed = [*SHARING_RANGES, "a positive integer k"]
        if isinstance(value, bool):
            raise ValueError(not_one_of(value, allowed))
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, int):
            if value < 1:
                raise ValueError(f"a group size k must be a positive integer, got {value}")
            return value
        if value not in SHARING_RANGES:
            raise ValueError(not_one_of(value, allowed))
        return value

    @field_validator("attention")
    @classmethod
    def _attention(cls, value: str) -> str:
        if value not in ATTENTION_FUNCTIONS:
            raise ValueError(not_one_of(value, ATTENTION_FUNCTIONS.names()))
        return value
