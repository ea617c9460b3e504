"""The shipped presets configs/reference/*.yaml: every released KernelWarehouse setting, validated as a trial config
and built (on the meta device) with the reference's parameter count."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import kwlab
from kwlab.methods import build_model, price_model
from kwlab.train import load_config

PRESETS = Path(__file__).resolve().parents[1] / "configs" / "reference"

# Parameter counts (1000 classes) of the reference implementation, OSVAI/KernelWarehouse (modules/kernel_warehouse.py
# @ b1a852ce, models @ 4965750, configs/*.json): the 13 figures of tests/test_kw_planner.py, computed by running it,
# and the two MobileNetV2 1/2x models of models/kw1d2x_mobilenetv2.py (its README table rounds them to 2.65M, 1.47M).
REFERENCE_PARAMS = {
    "kw1d4x_resnet18": 4_031_768,
    "kw1d2x_resnet18": 7_431_044,
    "kw1x_resnet18": 11_932_148,
    "kw2x_resnet18": 23_242_127,
    "kw4x_resnet18": 45_862_085,
    "kw1d2x_resnet50": 17_638_264,
    "kw1x_resnet50": 28_052_310,
    "kw4x_resnet50": 102_015_144,
    "kw1x_convnext_tiny": 39_370_674,
    "kw1d2x_mobilenetv2_100": 2_654_396,
    "kw1x_mobilenetv2_100": 5_168_146,
    "kw4x_mobilenetv2_100": 11_379_382,
    "kw1d2x_mobilenetv2_050": 1_466_888,
    "kw1x_mobilenetv2_050": 2_854_522,
    "kw4x_mobilenetv2_050": 4_648_587,
}


def test_every_released_setting_has_a_preset():
    assert sorted(p.stem for p in PRESETS.glob("*.yaml")) == sorted(REFERENCE_PARAMS)


@pytest.mark.parametrize("name", REFERENCE_PARAMS)
def test_preset_builds_with_the_reference_parameter_count(name):
    cfg = load_config(PRESETS / f"{name}.yaml")
    assert cfg.method == "kw" and cfg.model.init == "reference" and cfg.kw.layout == "reference"
    assert cfg.data.name == "imagefolder" and cfg.data.image_size == 224 and cfg.runtime.device == "cuda"
    kwargs = {"num_classes": 1000, "drop_path_rate": cfg.model.drop_path_rate, **cfg.model.kwargs}
    with torch.device("meta"):
        model = build_model(cfg.model.name, cfg.method, cfg.settings, init=cfg.model.init, **kwargs)
    assert sum(p.numel() for p in model.parameters()) == REFERENCE_PARAMS[name]
    price = price_model(cfg.model.name, cfg.method, cfg.settings, (3, 224, 224), **kwargs)
    assert price.params == REFERENCE_PARAMS[name]


@pytest.mark.parametrize("name", ["kw1d2x_mobilenetv2_100", "kw1d2x_mobilenetv2_050"])
def test_mobilenetv2_half_budget_matches_the_reference_model(name):
    """models/kw1d2x_mobilenetv2.py: 10 warehouses (stem, stage 1-5 depthwise, stage 6 expansion / depthwise /
    projection, classifier), the pointwise convs of stages 1-5 static, a KW classifier with cells of 32 inputs."""
    cfg = load_config(PRESETS / f"{name}.yaml")
    plan = kwlab.plan(cfg.model.name, cfg.kw, num_classes=1000)
    assert [w.name for w in plan.warehouses] == [
        "stage0.stem.dense", *(f"stage{s}.depthwise.grouped" for s in range(1, 6)), "stage6.expansion.dense",
        "stage6.depthwise.grouped", "stage6.projection.dense", "classifier"]
    classifier = plan.warehouses[-1]
    assert classifier.cell_shape == (1000, 32) and classifier.cells == 20  # 1280 / 32 = 40 mixtures at 1/2
    static = set(plan.static_layers)
    assert {"blocks.0.0.conv_pw", "blocks.4.2.conv_pwl", "blocks.5.0.conv_pw", "blocks.5.0.conv_pwl"} <= static
    assert not static & {"blocks.5.1.conv_pw", "blocks.6.0.conv_pwl", "conv_head", "classifier"}
    assert kwlab.plan(cfg.model.name, cfg.kw, num_classes=1000).layer("classifier").hidden == 40  # 1280 / 32
