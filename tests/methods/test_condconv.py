"""CondConv (kwlab.methods.condconv): parity with timm.layers.CondConv2d, the routing, the layer selection, the price
and the protocol hooks."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from kwlab.errors import KWLabError
from kwlab.methods import METHODS, build_model
from kwlab.methods.condconv import CondConv2d, CondConvSettings
from kwlab.methods.dynamic import DynamicConv

# (in, out, kernel, stride, padding, dilation, groups, bias, input)
TIMM_CASES = {
    "3x3": (8, 6, 3, 1, 1, 1, 1, False, (3, 8, 7, 7)),
    "3x3-stride-bias": (8, 6, 3, 2, 1, 1, 1, True, (3, 8, 9, 8)),
    "5x5-dilated-nopad": (8, 6, 5, 1, 0, 2, 1, False, (2, 8, 12, 11)),
    "1x1": (8, 12, 1, 1, 0, 1, 1, True, (3, 8, 5, 5)),
    "grouped": (8, 6, 3, 1, 1, 1, 2, True, (3, 8, 6, 6)),
    "depthwise-stride": (8, 8, 3, 2, 1, 1, 8, False, (3, 8, 9, 9)),
}


@pytest.mark.parametrize("case", list(TIMM_CASES))
def test_matches_timm_condconv2d(case: str, generator: torch.Generator) -> None:
    """Given timm's expert weights (its (n, C_out*C_in/g*k*k) layout) and the same routing weights, every path
    gives timm's output; with the routing of timm's EfficientNet blocks (sigmoid of a Linear on the pooled input)
    the whole layer does."""
    cin, cout, k, stride, padding, dilation, groups, bias, shape = TIMM_CASES[case]
    experts = 4
    theirs = timm.layers.CondConv2d(cin, cout, k, stride, padding, dilation, groups, bias, num_experts=experts)
    ours = CondConv2d(cin, cout, k, stride, padding, dilation, groups, bias, experts=experts)
    assert theirs.weight.shape == (experts, ours.weight[0].numel())
    with torch.no_grad():
        ours.weight.copy_(theirs.weight.view(ours.weight.shape))
        if bias:
            ours.bias.copy_(theirs.bias)
    x = torch.randn(shape, generator=generator)
    routing = torch.rand(shape[0], experts, generator=generator)
    expected = theirs(x, routing)
    paths = ["grouped"] if groups > 1 else ["grouped", "batched", "mixed"]
    for path in ["reference", *paths]:
        torch.testing.assert_close(ours.convolve(x, routing, path), expected, rtol=1e-5, atol=1e-5, msg=path)
    # timm's EfficientNet routing: sigmoid(Linear(pooled x)), here the layer's own routing function
    routed = torch.sigmoid(ours.routing.fc(x.mean((2, 3))))
    torch.testing.assert_close(ours(x), theirs(x, routed), rtol=1e-5, atol=1e-5)


def test_routing_is_an_unnormalised_sigmoid(generator: torch.Generator) -> None:
    layer = CondConv2d(8, 8, 3, padding=1, experts=5)
    pooled = torch.randn(4, 8, generator=generator)
    routing = layer.routing(pooled)
    torch.testing.assert_close(routing, torch.sigmoid(pooled @ layer.routing.fc.weight.t() + layer.routing.fc.bias))
    with torch.no_grad():
        layer.routing.fc.weight.zero_()
        layer.routing.fc.bias.fill_(3.0)  # every expert strongly on: the weights do not compete
    routing = layer.routing(pooled)
    torch.testing.assert_close(routing, torch.full((4, 5), torch.sigmoid(torch.tensor(3.0)).item()))
    assert not any(hasattr(m, "temperature") for m in layer.modules())  # no temperature anywhere


def test_settings_defaults_and_errors() -> None:
    assert CondConvSettings().experts == 8
    with pytest.raises(KWLabError, match="condconv.experts"):
        CondConvSettings(experts=0)
    with pytest.raises(KWLabError, match="condconv.memory"):
        CondConvSettings(memory="huge")
    with pytest.raises(KWLabError, match="unknown key"):
        CondConvSettings(kernels=4)


def test_converts_every_conv_but_the_stem() -> None:
    """ResNet18: all block convs and the shortcut projections (DY-Conv's rule); stem and classifier static."""
    with torch.device("meta"):
        model = build_model("resnet18", "condconv", {"experts": 3})
    dynamic = sorted(name for name, m in model.named_modules() if isinstance(m, DynamicConv))
    assert len(dynamic) == 16 + 3
    assert "layer2.0.downsample.0" in dynamic and "conv1" not in dynamic
    assert type(model.conv1) is nn.Conv2d and type(model.fc) is nn.Linear
    assert all(model.get_submodule(n).kernels == 3 for n in dynamic)


def test_price_equals_the_built_model_and_counts_the_experts() -> None:
    method = METHODS.get("condconv")
    from kwlab.methods.pricing import layer_positions
    from kwlab.models.factory import timm_model

    with torch.device("meta"):
        static = timm_model("cifar_resnet20")
    positions = layer_positions(static, (3, 32, 32))
    weights = sum(m.weight.numel() for name, m in static.named_modules()
                  if isinstance(m, nn.Conv2d) and name != "conv1")
    inputs = sum(m.in_channels for name, m in static.named_modules() if isinstance(m, nn.Conv2d) and name != "conv1")
    layers = sum(1 for name, m in static.named_modules() if isinstance(m, nn.Conv2d) and name != "conv1")
    price = method.price(static, CondConvSettings(experts=8), positions)
    static_params = sum(p.numel() for p in static.parameters())
    # 7 more copies of every converted kernel, plus one Linear(C_in, 8) with bias per layer
    assert price.params == static_params + 7 * weights + 8 * inputs + 8 * layers
    assert price.params_parts["attention"] == 8 * inputs + 8 * layers
    model = method.convert(timm_model("cifar_resnet20"), CondConvSettings(experts=8))
    assert price.params == sum(p.numel() for p in model.parameters())
    assert price.macs_parts["mixing"] == 8 * weights  # every converted layer runs at 32x32
    assert price.macs_parts["attention"] == 8 * inputs
    assert price.macs == sum(price.macs_parts.values())


def test_forward_backward_recorder_and_no_schedule(generator: torch.Generator) -> None:
    method = METHODS.get("condconv")
    model = build_model("cifar_resnet8", "condconv", {"experts": 2})
    x = torch.randn(3, 3, 16, 16, generator=generator)
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    with method.recorder(model) as recorder:
        with torch.no_grad():
            model.eval()(x)
    arrays = recorder.arrays()
    layers = [n for n, m in model.named_modules() if isinstance(m, DynamicConv)]
    assert arrays["routing/alpha"].shape == (len(layers), 2)
    assert list(arrays["routing/layer"]) == layers
    assert ((arrays["routing/alpha"] > 0) & (arrays["routing/alpha"] < 1)).all()
    from kwlab.train.config import TrainConfig

    cfg = TrainConfig.from_dict({"method": "condconv", "condconv": {"experts": 2}})
    assert cfg.settings == CondConvSettings(experts=2)
    assert method.schedule(cfg.settings, 10, 100) is None
    assert method.describe(None) == "CondConv 8 experts"
    with pytest.raises(KWLabError, match="already has dynamic"):
        method.convert(model, None)
