"""Temperatures that fall linearly per iteration: KernelWarehouse's tau (start -> 0) and DY-Conv's and ODConv's T
(30 -> 1). Each method sets its own buffers; how long the anneal lasts and its arithmetic are these."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field
from torch import nn

from kwlab.config import Config


class AnnealLength(Config):
    """How long a temperature anneals: over `epochs` epochs when set (the papers' rule), else over `fraction` of all
    training steps; then it stays at its end value."""

    # NOTE: the papers anneal over a fixed number of epochs of a long run (KW: 20 of 300, DY-Conv and ODConv: 10 of
    # 100-300, under 10%). On kwlab's 10-30 epoch runs that is one or two epochs, too short for the attention to learn
    # before the blend is gone, or, for DY-Conv and ODConv's 10 epochs, the whole run (T reaches 1 in the last epoch
    # and accuracy collapses: measured on Fashion-MNIST). So every method's default anneals over the same 30% of
    # training; `epochs` gives the papers' rule (the reference presets use it).
    fraction: float = Field(0.3, ge=0, le=1)
    epochs: float | None = Field(None, ge=0, allow_inf_nan=False)

    def steps(self, steps_per_epoch: int, total_steps: int) -> int:
        """The number of iterations S the anneal lasts."""
        if self.epochs is not None:
            return round(self.epochs * steps_per_epoch)
        return round(self.fraction * total_steps)


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
