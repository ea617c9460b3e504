"""`data.augment`: the training augmentation and batch mixing of a trial."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from kwlab.config import Config


class AugmentConfig(Config):
    """Augmentation settings; a null field takes the dataset's documented default (see the README)."""

    section: ClassVar[str] = "data.augment"

    # mixing of the training batches (timm's Mixup with SoftTargetCrossEntropy), any dataset
    mixup: float = Field(0.0, ge=0)  # mixup alpha; 0: off
    cutmix: float = Field(0.0, ge=0)  # cutmix alpha; 0: off
    mixup_prob: float = Field(1.0, ge=0, le=1)  # probability of mixing a batch at all
    mixup_switch_prob: float = Field(0.5, ge=0, le=1)  # probability of cutmix instead of mixup when both are on
