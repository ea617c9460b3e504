"""ODConv (kwlab.methods.odconv): the official models' exact parameter counts, the formula and its gradients against
a per-sample computation written here, the skipped heads, the initialisation, the layer selection and the recorder."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kwlab.methods import METHODS
from kwlab.methods.dynamic import DynamicConv
from kwlab.methods.odconv import ODConv2d, ODConvSettings
from kwlab.methods.pricing import layer_positions
from kwlab.models.factory import timm_model

# Measured by running the official code (OSVAI/ODConv at 0901cc1, od_resnet*/od_mobilenetv2_*, reduction 1/16,
# 1000 classes): see /work/shared/baselines.md.
OFFICIAL_COUNTS = {
    "resnet18": (11_943_944, 44_901_640),
    "resnet50": (28_635_112, 90_670_888),
    "mobilenetv2_100": (4_940_185, 11_512_149),
    "mobilenetv2_050": (2_425_537, 4_435_501),
}


@pytest.mark.parametrize("name", list(OFFICIAL_COUNTS))
def test_parameter_counts_equal_the_official_models(name: str) -> None:
    """Built on the meta device at K = 1 and K = 4; the price before building says the same."""
    method = METHODS.get("odconv")
    counts = {}
    for kernels, official in zip((1, 4), OFFICIAL_COUNTS[name], strict=True):
        settings = ODConvSettings(kernels=kernels)
        with torch.device("meta"):
            model = timm_model(name)
        price = method.price(model, settings, layer_positions(model, (3, 224, 224)))
        method.convert(model, settings)
        counts[kernels] = sum(p.numel() for p in model.parameters())
        assert counts[kernels] == official == price.params
        assert price.params == sum(price.params_parts.values())
        assert price.macs == sum(price.macs_parts.values()) and price.macs_parts["mixing"] > 0
    # cross-check: K = 4 adds 3 x (kernel parameters) + the kernel heads (d x 4 + 4 per layer)
    layers = [m for m in model.modules() if isinstance(m, ODConv2d)]
    extra = sum(3 * m.weight[0].numel() + m.attention.fc.out_features * 4 + 4 for m in layers)
    assert counts[4] - counts[1] == extra


def test_kwlab_info_prices_odconv_4x(capsys: pytest.CaptureFixture[str]) -> None:
    from kwlab.cli import main

    assert main(["info", "resnet18", "--set", "method=odconv", "--set", "odconv.kernels=4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["params"] == 44_901_640
    assert result["macs"] == result["macs_conv"] + result["macs_attention"] + result["macs_mixing"]
    assert result["macs_conv"] == 1_814_073_344  # timm resnet18's conv and linear MACs at 224x224
    assert result["static_layers"] == ["conv1", "layer2.0.downsample.0", "layer3.0.downsample.0",
                                       "layer4.0.downsample.0", "fc"]


def expected_output(layer: ODConv2d, x: torch.Tensor) -> torch.Tensor:
    """The official formula, one sample at a time, from the layer's parameters (attention in eval mode):
    y_b = a_f * conv(a_c * x_b, sum_i a_w,i * a_s * W_i) + bias."""
    att = layer.attention
    kernels = layer.weight.permute(0, 3, 4, 1, 2)  # tap-major -> the official (K, C_out, C_in/g, k, k)
    outputs = []
    for sample in x:
        z = att.fc.weight @ sample.mean((1, 2))
        z = (z - att.norm.running_mean) / torch.sqrt(att.norm.running_var + att.norm.eps) * att.norm.weight
        hidden = torch.relu(z + att.norm.bias)
        t = att.temperature

        def head(module: nn.Module, softmax: bool = False) -> torch.Tensor:
            logits = (module.fc.weight @ hidden + module.fc.bias) / t
            return torch.softmax(logits, 0) if softmax else torch.sigmoid(logits)

        a_c = head(att.channel)
        a_f = head(att.filter) if att.filter is not None else 1.0
        a_s = head(att.spatial).view(*layer.kernel_size) if att.spatial is not None else 1.0
        a_w = head(att.kernel, softmax=True) if att.kernel is not None else torch.ones(1, dtype=x.dtype)
        kernel = sum(a_w[i] * a_s * kernels[i] for i in range(layer.kernels))
        y = F.conv2d((sample * a_c[:, None, None])[None], kernel, None, layer.stride, layer.padding,
                     layer.dilation, layer.groups)
        y = y * (a_f[None, :, None, None] if torch.is_tensor(a_f) else a_f)
        outputs.append(y if layer.bias is None else y + layer.bias[:, None, None])
    return torch.cat(outputs)


FORMULA_CASES = {
    "3x3-K4-stride": dict(args=(6, 5, 3, 2, 1), kernels=4, input=(3, 6, 9, 8)),
    "3x3-K1-bias": dict(args=(6, 5, 3, 1, 1), kernels=1, bias=True, input=(3, 6, 7, 7)),
    "1x1-K4": dict(args=(6, 5, 1), kernels=4, input=(3, 6, 4, 5)),
    "1x1-K1": dict(args=(6, 5, 1), kernels=1, input=(3, 6, 4, 5)),
    "depthwise-K4": dict(args=(6, 6, 3, 1, 1, 1, 6), kernels=4, input=(3, 6, 6, 6)),
    "rect-K2": dict(args=(4, 6, (3, 1), 1, (1, 0)), kernels=2, input=(2, 4, 6, 5)),
}


@pytest.mark.parametrize("case", list(FORMULA_CASES))
def test_formula_and_gradients_match_a_per_sample_loop(case: str, generator: torch.Generator) -> None:
    spec = FORMULA_CASES[case]
    layer = ODConv2d(*spec["args"], bias=spec.get("bias", False), kernels=spec["kernels"], temperature=1.7)
    with torch.no_grad():
        for module in (layer.attention.channel, layer.attention.filter, layer.attention.spatial,
                       layer.attention.kernel):
            if module is not None:
                module.fc.bias.normal_(generator=generator)
        layer.attention.norm.running_mean.normal_(generator=generator)
        if layer.bias is not None:
            layer.bias.normal_(generator=generator)
    layer = layer.double().eval()
    x = torch.randn(spec["input"], generator=generator, dtype=torch.float64)
    expected_x = x.clone().requires_grad_()
    expected = expected_output(layer, expected_x)
    weights = torch.randn(expected.shape, generator=generator, dtype=torch.float64)
    params = list(layer.parameters())
    expected_grads = torch.autograd.grad((expected * weights).sum(), [expected_x, *params])
    names = ["input", *(n for n, _ in layer.named_parameters())]
    paths = ["auto", "reference", "grouped"] + (["batched", "mixed"] if layer.groups == 1 else [])
    for path in paths:
        layer.path = path
        ours_x = x.clone().requires_grad_()
        out = layer(ours_x)
        torch.testing.assert_close(out, expected, msg=f"{path}: output")
        grads = torch.autograd.grad((out * weights).sum(), [ours_x, *params])
        for name, a, b in zip(names, grads, expected_grads, strict=True):
            torch.testing.assert_close(a, b, msg=f"{path}: gradient of {name}")


@pytest.mark.parametrize("path", ["grouped", "mixed", "batched"])
def test_gradcheck(path: str, generator: torch.Generator) -> None:
    """Finite differences against the analytic backward (the KW paths have their own) for input, kernels and a head."""
    layer = ODConv2d(3, 4, 3, 1, 1, kernels=2, temperature=1.0).double().eval()
    layer.path = path
    x = torch.randn(2, 3, 4, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = layer.weight.detach().clone().requires_grad_()
    spatial = layer.attention.spatial.fc.weight.detach().clone().requires_grad_()

    def run(x: torch.Tensor, weight: torch.Tensor, spatial: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(layer, {"weight": weight, "attention.spatial.fc.weight": spatial}, (x,))

    assert torch.autograd.gradcheck(run, (x, weight, spatial))


def test_skipped_heads_and_attention_shape() -> None:
    """filter skipped for depthwise convs, spatial for 1x1, kernel for K = 1; d = max(floor(C_in / 16), 16)."""
    dense = ODConv2d(64, 128, 3, padding=1, kernels=4)
    assert dense.attention.fc.weight.shape == (16, 64) and dense.attention.fc.bias is None
    assert [dense.attention.channel.fc.out_features, dense.attention.filter.fc.out_features,
            dense.attention.spatial.fc.out_features, dense.attention.kernel.fc.out_features] == [64, 128, 9, 4]
    assert ODConv2d(640, 320, 1, kernels=1).attention.fc.out_features == 40
    depthwise = ODConv2d(32, 32, 3, padding=1, groups=32, kernels=1)
    assert depthwise.attention.filter is None and depthwise.attention.kernel is None
    assert depthwise.attention.channel is not None and depthwise.attention.spatial is not None
    grouped = ODConv2d(32, 32, 3, padding=1, groups=2, kernels=1)
    assert grouped.attention.filter is not None  # only the depthwise test skips it, as the official code
    pointwise = ODConv2d(32, 64, 1, kernels=1)
    assert pointwise.attention.spatial is None and pointwise.attention.kernel is None
    assert pointwise.weight.shape == (1, 1, 1, 64, 32) and pointwise.conv_kernels().shape == (1, 64, 32, 1, 1)


def test_initialisation_follows_the_official_code() -> None:
    torch.manual_seed(0)
    layer = ODConv2d(256, 256, 3, padding=1, kernels=2)
    std = math.sqrt(2.0 / (256 * 9))  # Kaiming normal, fan_out = C_out x k x k, ReLU; per kernel
    for kernel in layer.conv_kernels():
        assert abs(kernel.std().item() / std - 1) < 0.02 and abs(kernel.mean().item()) < 0.01 * std
    for head in (layer.attention.channel, layer.attention.filter, layer.attention.spatial, layer.attention.kernel):
        assert (head.fc.bias == 0).all()
        fan_out, count = head.fc.out_features, head.fc.weight.numel()
        tolerance = 4 / math.sqrt(2 * count)  # four standard errors of a sample standard deviation
        assert abs(head.fc.weight.std().item() / math.sqrt(2.0 / fan_out) - 1) < tolerance
    assert (layer.attention.norm.weight == 1).all() and (layer.attention.norm.bias == 0).all()


@pytest.mark.parametrize(("name", "static"), [
    ("resnet18", ["conv1", "layer2.0.downsample.0", "layer3.0.downsample.0", "layer4.0.downsample.0", "fc"]),
    ("cifar_resnet20", ["conv1", "layer2.0.downsample.0", "layer3.0.downsample.0", "fc"]),
    ("mobilenetv2_050", ["conv_stem", "classifier"]),
    ("cifar_mobilenetv2", ["conv_stem", "classifier"]),
])
def test_layer_selection(name: str, static: list[str]) -> None:
    """ResNets: every block conv, the stem, shortcut projections and classifier static; MobileNetV2: every conv but
    the stem, depthwise convs and the head included."""
    with torch.device("meta"):
        model = timm_model(name)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    METHODS.get("odconv").convert(model, ODConvSettings(kernels=2))
    dynamic = [n for n, m in model.named_modules() if isinstance(m, DynamicConv)]
    kept = [n for n, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear)
            and not any(n.startswith(f"{d}.") for d in dynamic)]
    assert kept == static
    assert dynamic == [n for n in convs if n not in static]


def test_resnet50_keeps_the_stride_one_projection_static() -> None:
    with torch.device("meta"):
        model = METHODS.get("odconv").convert(timm_model("resnet50"), ODConvSettings())
    assert type(model.layer1[0].downsample[0]) is nn.Conv2d
    assert isinstance(model.layer1[0].conv1, ODConv2d) and isinstance(model.layer1[0].conv3, ODConv2d)


def test_recorder_groups(generator: torch.Generator) -> None:
    method = METHODS.get("odconv")
    x = torch.randn(3, 3, 16, 16, generator=generator)
    one = method.convert(timm_model("cifar_resnet8"), ODConvSettings(kernels=1))
    with method.recorder(one) as recorder, torch.no_grad():
        one.eval()(x)
    arrays = recorder.arrays()
    assert "kernel/alpha" not in arrays  # K = 1: the kernel attention is 1
    assert arrays["spatial_3x3/alpha"].shape == (6, 9)
    assert arrays["spatial_3x3/layer"][0] == "layer1.0.conv1.attention.spatial"
    four = method.convert(timm_model("cifar_resnet8"), ODConvSettings(kernels=4))
    with method.recorder(four) as recorder, torch.no_grad():
        four.eval()(x)
    arrays = recorder.arrays()
    assert arrays["kernel/alpha"].shape == (6, 4)
    assert abs(arrays["kernel/alpha"].sum(1) - 1).max() < 1e-5
    assert list(arrays["kernel/layer"])[:2] == ["layer1.0.conv1", "layer1.0.conv2"]


def test_train_step_and_schedule(generator: torch.Generator) -> None:
    from kwlab.train.config import TrainConfig

    cfg = TrainConfig.from_dict({"method": "odconv", "odconv": {"kernels": 2}})
    method = METHODS.get(cfg.method)
    model = method.convert(timm_model("cifar_mobilenetv2_tiny"), cfg.settings)
    schedule = method.schedule(cfg.settings, steps_per_epoch=3, total_steps=60)
    assert schedule(model, 1) == pytest.approx(1 + 29 * 17 / 18)  # the default: over 30% of the 60 steps
    loss = model(torch.randn(2, 3, 16, 16, generator=generator)).logsumexp(1).sum()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert method.describe(cfg.settings) == "ODConv 2x"
