"""The temperature tau of the KW attention: `set_temperature` and the linear schedule a trainer steps every iteration."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from kwlab.errors import KWLabError
from kwlab.methods.kw.attention import KWAttention


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
class TemperatureSchedule:
    """tau falls linearly from `start` to 0 over `steps` iterations, then stays 0 (the paper's schedule)."""

    steps: int
    start: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 0 or not math.isfinite(self.start) or not 0 <= self.start <= 1:
            raise KWLabError(f"temperature schedule: expected steps >= 0 and start in [0, 1], got {self}")

    @classmethod
    def over_fraction(cls, fraction: float, total_steps: int, start: float = 1.0) -> TemperatureSchedule:
        """A schedule that reaches 0 after `fraction` of `total_steps` (e.g. 20/300 of training)."""
        if not 0 <= fraction <= 1:
            raise KWLabError(f"temperature fraction: expected a number in [0, 1], got {fraction!r}")
        return cls(steps=round(fraction * total_steps), start=start)

    def value(self, step: int) -> float:
        """tau at iteration `step`, counted from 1 (the first update); 0 gives `start`, before any update."""
        if self.steps == 0:
            return 0.0
        return self.start * max(0.0, 1.0 - step / self.steps)

    def __call__(self, model: nn.Module, step: int) -> float:
        """Set the model's tau for iteration `step` and return it."""
        tau = self.value(step)
        set_temperature(model, tau)
        return tau
