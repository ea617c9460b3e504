"""`KWConfig`: the KernelWarehouse hyper-parameters of a model, validated on construction."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from kwlab.config import Config
from kwlab.errors import not_one_of
from kwlab.methods.kw.functions import ATTENTION_FUNCTIONS
from kwlab.methods.kw.sharing import SHARING_RULES
from kwlab.methods.temperature import AnnealLength

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


class WarehouseSettings(Config):
    """Settings of the warehouses whose names match one pattern of `kw.warehouses`; unset fields keep the model-wide
    value (the reference's per-warehouse tuples of cell_num_ratio, cell_inplane_ratio, cell_outplane_ratio and
    reduction, e.g. in its MobileNetV2 1/2x)."""

    section: ClassVar[str] = "kw.warehouses"

    budget: float | None = None
    cell_in_ratio: float | None = None
    cell_out_ratio: float | None = None
    reduction: float | None = None

    @field_validator("budget", "cell_in_ratio", "cell_out_ratio", "reduction", mode="before")
    @classmethod
    def _positive(cls, value: Any) -> float | None:
        return None if value is None else parse_number(value)

    @field_validator("cell_in_ratio", "cell_out_ratio", "reduction")
    @classmethod
    def _at_most_one(cls, value: float | None) -> float | None:
        if value is not None and value > 1:
            raise ValueError(f"expected a number in (0, 1], got {value!r}")
        return value

    def overrides(self) -> dict[str, float]:
        """The fields that are set, as KWConfig updates."""
        return {key: value for key, value in self.model_dump().items() if value is not None}


class TemperatureConfig(AnnealLength):
    """KernelWarehouse's tau (`kw.temperature`): falls linearly, per iteration, from `start` to 0 over `epochs` epochs
    (the reference's rule) or, when `epochs` is null, over `fraction` of all training steps; then stays 0."""

    section: ClassVar[str] = "kw.temperature"

    start: float = Field(1.0, ge=0, le=1)


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
    temperature: TemperatureConfig = Field(default_factory=TemperatureConfig)  # tau's schedule in training
    # Per-warehouse settings: warehouse-name pattern (fnmatch, e.g. "stage6.expansion.*", names as `kwlab info`
    # prints them) -> WarehouseSettings; every matching pattern applies, in the order given, later ones winning.
    warehouses: dict[str, WarehouseSettings] = Field(default_factory=dict)
    static_layers: tuple[str, ...] = ()  # module-name patterns (fnmatch) of layers to keep static torch layers
    kw_layers: tuple[str, ...] = ()  # patterns of layers the layout keeps static (e.g. "classifier") to make KW layers,
    #                                 each with a warehouse of its own named after it

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
        allowed = [*SHARING_RULES.names(), "a positive integer k"]
        if isinstance(value, bool):
            raise ValueError(not_one_of(value, allowed))
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, int):
            if value < 1:
                raise ValueError(f"a group size k must be a positive integer, got {value}")
            return value
        if value not in SHARING_RULES:
            raise ValueError(not_one_of(value, allowed))
        return value

    @field_validator("static_layers", "kw_layers", mode="before")
    @classmethod
    def _patterns(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(p, str) and p.strip() for p in value):
            raise ValueError(f"expected a list of module-name patterns such as 'blocks.1.*.conv_pw', got {value!r}")
        return tuple(value)

    @field_validator("warehouses", mode="before")
    @classmethod
    def _warehouse_patterns(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for pattern in value:
                if not isinstance(pattern, str) or not pattern.strip():
                    raise ValueError(f"expected warehouse-name patterns such as 'stage6.*' as keys, got {pattern!r}")
        return value

    @model_validator(mode="after")
    def _not_both(self) -> KWConfig:
        both = sorted(set(self.static_layers) & set(self.kw_layers))
        if both:
            raise ValueError(f"static_layers and kw_layers both name {both[0]!r}; keep it in one of them")
        return self

    @field_validator("attention")
    @classmethod
    def _attention(cls, value: str) -> str:
        if value not in ATTENTION_FUNCTIONS:
            raise ValueError(not_one_of(value, ATTENTION_FUNCTIONS.names()))
        return value
