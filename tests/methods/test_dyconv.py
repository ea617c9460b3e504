"""DY-Conv (kwlab.methods.dyconv): the formula against a per-sample computation written here, the temperature and
its schedule, the layer selection and the parameter counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kwlab.errors import KWLabError
from kwlab.methods import METHODS, build_model, price_model
from kwlab.methods.dynamic import DynamicConv
from kwlab.methods.temperature import LinearAnneal
from kwlab.methods.dyconv import DyConv2d, DyConvAttention, DyConvSettings
from kwlab.models.factory import timm_model


def expected_output(layer: DyConv2d, x: torch.Tensor) -> torch.Tensor:
    """pi = softmax(FC(ReLU(FC(GAP x))) / T); y_b = conv(x_b, sum_k pi_k W_k) + sum_k pi_k b_k, one sample at a time."""
    att = layer.attention
    outputs = []
    for sample in x:
        pooled = sample.mean((1, 2))
        logits = att.fc2.weight @ torch.relu(att.fc1.weight @ pooled + att.fc1.bias) + att.fc2.bias
        pi = torch.softmax(logits / att.temperature, 0)
        kernel = sum(pi[k] * layer.weight[k] for k in range(layer.kernels))
        bias = None if layer.bias is None else sum(pi[k] * layer.bias[k] for k in range(layer.kernels))
        outputs.append(F.conv2d(sample[None], kernel, bias, layer.stride, layer.padding, layer.dilation, layer.groups))
    return torch.cat(outputs)


@pytest.mark.parametrize("groups", [1, 4])
def test_formula_with_mixed_biases_and_gradients(groups: int, generator: torch.Generator) -> None:
    layer = DyConv2d(8, 8, 3, stride=2, padding=1, groups=groups, bias=True, kernels=3, temperature=2.0).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(3, 8, 9, 9, generator=generator, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    x2 = x.detach().clone().requires_grad_()
    expected = expected_output(layer, x2)
    torch.testing.assert_close(out, expected)
    weights = torch.randn(out.shape, generator=generator, dtype=torch.float64)
    ours = torch.autograd.grad((out * weights).sum(), [x, *layer.parameters()])
    theirs = torch.autograd.grad((expected * weights).sum(), [x2, *layer.parameters()])
    for name, a, b in zip(["input", *(n for n, _ in layer.named_parameters())], ours, theirs, strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_temperature_flattens_the_attention(generator: torch.Generator) -> None:
    attention = DyConvAttention(16, 4, 4, temperature=30.0)
    with torch.no_grad():
        attention.fc2.bias.copy_(torch.tensor([3.0, 0.0, -1.0, 1.0]))
    pooled = torch.randn(5, 16, generator=generator)
    hot = attention(pooled)
    torch.testing.assert_close(hot.sum(-1), torch.ones(5))
    assert (hot - 0.25).abs().max() < 0.05  # near uniform at T = 30: every kernel trains early
    attention.temperature.fill_(1.0)
    cold = attention(pooled)
    assert (cold - 0.25).abs().max() > 0.2
    assert "temperature" in attention.state_dict()  # saved with the model


def test_schedule_anneals_30_to_1_over_the_epochs() -> None:
    """T = 1 + 29 (S - t) / S at iteration t from 1, S = 10 epochs x L; ODConv's get_temperature."""
    schedule = LinearAnneal(steps=100, start=30.0, end=1.0)
    assert schedule.value(1) == pytest.approx(1 + 29 * 99 / 100)
    assert schedule.value(50) == pytest.approx(15.5)
    assert schedule.value(100) == 1.0 and schedule.value(1000) == 1.0
    assert LinearAnneal(steps=0, start=30.0, end=1.0).value(1) == 1.0


def test_default_anneal_is_30_percent_of_training_like_kw() -> None:
    """DY-Conv's and ODConv's T anneal over the same share of training as KW's tau unless `epochs` is set."""
    from kwlab.train.config import TrainConfig

    for method in ("dyconv", "odconv"):
        cfg = TrainConfig.from_dict({"method": method})
        schedule = METHODS.get(method).schedule(cfg.settings, steps_per_epoch=10, total_steps=100)
        kw = METHODS.get("kw").schedule(None, steps_per_epoch=10, total_steps=100)
        assert schedule.steps == kw.steps == 30
        assert schedule.value(15) == pytest.approx(15.5) and schedule.value(30) == 1.0


