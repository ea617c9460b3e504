"""`DataSpec`, `Splits` and the name -> loader registry behind `load()`."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, field_validator
import torch
from torch.utils.data import Dataset

from kwlab.config import Config
from kwlab.data.augment import AugmentConfig
from kwlab.errors import KWLabError, not_one_of
from kwlab.registry import Registry

Loader = Callable[["DataSpec", int], "Splits"]
DATASETS: Registry[Loader] = Registry("dataset", "data.name")


class DataSpec(Config):
    """Which dataset to load and how: validated on construction, each error naming its field."""

    section: ClassVar[str] = "data"

    name: str = "digits"  # registry key, see available()
    root: str | None = None  # folder for file-based sets; None: $KWLAB_DATA, else the dataset's default
    # NOTE: holdouts and subsets are drawn with split_seed, not the trial seed: every trial of a study (any seed)
    # trains, selects and tests on the same images, so seeds vary the training run and nothing else
    split_seed: int = Field(0, ge=0)
    val_size: float | int | None = None  # fraction in (0, 1) or count held out of train for val; null: the default
    test_size: float | int | None = None  # digits only (no official test split): fraction/count of all; null: 0.2
    train_size: int | None = Field(None, ge=1)  # stratified subset of what remains for training
    image_size: int | None = Field(None, ge=1)  # square resize target; None: native (imagefolder: 224)
    shape: tuple[int, int, int] = (3, 32, 32)  # synthetic only: (C, H, W) with H == W
    num_classes: int | None = Field(None, ge=2)  # synthetic only (None: 10)
    length: int = Field(512, ge=1)  # synthetic only: train + val images (test gets another length // 4)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)  # training augmentation (see kwlab.data.augment)

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        if name not in DATASETS:
            raise ValueError(not_one_of(name, DATASETS.names()))
        return name

    @field_validator("root", mode="before")
    @classmethod
    def _root(cls, root: Any) -> str | None:
        if root is None:
            return None
        if not isinstance(root, str | os.PathLike):
            raise ValueError(f"expected a folder path or null, got {root!r}")
        if not os.fspath(root).strip():
            raise ValueError("expected a folder path or null, got an empty string")
        return os.fspath(root)

    @field_validator("val_size", "test_size", mode="before")
    @classmethod
    def _holdout_size(cls, value: Any) -> float | int | None:
        if value is None:
            return None
        count = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        if not (count or (isinstance(value, float) and 0.0 < value < 1.0)):
            raise ValueError(f"expected a fraction in (0, 1), a count >= 1 or null, got {value!r}")
        return value

    @field_validator("shape", mode="before")
    @classmethod
    def _shape(cls, shape: Any) -> tuple[int, int, int]:
        if (not isinstance(shape, tuple | list) or len(shape) != 3
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)
                or shape[1] != shape[2]):
            raise ValueError(f"expected [C, H, W] of positive integers with H == W, got {shape!r}")
        return tuple(shape)


@dataclass
class Splits:
    """A loaded dataset: train/val/test sets yielding (C x H x W float tensor, int label) and their geometry.

    `val` is held out of the training data for model selection; `test` is the dataset's own test split, evaluated
    once at the end. `augment(images, generator)` augments a training batch of an in-memory set on its device.
    """

    train: Dataset
    val: Dataset
    num_classes: int
    in_chans: int
    image_size: int  # H (= W)
    name: str
    mean: tuple[float, ...] = ()  # per-channel normalisation applied to [0, 1] pixels
    std: tuple[float, ...] = ()
    test: Dataset | None = None
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None


register = DATASETS.register
available = DATASETS.names


def load(spec: DataSpec, seed: int = 0) -> Splits:
    """Load `spec.name` as train/val/test splits; bad input raises a one-line KWLabError."""
    # `seed` (the trial's) is handed to the loader; the built-in loaders draw splits from spec.split_seed instead
    if not isinstance(spec, DataSpec):
        raise TypeError(f"load() expects a DataSpec, got {type(spec).__name__}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise KWLabError(f"seed: expected an integer, got {seed!r}")
    try:
        splits = DATASETS.get(spec.name)(spec, seed)
    except OSError as err:  # safety net: loaders report missing files themselves
        where = err.filename or spec.root or "?"
        raise KWLabError(f"data.name {spec.name!r}: cannot read {where}: {err.strerror or err}") from None
    if not isinstance(splits, Splits):
        raise TypeError(f"loader for {spec.name!r} returned {type(splits).__name__}, expected Splits")
    return splits
