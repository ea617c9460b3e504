"""`TrainConfig`: one trial's settings as typed, frozen sections, validated on construction.

Precedence: dataclass defaults < YAML file < `--set key=value`. Unknown keys and wrong types are one-line
KWLabErrors naming the dotted key. `kw: null` trains the static model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from kwlab.data import DataSpec
from kwlab.errors import KWLabError, choice_error
from kwlab.kw.config import KWConfig
from kwlab.overrides import apply_overrides

OPTIMIZERS = ("sgd", "adamw")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
# timm arguments the recipe sets itself from the data and the other sections
RESERVED_MODEL_KWARGS = ("num_classes", "in_chans", "drop_rate", "kw", "pretrained")

_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer", float: "a number", dict: "a mapping"}


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """`value` checked against a field's type hint (ints are accepted as floats), else an error naming `key`."""
    options = get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)
    for option in options:
        base = get_origin(option) or option
        if option is type(None):
            if value is None:
                return None
        elif base is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        elif base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        elif base in (str, bool, dict) and isinstance(value, base):
            return value
    expected = " or ".join("null" if o is type(None) else _TYPE_NAMES[get_origin(o) or o] for o in options)
    raise KWLabError(f"{key}: expected {expected}, got {value!r}")


def check_fields(section: Any, prefix: str) -> None:
    """Type-check every field of a frozen dataclass `section` in place; errors name `prefix.field`."""
    hints = get_type_hints(type(section))
    for f in fields(section):
        object.__setattr__(section, f.name, _coerce(getattr(section, f.name), hints[f.name], f"{prefix}{f.name}"))


def _require(ok: bool, key: str, expected: str, value: Any) -> None:
    if not ok:
        raise KWLabError(f"{key}: expected {expected}, got {value!r}")


def build_section(cls: type, tree: Any, key: str) -> Any:
    """Build dataclass `cls` from a mapping, rejecting keys it does not know by their dotted name."""
    if isinstance(tree, cls):
        return tree
    if not isinstance(tree, dict):
        raise KWLabError(f"{key or 'config'}: expected a mapping of {cls.__name__} fields, got {tree!r}")
    allowed = [f.name for f in fields(cls)]
    for name in tree:
        if name not in allowed:
            where = f"{key}.{name}" if key else str(name)
            raise KWLabError(f"{where}: unknown key; allowed: {', '.join(allowed)}")
    return cls(**tree)


