"""Tests for kwlab.methods.temperature through KW's tau: the linear schedule and set_temperature."""

from __future__ import annotations

import pytest
from torch import nn

import kwlab
from kwlab.errors import KWLabError
from kwlab.methods.kw.attention import KWAttention
from kwlab.methods.kw.layers import KWConv2d, KWLinear
from kwlab.methods.temperature import LinearAnneal as TemperatureSchedule
from kwlab.methods.temperature import set_temperature
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


@pytest.mark.parametrize("steps,start", [(-1, 1.0), (10, float("inf")), (10, float("nan"))])
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


def reference_temperature(iteration: int, epoch: int, iter_per_epoch: int, temp_epoch: int,
                          temp_init_value: float = 1.0, temp_end: float = 0.0) -> float:
    """tau of the reference implementation, written from its definition (OSVAI/KernelWarehouse engine.py,
    get_temperature): total = iter_per_epoch x temp_epoch, current = iter_per_epoch x epoch + iteration,
    tau = temp_end + max(0, (temp_init_value - temp_end) x (total - current) / max(1, total)). train_one_epoch
    calls it before each forward with iteration = data_iter_step + 1 (data_iter_step counts from 0 in the epoch),
    the 0-based epoch and iter_per_epoch = len(data_loader); main.py's defaults are temp_init_value 1, temp_end 0."""
    total = iter_per_epoch * temp_epoch
    current = iter_per_epoch * epoch + iteration
    return temp_end + max(0.0, (temp_init_value - temp_end) * ((total - current) / max(1.0, total)))


@pytest.mark.parametrize("steps_per_epoch,temp_epochs,start", [(7, 3, 1.0), (5, 2, 0.6), (4, 0, 1.0), (1, 1, 1.0)])
def test_schedule_equals_the_reference_temperature(steps_per_epoch, temp_epochs, start):
    """The recipe steps the method's schedule with the update counted from 1 (t = 1 before the first update): tau(t)
    = start x max(0, (T - t) / T) with T = temperature.epochs x steps per epoch, the reference's value at the same
    update (and 0 throughout when T = 0)."""
    from kwlab.methods import METHODS
    from kwlab.train.config import TrainConfig

    cfg = TrainConfig.from_dict({"kw": {"temperature": {"epochs": temp_epochs, "start": start}}})
    epochs = temp_epochs + 2
    schedule = METHODS.get("kw").schedule(cfg.settings, steps_per_epoch, epochs * steps_per_epoch)
    for epoch in range(epochs):
        for data_iter_step in range(steps_per_epoch):
            t = epoch * steps_per_epoch + data_iter_step + 1  # the recipe's global update count
            expected = reference_temperature(data_iter_step + 1, epoch, steps_per_epoch, temp_epochs, start)
            assert schedule.value(t) == pytest.approx(expected, abs=1e-12), (epoch, data_iter_step)


def test_fresh_model_starts_at_tau_one_and_the_first_update_matches_the_reference():
    """NOTE (documented departure): a fresh kwlab model holds tau = 1, so a forward before the first update is the
    static-equivalent model; the reference's attention starts at temp_value = 0 until the first training step sets
    it. From the first update on both follow the schedule: tau(1) = (T - 1) / T."""
    model = kwlab.create_model("cifar_resnet8", kw={"budget": 1})
    assert set(taus(model)) == {1.0}
    schedule = TemperatureSchedule(steps=20)
    assert schedule(model, 1) == reference_temperature(1, 0, 10, 2) == pytest.approx(19 / 20)
