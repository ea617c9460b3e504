"""Tests for kwlab.methods.kw.temperature: the linear tau schedule and set_temperature."""

from __future__ import annotations

import pytest
from torch import nn

import kwlab
from kwlab.errors import KWLabError
from kwlab.methods.kw.attention import KWAttention
from kwlab.methods.kw.layers import KWConv2d, KWLinear
from kwlab.methods.kw.temperature import TemperatureSchedule, set_temperature
from kwlab.methods.kw.warehouse import Warehouse


@pytest.fixture
def small_kw_model() -> nn.Module:
    """Two KW convs sharing a warehouse and a KW linear with its own, next to a static layer."""
    shared, own = Warehouse(20, (4, 4, 1, 1)), Warehouse(3, (4, 4))
    return nn.Sequential(
        KWConv2d(4, 4, 3, padding=1, warehouse=shared, own=(0, 9)),
        KWConv2d(4, 8, 1, warehouse=shared, own=(9, 2)),
        nn.Conv2d(8, 8, 1),
        nn.Flatten(2),
        KWLinear(16, 4, warehouse=own),  # over the 4x4 positions of each channel
    )


def taus(model: nn.Module) -> list[float]:
    return [float(m.tau) for m in model.modules() if isinstance(m, KWAttention)]


@pytest.mark.parametrize(
    "steps,start,expected",
    [
        # hand-computed: tau(step) = start * max(0, 1 - step / steps)
        (4, 1.0, [1.0, 0.75, 0.5, 0.25, 0.0, 0.0, 0.0]),
        (10, 0.5, [0.5, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2]),
        (1, 1.0, [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        (0, 1.0, [0.0] * 7),  # no annealing: tau is 0 from the first step
    ],
)
def test_linear_schedule(steps, start, expected):
    schedule = TemperatureSchedule(steps=steps, start=start)
    assert [schedule.value(step) for step in range(7)] == pytest.approx(expected)


def test_schedule_stays_zero_long_after_the_end():
    schedule = TemperatureSchedule(steps=100)
    assert schedule.value(100) == schedule.value(10**9) == 0.0
    assert schedule.value(99) == pytest.approx(0.01)


@pytest.mark.parametrize(
    "fraction,total,expected_steps",
    [(20 / 300, 300 * 100, 2000), (15 / 150, 150 * 10, 150), (0.0, 1000, 0), (1.0, 37, 37)],
)
def test_over_fraction(fraction, total, expected_steps):
    """The paper anneals over the first 20 of 300 epochs (ResNet, ConvNeXt) or 15 of 150 (MobileNetV2)."""
    schedule = TemperatureSchedule.over_fraction(fraction, total, start=0.8)
    assert schedule == TemperatureSchedule(steps=expected_steps, start=0.8)


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_over_fraction_rejects_fractions_outside_unit_interval(fraction):
    with pytest.raises(KWLabError, match="fraction"):
        TemperatureSchedule.over_fraction(fraction, 100)


@pytest.mark.parametrize("steps,start", [(-1, 1.0), (10, 1.5), (10, -0.1), (10, float("nan"))])
def test_invalid_schedule_is_rejected(steps, start):
    with pytest.raises(KWLabError, match="temperature schedule"):
        TemperatureSchedule(steps=steps, start=start)


def test_calling_the_schedule_sets_tau_everywhere(small_kw_model):
    schedule = TemperatureSchedule(steps=8)
    assert taus(small_kw_model) == [1.0, 1.0, 1.0]
    assert schedule(small_kw_model, 2) == 0.75
    assert taus(small_kw_model) == [0.75, 0.75, 0.75]
    assert schedule(small_kw_model, 50) == 0.0
    assert taus(small_kw_model) == [0.0, 0.0, 0.0]


def test_set_temperature_counts_attentions_and_is_exported(small_kw_model):
    assert kwlab.set_temperature is set_temperature
    assert set_temperature(small_kw_model, 0.37) == 3
    assert taus(small_kw_model) == pytest.approx([0.37] * 3)
    assert set_temperature(nn.Sequential(nn.Conv2d(1, 1, 1)), 0.5) == 0


def test_set_temperature_on_a_converted_model():
    model = kwlab.create_model("resnet18", kw={"budget": 1})
    assert set_temperature(model, 0.25) == len(model.kw_plan.layers) == 19
    assert set(taus(model)) == {0.25}
