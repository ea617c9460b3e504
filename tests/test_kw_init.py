"""`model.init: reference` (kwlab.models.init, Warehouse.init_slice): a fresh model starts as the KW reference code
initialises its models; `init: timm` keeps timm's (and the converter's copies of the static weights).

The rules are written here from the reference's model files (read, not imported):
- each KW layer's own warehouse slice [start, start + own): `kaiming_normal_(mode='fan_out', nonlinearity='relu')`
  on the slice viewed as (own x c_out, c_in, *cell kernel) (Warehouse_Manager.allocate), so
  std = sqrt(2 / (own x c_out x cell kernel size));
- BatchNorm weight 1, bias 0 everywhere (no zero-init of a block's last BN);
- MobileNetV2's Linear N(0, 0.01), bias 0; KW ResNet's fc PyTorch's default (uniform +-1/sqrt(C_in), std
  1/sqrt(3 C_in)); static ResNet's fc (resnet.py) N(0, 0.01); ConvNeXt's head truncated normal, std 0.02.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import kwlab
from kwlab.errors import KWLabError
from kwlab.methods import build_model
from kwlab.methods.kw.layers import KWLayer


def reference_std(own: int, cell_shape: tuple[int, ...]) -> float:
    """Kaiming normal (fan-out, ReLU gain sqrt 2) of a tensor shaped (own x c_out, c_in, *cell kernel)."""
    fan_out = own * cell_shape[0] * math.prod(cell_shape[2:])  # PyTorch: size(0) x receptive field
    return math.sqrt(2.0 / fan_out)


def slice_ratios(model: nn.Module) -> list[tuple[str, float, int]]:
    """(layer, measured std / the reference's std, number of values) of every KW layer's own slice."""
    ratios = []
    for layer in model.kw_plan.layers:
        warehouse = model.kw_warehouses[layer.warehouse.replace(".", "_")]
        cells = warehouse.cells.detach()[layer.own_start : layer.own_start + layer.own_cells]
        if cells.numel() > 1:
            ratios.append((layer.spec.name, float(cells.std()) / reference_std(layer.own_cells, warehouse.cell_shape),
                           cells.numel()))
    return ratios


CASES = {  # (model, KW settings): the budgets where timm's scale departs most (see kwlab.models.init)
    "resnet18-1/4x": ("resnet18", {"budget": "1/4", "cell_in_ratio": 0.5, "cell_out_ratio": 0.5}),
    "resnet18-4x": ("resnet18", {"budget": 4}),
    "mobilenetv2_100-1x": ("mobilenetv2_100", {"budget": 1}),
    "convnext_atto-1x": ("convnext_atto", {"budget": 1}),
}


@pytest.mark.parametrize("name,kw", CASES.values(), ids=CASES.keys())
def test_cells_follow_the_reference_fan_out_rule_per_slice(name, kw):
    model = build_model(name, "kw", kw, init="reference", num_classes=10)
    ratios = slice_ratios(model)
    for layer, ratio, count in ratios:  # each slice: within 4 standard errors of a std estimate
        assert abs(ratio - 1) < 4 / math.sqrt(2 * count) + 0.01, layer
    pooled = sum(r * r * c for _, r, c in ratios) / sum(c for _, _, c in ratios)
    assert pooled == pytest.approx(1.0, abs=0.01)


def test_timm_init_departs_from_the_reference_rule():
    """What `init: timm` keeps, measured: copies of timm's depthwise weights (fan-out divided by the groups) in the
    MobileNetV2 depthwise warehouses, and the layer's own fan-out (not the slice's) at 4x."""
    mobilenet = dict((n, r) for n, r, _ in slice_ratios(build_model("mobilenetv2_100", "kw", {"budget": 1},
                                                                    init="timm", num_classes=10)))
    assert mobilenet["blocks.6.0.conv_dw"] == pytest.approx(math.sqrt(960), rel=0.1)  # 31x
    resnet = dict((n, r) for n, r, _ in slice_ratios(build_model("resnet18", "kw", {"budget": 4}, init="timm",
                                                                 num_classes=10)))
    assert resnet["layer3.1.conv1"] == pytest.approx(2.0, rel=0.05)


@pytest.mark.parametrize("init,gamma", [("reference", 1.0), ("timm", 0.0)])
def test_last_batchnorm_of_a_block_starts_at_one_like_the_reference(init, gamma):
    model = build_model("resnet18", "kw", {"budget": 1}, init=init, num_classes=10)
    assert all(torch.all(m.bn2.weight == gamma) for m in model.modules() if hasattr(m, "zero_init_last"))
    if init == "reference":
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)


@pytest.mark.parametrize("name,method,expected", [
    ("mobilenetv2_100", "kw", 0.01),  # kw_mobilenetv2.py: N(0, 0.01)
    ("mobilenetv2_100", "static", 0.01),  # mobilenetv2.py
    ("resnet18", "kw", 1 / math.sqrt(3 * 512)),  # kw_resnet.py leaves PyTorch's default
    ("resnet18", "static", 0.01),  # resnet.py: N(0, 0.01)
    ("convnext_atto", "kw", 0.02),  # truncated normal (cut at +-2, 100 std: no visible effect on the std)
])
def test_classifier_std(name, method, expected):
    model = build_model(name, method, {"budget": 1} if method == "kw" else None, init="reference", num_classes=1000)
    classifier = model.get_classifier()
    assert float(classifier.weight.detach().std()) == pytest.approx(expected, rel=0.02)
    assert torch.all(classifier.bias == 0) or (name == "resnet18" and method == "kw")


def test_static_depthwise_convs_use_pytorchs_fan_out():
    """The reference's kaiming_normal_(mode='fan_out') counts C_out x k x k for a depthwise conv; timm divides by
    the groups."""
    conv = build_model("mobilenetv2_100", "static", init="reference", num_classes=10).blocks[6][0].conv_dw
    assert float(conv.weight.detach().std()) == pytest.approx(math.sqrt(2 / (960 * 9)), rel=0.05)


def test_kw_biases_start_at_zero_and_attention_at_kaiming():
    model = build_model("convnext_atto", "kw", {"budget": 1}, init="reference", conv_mlp=False, num_classes=10)
    layers = [m for m in model.modules() if isinstance(m, KWLayer)]
    assert all(torch.all(m.bias == 0) for m in layers if m.bias is not None)
    fc2 = model.stages[3].blocks[0].mlp.fc1.attention.fc2
    assert float(fc2.weight.detach().std()) == pytest.approx(math.sqrt(2 / fc2.out_features), rel=0.05)


def test_conversion_of_a_trained_model_still_copies_its_weights(generator):
    """Only fresh models get the reference init: kwlab.convert of a (pretrained) model keeps its weights in the beta
    cells, so at tau = 1 the KW model computes what the source computed."""
    source = build_model("resnet18", "static", init="reference", num_classes=10).eval()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.01)
    converted = kwlab.convert(copy.deepcopy(source), {"budget": 1}).eval()
    x = torch.randn(2, 3, 32, 32, generator=generator)
    with torch.no_grad():
        assert torch.allclose(converted(x), source(x), atol=1e-5)


def test_unknown_init_is_a_clear_error():
    with pytest.raises(KWLabError, match="model.init: 'kaiming'"):
        build_model("resnet18", "kw", init="kaiming")