@dataclass(frozen=True)
class ModelConfig:
    """Which timm model to build (kwlab's small models included) and the extra arguments passed to it."""

    name: str = "cifar_resnet8"
    kwargs: dict[str, Any] = field(default_factory=dict)  # timm arguments, e.g. {"width": 1.0}
    drop_rate: float = 0.0  # dropout before the classifier

    def __post_init__(self) -> None:
        check_fields(self, "model.")
        for arg in self.kwargs:
            _require(isinstance(arg, str), "model.kwargs", "string argument names", arg)
            if arg in RESERVED_MODEL_KWARGS:
                raise KWLabError(f"model.kwargs.{arg}: set by the recipe (from data, model.drop_rate or kw); remove it")
        _require(0 <= self.drop_rate < 1, "model.drop_rate", "a number in [0, 1)", self.drop_rate)


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer, weight decay and the per-iteration cosine LR schedule with linear warm-up."""

    name: str = "sgd"  # sgd | adamw
    lr: float = 0.1  # peak learning rate, reached after the warm-up
    momentum: float = 0.9  # SGD momentum; AdamW's beta1
    nesterov: bool = True  # SGD only
    weight_decay: float = 5e-4  # on conv/linear weights, warehouse cells and attention weights (see optim.py)
    warmup_epochs: float = 1.0  # linear warm-up from 0, may be fractional; capped one step short of the end
    label_smoothing: float = 0.1
    grad_clip: float | None = None  # max global gradient norm; None: no clipping
    min_lr: float = 0.0  # learning rate at the end of the cosine

    def __post_init__(self) -> None:
        check_fields(self, "optim.")
        if self.name not in OPTIMIZERS:
            raise choice_error("optim.name", self.name, OPTIMIZERS)
        for name in ("lr", "momentum", "weight_decay", "warmup_epochs", "label_smoothing", "min_lr"):
            value = getattr(self, name)
            _require(math.isfinite(value) and value >= 0, f"optim.{name}", "a finite number >= 0", value)
        _require(self.lr > 0, "optim.lr", "a positive number", self.lr)
        _require(self.momentum < 1, "optim.momentum", "a number in [0, 1)", self.momentum)
        _require(self.label_smoothing < 1, "optim.label_smoothing", "a number in [0, 1)", self.label_smoothing)
        _require(self.min_lr <= self.lr, "optim.min_lr", f"a number <= optim.lr ({self.lr})", self.min_lr)
        clip = self.grad_clip
        ok = clip is None or (math.isfinite(clip) and clip > 0)
        _require(ok, "optim.grad_clip", "a positive number or null", clip)


@dataclass(frozen=True)
class TemperatureConfig:
    """The KW temperature tau: falls linearly from `start` to 0 over `fraction` of all training steps, then stays 0."""

    # NOTE: the reference anneals over 20 of 300 epochs (about 7%); on kwlab's 10-30 epoch runs that is one or two
    # epochs, too short for the attention to learn before the initial one-to-one blend is gone, so kwlab's default
    # anneals over 30% of training.
    fraction: float = 0.3
    start: float = 1.0

    def __post_init__(self) -> None:
        check_fields(self, "temperature.")
        _require(0 <= self.fraction <= 1, "temperature.fraction", "a number in [0, 1]", self.fraction)
        _require(0 <= self.start <= 1, "temperature.start", "a number in [0, 1]", self.start)


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how to compute: none of it changes the recipe, only speed (and, on CUDA, bit-exactness)."""

    device: str = "auto"  # auto (cuda if available) | cpu | cuda
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    channels_last: bool | str = "auto"  # auto (on CUDA) | true | false
    compile: bool = False  # torch.compile the model for training and evaluation
    threads: int | None = None  # torch intra-op CPU threads (set for the whole process); None: torch default

    def __post_init__(self) -> None:
        check_fields(self, "runtime.")
        if self.device not in DEVICES:
            raise choice_error("runtime.device", self.device, DEVICES)
        if self.precision not in PRECISIONS:
            raise choice_error("runtime.precision", self.precision, PRECISIONS)
        if isinstance(self.channels_last, str) and self.channels_last != "auto":
            raise choice_error("runtime.channels_last", self.channels_last, ("auto", True, False))
        _require(self.threads is None or self.threads >= 1, "runtime.threads", "an integer >= 1 or null", self.threads)


_SECTIONS: dict[str, type] = {
    "model": ModelConfig, "data": DataSpec, "optim": OptimConfig, "temperature": TemperatureConfig,
    "runtime": RuntimeConfig,
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything one trial needs; sections may be given as mappings and are built (and validated) here."""

    model: ModelConfig = field(default_factory=ModelConfig)
    kw: KWConfig | None = field(default_factory=KWConfig)  # None: the static model
    data: DataSpec = field(default_factory=DataSpec)
    optim: OptimConfig = field(default_factory=OptimConfig)
    temperature: TemperatureConfig = field(default_factory=TemperatureConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    epochs: int = 15
    batch_size: int = 64
    seed: int = 0
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        for name, cls in _SECTIONS.items():
            object.__setattr__(self, name, build_section(cls, getattr(self, name), name))
        if self.kw is not None:
            object.__setattr__(self, "kw", build_section(KWConfig, self.kw, "kw"))
        for name in ("epochs", "batch_size", "seed", "eval_batch_size"):
            _coerce(getattr(self, name), int, name)
            minimum = 0 if name == "seed" else 1
            _require(getattr(self, name) >= minimum, name, f"an integer >= {minimum}", getattr(self, name))

    @classmethod
    def from_dict(cls, tree: dict[str, Any]) -> TrainConfig:
        """Build from a nested mapping (e.g. parsed YAML); missing keys take their defaults."""
        return build_section(cls, tree, "")

    def to_dict(self) -> dict[str, Any]:
        """Nested plain mapping (YAML/JSON-ready) that `from_dict` turns back into an equal config."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def digest(self, length: int = 8) -> str:
        """Short stable hash of the config (for default trial-directory names)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:length]


def _plain(value: Any) -> Any:
    if not dataclasses.is_dataclass(value):
        return value
    return value.to_dict() if hasattr(value, "to_dict") else dataclasses.asdict(value)


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML trial config, apply `--set key=value` overrides, validate; file problems name the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise KWLabError(f"{path}: cannot read config ({error.strerror or error})") from None
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise KWLabError(f"{path}: invalid YAML{where}: {problem}") from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise KWLabError(f"{path}: expected a mapping of config sections at the top level, got {type(tree).__name__}")
    return TrainConfig.from_dict(apply_overrides(tree, list(overrides)))
