"""`DataSpec`, `Splits` and the name -> loader registry behind `load()`."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from torch.utils.data import Dataset

from kwlab.errors import KWLabError, choice_error

Loader = Callable[["DataSpec", int], "Splits"]
_LOADERS: dict[str, Loader] = {}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: object, field: str, *, none_ok: bool, minimum: int = 1) -> None:
    if value is None and none_ok:
        return
    if not _is_int(value) or value < minimum:
        extra = " or null" if none_ok else ""
        raise KWLabError(f"data.{field}: expected an integer >= {minimum}{extra}, got {value!r}")


@dataclass(frozen=True)
class DataSpec:
    """Which dataset to load and how: validated on construction, each error naming its field."""

    name: str = "digits"  # registry key, see available()
    root: str | None = None  # folder for file-based sets; None: $KWLAB_DATA, else the dataset's default
    train_size: int | None = None  # stratified seeded subset of the training split
    val_size: float | int = 0.2  # fraction (or count) held out where the set has no fixed val split (digits)
    image_size: int | None = None  # square resize target; None: native (imagefolder: 224)
    shape: tuple[int, int, int] = (3, 32, 32)  # synthetic only: (C, H, W) with H == W
    num_classes: int | None = None  # synthetic only (None: 10)
    length: int = 512  # synthetic only: train images (val gets length // 4)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise values in place once
        if not isinstance(self.name, str) or self.name not in _LOADERS:
            raise choice_error("data.name", self.name, available())
        if self.root is not None:
            root = os.fspath(self.root) if isinstance(self.root, str | os.PathLike) else None
            if not isinstance(root, str):
                raise KWLabError(f"data.root: expected a folder path or null, got {self.root!r}")
            if not root.strip():
                raise KWLabError("data.root: expected a folder path or null, got an empty string")
            set_(self, "root", root)
        _positive_int(self.train_size, "train_size", none_ok=True)
        _positive_int(self.image_size, "image_size", none_ok=True)
        _positive_int(self.num_classes, "num_classes", none_ok=True, minimum=2)
        _positive_int(self.length, "length", none_ok=False)
        val = self.val_size
        ok = (_is_int(val) and val >= 1) or (isinstance(val, float) and 0.0 < val < 1.0)
        if not ok:
            raise KWLabError(f"data.val_size: expected a fraction in (0, 1) or a count >= 1, got {val!r}")
        shape = self.shape
        if (
            not isinstance(shape, tuple | list)
            or len(shape) != 3
            or not all(_is_int(s) and s >= 1 for s in shape)
            or shape[1] != shape[2]
        ):
            raise KWLabError(f"data.shape: expected [C, H, W] of positive integers with H == W, got {shape!r}")
        set_(self, "shape", tuple(shape))

    @classmethod
    def from_dict(cls, values: dict[str, Any] | DataSpec) -> DataSpec:
        """Build from a mapping, rejecting unknown keys by name."""
        if isinstance(values, DataSpec):
            return values
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise choice_error("data: unknown field", unknown[0], sorted(known))
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping of the fields (shape as a list), round-trips through from_dict."""
        out = dataclasses.asdict(self)
        out["shape"] = list(self.shape)
        return out


@dataclass
class Splits:
    """A loaded dataset: train/val sets yielding (C x H x W float tensor, int label) and their geometry."""

    train: Dataset
    val: Dataset
    num_classes: int
    in_chans: int
    image_size: int  # H (= W)
    name: str
    mean: tuple[float, ...] = ()  # per-channel normalisation applied to [0, 1] pixels
    std: tuple[float, ...] = ()


def register(name: str) -> Callable[[Loader], Loader]:
    """Decorator adding a loader `fn(spec, seed) -> Splits` under `name`; an existing name is kept (with a warning)."""
    if not isinstance(name, str) or not name:
        raise KWLabError(f"data loader name: expected a non-empty string, got {name!r}")

    def add(fn: Loader) -> Loader:
        if name in _LOADERS:
            warnings.warn(f"dataset {name!r} is already registered; keeping the existing loader", stacklevel=2)
        else:
            _LOADERS[name] = fn
        return fn

    return add


def available() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted(_LOADERS)


def load(spec: DataSpec, seed: int = 0) -> Splits:
    """Load `spec.name` with seeded, reproducible splits/subsets; bad input raises a one-line KWLabError."""
    if not isinstance(spec, DataSpec):
        raise TypeError(f"load() expects a DataSpec, got {type(spec).__name__}")
    if not _is_int(seed):
        raise KWLabError(f"seed: expected an integer, got {seed!r}")
    if spec.name not in _LOADERS:  # unregistered after the spec was built
        raise choice_error("data.name", spec.name, available())
    try:
        splits = _LOADERS[spec.name](spec, seed)
    except OSError as err:  # safety net: loaders report missing files themselves
        where = err.filename or spec.root or "?"
        raise KWLabError(f"data.name {spec.name!r}: cannot read {where}: {err.strerror or err}") from None
    if not isinstance(splits, Splits):
        raise TypeError(f"loader for {spec.name!r} returned {type(splits).__name__}, expected Splits")
    return splits
