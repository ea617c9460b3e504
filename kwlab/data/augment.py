"""`data.augment`: the training augmentation and batch mixing of a trial, and which fields apply to which dataset.

In-memory sets (digits, synthetic, fashion_mnist, cifar10, cifar100) take `crop_padding` and `flip`, applied to
whole batches on the training device (kwlab.data.crop_flip); `imagefolder` takes `flip` and the timm fields
(kwlab.data.transforms). A null field means the dataset's default (see the loaders and the README); a non-null field
that has no effect on the loaded dataset is refused, so a recorded config never claims an augmentation that did not
run. `enabled: false` turns all training augmentation off; mixup/cutmix stay governed by their own alphas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from kwlab.config import Config, ConfigError
from kwlab.data.crop_flip import CropFlip
from kwlab.errors import KWLabError

IN_MEMORY_ONLY = ("crop_padding",)
IMAGEFOLDER_ONLY = ("crop_scale", "crop_ratio", "auto_augment", "color_jitter", "random_erasing", "interpolation",
                    "crop_pct")
AUTO_AUGMENT_EXAMPLES = "'rand-m9-mstd0.5-inc1', 'augmix-m5-w4-d2', 'original' or 'v0'"


def _interval_pair(value: Any, upper: float | None) -> tuple[float, float]:
    """A [min, max] pair of numbers with 0 < min <= max (<= upper), as a tuple."""
    bound = f" <= {upper:g}" if upper is not None else ""
    ok = (isinstance(value, tuple | list) and len(value) == 2
          and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
          and 0 < value[0] <= value[1] and (upper is None or value[1] <= upper))
    if not ok:
        raise ValueError(f"expected [min, max] with 0 < min <= max{bound}, got {value!r}")
    return float(value[0]), float(value[1])


def check_auto_augment(policy: str) -> None:
    """Raise ValueError unless timm builds `policy` and every '-' section of it carries a value."""
    # NOTE: stricter than timm, which silently skips a section without a number ('rand-m9-inc' drops 'inc')
    name, *sections = policy.split("-")
    loose = [s for s in sections if not re.fullmatch(r"[a-z]+\d.*", s) and not (name == "rand" and s.startswith("t"))]
    if not name or loose:
        raise ValueError(f"expected a timm policy such as {AUTO_AUGMENT_EXAMPLES}, got {policy!r}")
    from timm.data import create_transform  # timm only when a policy is asked for: configs stay light

    try:
        create_transform(32, is_training=True, auto_augment=policy)
    except (AssertionError, ValueError, KeyError, IndexError) as err:
        reason = f" ({str(err).splitlines()[0]})" if str(err) else ""
        raise ValueError(f"expected a timm policy such as {AUTO_AUGMENT_EXAMPLES}, got {policy!r}{reason}") from None


class AugmentConfig(Config):
    """Augmentation settings; a null field takes the dataset's documented default (see the README)."""

    section: ClassVar[str] = "data.augment"

    enabled: bool = True  # false: no training augmentation at all (eval transforms and mixup are unaffected)
    flip: bool | None = None  # random horizontal flip with p = 1/2; null: dataset default (never for digits)
    # in-memory sets only
    crop_padding: int | None = Field(None, ge=0)  # random crop from a copy padded by this many pixels; 0: off
    # imagefolder only (timm's create_transform / RandomResizedCrop; null: the default in brackets)
    crop_scale: tuple[float, float] | None = None  # RandomResizedCrop area range [0.08, 1.0]
    crop_ratio: tuple[float, float] | None = None  # RandomResizedCrop aspect-ratio range [3/4, 4/3]
    auto_augment: str | None = None  # timm policy, e.g. 'rand-m9-mstd0.5-inc1' (RandAugment); [off]
    color_jitter: float | None = Field(None, ge=0)  # brightness/contrast/saturation strength [0: off]
    random_erasing: float | None = Field(None, ge=0, le=1)  # probability of erasing a box (per-pixel noise) [0]
    interpolation: Literal["bilinear", "bicubic", "nearest"] | None = None  # resize filter, train and eval [bilinear]
    crop_pct: float | None = Field(None, gt=0, le=1)  # eval: resize to size / crop_pct, centre crop [0.875]

    # mixing of the training batches (timm's Mixup with SoftTargetCrossEntropy), any dataset
    mixup: float = Field(0.0, ge=0)  # mixup alpha; 0: off
    cutmix: float = Field(0.0, ge=0)  # cutmix alpha; 0: off
    mixup_prob: float = Field(1.0, ge=0, le=1)  # probability of mixing a batch at all
    mixup_switch_prob: float = Field(0.5, ge=0, le=1)  # probability of cutmix instead of mixup when both are on

    @field_validator("crop_scale", mode="before")
    @classmethod
    def _crop_scale(cls, value: Any) -> tuple[float, float] | None:
        return None if value is None else _interval_pair(value, upper=1.0)

    @field_validator("crop_ratio", mode="before")
    @classmethod
    def _crop_ratio(cls, value: Any) -> tuple[float, float] | None:
        return None if value is None else _interval_pair(value, upper=None)

    @field_validator("auto_augment")
    @classmethod
    def _auto_augment(cls, value: str | None) -> str | None:
        if value is not None:
            check_auto_augment(value)
        return value

    @model_validator(mode="after")
    def _jitter_with_policy(self) -> AugmentConfig:
        # timm drops colour jitter when an auto-augment policy other than '3a' is on: refuse instead of ignoring
        if self.color_jitter and self.auto_augment and "3a" not in self.auto_augment:
            raise ConfigError(("color_jitter",), f"timm applies no colour jitter with auto_augment "
                              f"{self.auto_augment!r}; set one of them to null")
        return self


def refuse_unused(augment: AugmentConfig, fields: tuple[str, ...], name: str, instead: str) -> None:
    """Raise for the first non-null field of `fields`: it would have no effect on dataset `name`."""
    for field in fields:
        if getattr(augment, field) is not None:
            raise KWLabError(f"data.augment.{field}: {getattr(augment, field)!r} does not apply to {name} "
                             f"({instead}); set it to null")


@dataclass(frozen=True)
class TensorDefaults:
    """An in-memory dataset's default augmentation; `mirror_symmetric=False` forbids flipping it at all."""

    crop_padding: int
    flip: bool
    mirror_symmetric: bool = True


def tensor_augment(
    augment: AugmentConfig, name: str, defaults: TensorDefaults, fill: tuple[float, ...]
) -> CropFlip | None:
    """The batched augmentation of an in-memory set (None: nothing to do), from `data.augment` and its defaults."""
    refuse_unused(augment, IMAGEFOLDER_ONLY, name, "in-memory sets take crop_padding and flip")
    if augment.flip and not defaults.mirror_symmetric:
        raise KWLabError(f"data.augment.flip: {name} images are not mirror-symmetric and are never flipped; "
                         "set it to null or false")
    if not augment.enabled:
        return None
    padding = defaults.crop_padding if augment.crop_padding is None else augment.crop_padding
    flip = defaults.flip if augment.flip is None else augment.flip
    return CropFlip(padding, flip, fill) if padding or flip else None
