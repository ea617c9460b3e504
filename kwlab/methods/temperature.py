"""Temperatures that fall linearly per iteration: KernelWarehouse's tau (start -> 0) and DY-Conv's and ODConv's T
(30 -> 1). Every attention with a temperature is `Tempered` and sets its own buffer; how long the anneal lasts
(`AnnealLength`), its arithmetic (`LinearAnneal`) and `set_temperature` are these, for every method."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import Field
from torch import nn

from kwlab.config import Config
from kwlab.errors import KWLabError


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


class Tempered(nn.Module):
    """Base of a module (an attention) whose output depends on a temperature it keeps as a buffer, so that it is
    saved with the model, moves with `.to()` and is copied by an EMA."""

    def set_temperature(self, value: float) -> None:
        """Write `value` into the module's temperature buffer."""
        raise NotImplementedError


def set_temperature(model: nn.Module, value: float) -> int:
    """Set the temperature of every `Tempered` module of `model` (KW's tau, DY-Conv's and ODConv's T); returns how
    many were set."""
    count = 0
    for module in model.modules():
        if isinstance(module, Tempered):
            module.set_temperature(value)
            count += 1
    return count


@dataclass(frozen=True)
class LinearAnneal:
    """T(t) = end + (start - end) * max(0, (S - t) / S) at iteration t counted from 1, S = `steps` (t = 0, before any
    update, gives `start`; S = 0 gives `end` throughout): the KW reference's `get_temperature` and ODConv's. Calling
    it sets the model's temperatures (`set_temperature`)."""

    steps: int
    start: float = 1.0
    end: float = 0.0

    def __post_init__(self) -> None:
        if self.steps < 0 or not math.isfinite(self.start) or not math.isfinite(self.end):
            raise KWLabError(f"temperature schedule: expected steps >= 0 and finite start and end, got {self}")

    @classmethod
    def over_fraction(cls, fraction: float, total_steps: int, start: float = 1.0, end: float = 0.0) -> LinearAnneal:
        """A schedule that reaches `end` after `fraction` of `total_steps` (e.g. 20/300 of training)."""
        if not 0 <= fraction <= 1:
            raise KWLabError(f"temperature fraction: expected a number in [0, 1], got {fraction!r}")
        return cls(steps=round(fraction * total_steps), start=start, end=end)

    def value(self, iteration: int) -> float:
        """T at iteration `iteration`, counted from 1 (the first update)."""
        if self.steps <= 0:
            return self.end
        return self.end + (self.start - self.end) * max(0.0, (self.steps - iteration) / self.steps)

    def __call__(self, model: nn.Module, iteration: int) -> float:
        """Set the model's temperature for iteration `iteration` and return it."""
        value = self.value(iteration)
        set_temperature(model, value)
        return value
