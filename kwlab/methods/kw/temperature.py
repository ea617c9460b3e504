"""The temperature tau of the KW attention: `set_temperature` and the linear schedule a trainer steps every iteration."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from kwlab.errors import KWLabError
from kwlab.methods.kw.attention import KWAttention
from kwlab.methods.temperature import LinearAnneal


def set_temperature(model: nn.Module, tau: float) -> int:
    """Set tau in every KW attention of `model`; returns how many attentions were updated."""
    count = 0
    for module in model.modules():
        if isinstance(module, KWAttention):
            module.tau.fill_(tau)
            # alpha = beta for every sample while the buffer stays as written here: KW layers may take one dense conv
            module.tau_is_one = (module.tau, module.tau._version) if float(tau) == 1.0 else None
            count += 1
    return count


@dataclass(frozen=True)
class TemperatureSchedule(LinearAnneal):
    """tau falls linearly from `start` to 0 over `steps` iterations, then stays 0 (the paper's schedule)."""

    steps: int
    start: float = 1.0
    end: float = 0.0

    def __post_init__(self) -> None:
        if self.steps < 0 or not math.isfinite(self.start) or not 0 <= self.start <= 1 or self.end != 0:
            raise KWLabError(f"temperature schedule: expected steps >= 0 and start in [0, 1], got {self}")

    @classmethod
    def over_fraction(cls, fraction: float, total_steps: int, start: float = 1.0) -> TemperatureSchedule:
        """A schedule that reaches 0 after `fraction` of `total_steps` (e.g. 20/300 of training)."""
        if not 0 <= fraction <= 1:
            raise KWLabError(f"temperature fraction: expected a number in [0, 1], got {fraction!r}")
        return cls(steps=round(fraction * total_steps), start=start)

    def apply(self, model: nn.Module, value: float) -> None:
        """Set tau in every KW attention."""
        set_temperature(model, value)