def test_method_schedule_sets_every_layer(generator: torch.Generator) -> None:
    from kwlab.train.config import TrainConfig

    cfg = TrainConfig.from_dict({"method": "dyconv", "dyconv": {"kernels": 2, "temperature": {"epochs": 2}}})
    model = build_model("cifar_resnet8", "dyconv", cfg.settings)
    attentions = [m for m in model.modules() if isinstance(m, DyConvAttention)]
    assert len(attentions) == 8 and all(a.temperature.item() == 30.0 for a in attentions)  # fresh: the start
    schedule = METHODS.get("dyconv").schedule(cfg.settings, steps_per_epoch=5, total_steps=50)
    assert schedule(model, 1) == pytest.approx(1 + 29 * 9 / 10)
    assert all(a.temperature.item() == pytest.approx(27.1) for a in attentions)
    assert schedule(model, 10) == 1.0 and schedule(model, 11) == 1.0
    assert all(a.temperature.item() == 1.0 for a in attentions)


def test_settings_errors() -> None:
    assert DyConvSettings().temperature.start == 30.0 and DyConvSettings().kernels == 4
    with pytest.raises(KWLabError, match="dyconv.reduction"):
        DyConvSettings(reduction=0)
    for bad in ({"epochs": -1}, {"epochs": float("inf")}, {"fraction": 1.5}, {"start": float("nan")}):
        key = next(iter(bad))
        with pytest.raises(KWLabError, match=f"dyconv.temperature.{key}"):
            DyConvSettings(temperature=bad)
    with pytest.raises(KWLabError, match="dyconv.temperature"):
        DyConvSettings(temperature={"stop": 1})


def _expected_params(name: str, kernels: int) -> int:
    """static + (K - 1) x every converted kernel + per layer Linear(C, C/4) + Linear(C/4, K), both with bias."""
    with torch.device("meta"):
        model = timm_model(name)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)][1:]  # all but the stem
    hidden = [max(c.in_channels // 4, 1) for c in convs]
    attention = sum(c.in_channels * h + h + h * kernels + kernels for c, h in zip(convs, hidden, strict=True))
    return (sum(p.numel() for p in model.parameters()) + (kernels - 1) * sum(c.weight.numel() for c in convs)
            + attention)


@pytest.mark.parametrize(("name", "count"), [
    # kwlab's counts at K = 4, 1000 classes; the paper reports 42.7M and 11.1M (see kwlab.methods.dyconv's doc)
    ("resnet18", 45_472_052),
    ("mobilenetv2_100", 12_404_540),
])
def test_parameter_counts(name: str, count: int) -> None:
    price = price_model(name, "dyconv", {"kernels": 4}, (3, 224, 224))
    assert price.params == count == _expected_params(name, 4)
    with torch.device("meta"):
        model = build_model(name, "dyconv", {"kernels": 4})
    assert sum(p.numel() for p in model.parameters()) == count


def test_mobilenetv2_selection() -> None:
    """Every conv but the stem: expansion, depthwise, projection and the 1x1 head; the classifier stays static."""
    with torch.device("meta"):
        model = build_model("mobilenetv2_100", "dyconv")
    dynamic = [n for n, m in model.named_modules() if isinstance(m, DynamicConv)]
    convs = [n for n, m in timm_model("mobilenetv2_100").named_modules() if isinstance(m, nn.Conv2d)]
    assert dynamic == convs[1:]
    assert convs[0] == "conv_stem" and "conv_head" in dynamic and "blocks.1.0.conv_dw" in dynamic
    assert type(model.classifier) is nn.Linear


def test_recorder_rows_are_distributions(generator: torch.Generator) -> None:
    model = build_model("cifar_resnet8", "dyconv", {"kernels": 3})
    with METHODS.get("dyconv").recorder(model) as recorder, torch.no_grad():
        model.eval()(torch.randn(4, 3, 16, 16, generator=generator))
    alpha = recorder.arrays()["routing/alpha"]
    assert alpha.shape == (8, 3)
    assert abs(alpha.sum(1) - 1).max() < 1e-5
