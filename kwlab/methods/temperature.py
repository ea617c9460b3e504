"""Temperatures that fall linearly per iteration: KernelWarehouse's tau (start -> 0) and DY-Conv's and ODConv's T
(30 -> 1). Each method sets its own buffers; the arithmetic is this one."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class LinearAnneal:
    """T(t) = end + (start - end) * max(0, (S - t) / S) at iteration t counted from 1, S = `steps` (t = 0, before any
    update, gives `start`; S = 0 gives `end` throughout): the KW reference's `get_temperature` and ODConv's."""

    steps: int
    start: float
    end: float = 0.0

    def value(self, iteration: int) -> float:
        """T at iteration `iteration`, counted from 1 (the first update)."""
        if self.steps <= 0:
            return self.end
        return self.end + (self.start - self.end) * max(0.0, (self.steps - iteration) / self.steps)

    def apply(self, model: nn.Module, value: float) -> None:
        """Write `value` into the model's temperature buffers (each method's own)."""
        raise NotImplementedError

    def __call__(self, model: nn.Module, iteration: int) -> float:
        """Set the model's temperature for iteration `iteration` and return it."""
        value = self.value(iteration)
        self.apply(model, value)
        return value
