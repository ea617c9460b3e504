"""Tests for kwlab's small-image model zoo (kwlab.models) and its timm registration."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

import kwlab.models  # noqa: F401  (registers the cifar_* models with timm)
from kwlab.errors import KWLabError

MODELS = timm.list_models("cifar_*")
RESNETS = [name for name in MODELS if name.startswith("cifar_resnet")]
MOBILENETS = [name for name in MODELS if name.startswith("cifar_mobilenetv2")]


def _num_params(model: nn.Module) -> int:
    """Total parameter count."""
    return sum(p.numel() for p in model.parameters())


def _cifar_resnet_params(n: int, in_chans: int, num_classes: int) -> int:
    """Hand count for a width-1 CIFAR ResNet-(6n+2): 3x3 convs are cin*cout*9, each BN has 2*c, option-B projections."""
    stem = in_chans * 16 * 9 + 2 * 16
    layer1 = n * (2 * 16 * 16 * 9 + 2 * 2 * 16)
    layer2 = (16 * 32 * 9 + 32 * 32 * 9 + 2 * 2 * 32) + (16 * 32 + 2 * 32) + (n - 1) * (2 * 32 * 32 * 9 + 2 * 2 * 32)
    layer3 = (32 * 64 * 9 + 64 * 64 * 9 + 2 * 2 * 64) + (32 * 64 + 2 * 64) + (n - 1) * (2 * 64 * 64 * 9 + 2 * 2 * 64)
    fc = 64 * num_classes + num_classes
    return stem + layer1 + layer2 + layer3 + fc


def test_registered_names() -> None:
    """Every kwlab entry point is registered, and nothing else matches cifar_*."""
    assert {"cifar_resnet8", "cifar_resnet20", "cifar_resnet56", "cifar_mobilenetv2", "cifar_mobilenetv2_tiny"} <= set(
        MODELS
    )
    assert set(MODELS) == set(RESNETS) | set(MOBILENETS)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("size", [8, 28, 32])
def test_forward_backward(name: str, in_chans: int, size: int) -> None:
    """Logits have the right shape and are finite, and every parameter receives a finite gradient."""
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=7, in_chans=in_chans)
    out = model(torch.randn(2, in_chans, size, size))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name


@pytest.mark.parametrize("name", MODELS)
def test_create_model_contract(name: str) -> None:
    """timm.create_model honours num_classes/in_chans and attaches the 32x32 pretrained_cfg."""
    model = timm.create_model(name, num_classes=7, in_chans=1)
    assert (model.num_classes, model.in_chans) == (7, 1)
    assert model.get_classifier().out_features == 7
    assert model.pretrained_cfg is model.default_cfg
    assert model.pretrained_cfg["architecture"] == name
    assert model.pretrained_cfg["input_size"] == (3, 32, 32)
    assert model.pretrained_cfg["num_classes"] == 10
    assert timm.create_model(name).num_classes == 10
    assert model.kw_layout in {"resnet", "mobilenetv2"}
    first_conv = model.get_submodule(model.pretrained_cfg["first_conv"])
    assert first_conv.in_channels == 1
    assert model.get_submodule(model.pretrained_cfg["classifier"]) is model.get_classifier()


@pytest.mark.parametrize("name", MODELS)
def test_layers_are_plain_and_initialised(name: str) -> None:
    """Convs are plain bias-free nn.Conv2d, the head a plain nn.Linear, and every BN starts at 1 / 0."""
    model = timm.create_model(name)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(type(m) is nn.Conv2d and m.bias is None for m in convs)
    assert type(model.get_classifier()) is nn.Linear
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):  # no zero-init of the last BN in a block
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)


@pytest.mark.parametrize("name", MODELS)
def test_batch_of_one_in_eval(name: str) -> None:
    """A single image runs in eval mode, even when the final map is 1x1."""
    model = timm.create_model(name, num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 5)
        assert model(torch.randn(1, 3, 8, 8)).shape == (1, 5)


@pytest.mark.parametrize("name", MODELS)
def test_head_api(name: str) -> None:
    """forward_features/forward_head/reset_classifier behave like timm's."""
    model = timm.create_model(name).eval()
    x = torch.randn(2, 3, 32, 32)
    features = model.forward_features(x)
    assert features.shape[:2] == (2, model.num_features)
    assert model.forward_head(features, pre_logits=True).shape == (2, model.num_features)
    assert torch.equal(model.forward_head(features), model(x))
    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.num_classes == 3
    model.reset_classifier(0)
    assert model(x).shape == (2, model.num_features)


@pytest.mark.parametrize("name", MODELS)
def test_features_only_matches_feature_info(name: str) -> None:
    """timm's features_only wrapper returns the maps that feature_info describes."""
    info = timm.create_model(name).feature_info
    extractor = timm.create_model(name, features_only=True)
    maps = extractor(torch.randn(2, 3, 32, 32))
    assert [m.shape[1] for m in maps] == [f["num_chs"] for f in info]
    assert [32 // m.shape[-1] for m in maps] == [f["reduction"] for f in info]


@pytest.mark.parametrize("name", MODELS)
def test_pretrained_is_refused(name: str) -> None:
    """pretrained=True fails loudly: no weights exist."""
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model(name, pretrained=True)


@pytest.mark.parametrize("name", MODELS)
def test_unsupported_options_warn(name: str) -> None:
    """timm options these nets cannot honour are accepted with a warning, not silently."""
    with pytest.warns(UserWarning, match="drop_block_rate"):
        timm.create_model(name, drop_block_rate=0.1)


def _drop_paths(model: nn.Module) -> list[float]:
    """The stochastic-depth probability of every block that has a residual branch to drop (0 where none)."""
    blocks = [m for m in model.modules() if hasattr(m, "drop_path")]
    return [getattr(b.drop_path, "drop_prob", 0.0) for b in blocks]


@pytest.mark.parametrize("name", MODELS)
def test_drop_path_rate_is_accepted_without_warning(name: str) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = timm.create_model(name, drop_path_rate=0.2)
    has_skip = any(getattr(m, "has_skip", True) for m in model.modules() if hasattr(m, "drop_path"))
    assert (max(_drop_paths(model)) > 0) == has_skip  # the tiny MobileNetV2 has no block with a skip
    assert max(_drop_paths(timm.create_model(name))) == 0


def test_drop_path_rates_rise_linearly_like_timm() -> None:
    """ResNet: rate x i / (N - 1) over all N blocks (timm's resnet); MobileNetV2: rate x i / N, only on blocks with a
    skip (timm's EfficientNet builder)."""
    resnet = timm.create_model("cifar_resnet20", drop_path_rate=0.4)  # 9 blocks
    assert _drop_paths(resnet) == pytest.approx([0.4 * i / 8 for i in range(9)])
    mobilenet = timm.create_model("cifar_mobilenetv2", drop_path_rate=0.32)  # 17 blocks
    blocks = [b for group in mobilenet.blocks for b in group]
    expected = [0.32 * i / 17 if b.has_skip else 0.0 for i, b in enumerate(blocks)]
    assert _drop_paths(mobilenet) == pytest.approx(expected)


@pytest.mark.parametrize("name", ["cifar_resnet8", "cifar_mobilenetv2"])
def test_drop_path_is_identity_in_eval_and_drops_in_training(name: str) -> None:
    torch.manual_seed(0)
    plain = timm.create_model(name, num_classes=5)
    dropping = timm.create_model(name, num_classes=5, drop_path_rate=0.9)
    dropping.load_state_dict(plain.state_dict())  # DropPath has no parameters: same weights
    x = torch.randn(4, 3, 16, 16)
    plain.eval(), dropping.eval()
    with torch.no_grad():
        assert torch.equal(plain(x), dropping(x))
        block = next(b for b in dropping.modules() if getattr(getattr(b, "drop_path", None), "drop_prob", 0) > 0)
        block.train()  # one block in training mode: some samples lose its residual branch, the rest are rescaled
        branch = torch.randn(64, 8, 2, 2)
        dropped = block.drop_path(branch)
        kept = dropped.flatten(1).abs().sum(1) > 0
        assert 0 < kept.sum() < 64
        assert torch.allclose(dropped[kept], branch[kept] / (1 - block.drop_path.drop_prob))
        dropping.train(), plain.train()
        assert not torch.equal(plain(x), dropping(x))


@pytest.mark.parametrize("name", MODELS)
def test_nonpositive_width_is_rejected(name: str) -> None:
    """A width multiplier <= 0 is a user error."""
    with pytest.raises(KWLabError, match="width"):
        timm.create_model(name, width=0.0)


@pytest.mark.parametrize("in_chans", [1, 3])
def test_resnet_parameter_counts(in_chans: int) -> None:
    """ResNet-20/56 parameter counts equal the hand count from the architecture (He et al. 2016)."""
    resnet20 = _num_params(timm.create_model("cifar_resnet20", num_classes=10, in_chans=in_chans))
    resnet56 = _num_params(timm.create_model("cifar_resnet56", num_classes=10, in_chans=in_chans))
    assert resnet20 == _cifar_resnet_params(3, in_chans, 10)
    assert resnet56 == _cifar_resnet_params(9, in_chans, 10)
    assert 0.27e6 < resnet20 < 0.28e6 and 0.85e6 < resnet56 < 0.86e6


@pytest.mark.parametrize("name", RESNETS)
def test_resnet_module_names(name: str) -> None:
    """ResNet module names follow timm's resnet, which the KW converter relies on."""
    model = timm.create_model(name)
    modules = dict(model.named_modules())
    top = ["conv1", "bn1", "act1", "layer1", "layer2", "layer3", "global_pool", "fc"]
    assert [n for n, _ in model.named_children()] == top
    block = ["conv1", "bn1", "act1", "conv2", "bn2", "act2"]
    assert all(f"layer1.0.{n}" in modules for n in block)
    assert model.layer1[0].downsample is None
    for stage in ("layer2", "layer3"):
        conv, bn = modules[f"{stage}.0.downsample.0"], modules[f"{stage}.0.downsample.1"]
        assert conv.kernel_size == (1, 1) and conv.stride == (2, 2) and isinstance(bn, nn.BatchNorm2d)
    assert [f["module"] for f in model.feature_info] == ["layer1", "layer2", "layer3"]
    assert model.kw_layout == "resnet"


def test_resnet_depth_and_width() -> None:
    """depth sets the blocks per stage and width scales the stage channels (minimum 8)."""
    assert [len(timm.create_model(f"cifar_resnet{d}").layer1) for d in (8, 20, 56)] == [1, 3, 9]
    wide = timm.create_model("cifar_resnet20", width=2.0)
    assert [f["num_chs"] for f in wide.feature_info] == [32, 64, 128]
    narrow = timm.create_model("cifar_resnet20", width=0.25)  # int(16 * 0.25) = 4 is raised to the minimum of 8
    assert [f["num_chs"] for f in narrow.feature_info] == [8, 8, 16]
    with pytest.raises(KWLabError, match="6n"):
        kwlab.models.CifarResNet(depth=21)


@pytest.mark.parametrize("name", MOBILENETS)
def test_mobilenetv2_module_names(name: str) -> None:
    """MobileNetV2 module names follow timm's mobilenetv2_100, which the KW converter relies on."""
    model = timm.create_model(name)
    modules = dict(model.named_modules())
    top = ["conv_stem", "bn1", "blocks", "conv_head", "bn2", "global_pool", "classifier"]
    assert [n for n, _ in model.named_children()] == top
    assert len(model.blocks) == 7 and all(type(group) is nn.Sequential for group in model.blocks)
    assert all(f"blocks.0.0.{n}" in modules for n in ("conv_dw", "bn1", "conv_pw", "bn2"))
    assert "blocks.0.0.conv_pwl" not in modules
    assert all(f"blocks.1.0.{n}" in modules for n in ("conv_pw", "bn1", "conv_dw", "bn2", "conv_pwl", "bn3"))
    for block_name in ("blocks.0.0", "blocks.3.0"):
        dw = modules[f"{block_name}.conv_dw"]
        assert dw.groups == dw.in_channels == dw.out_channels and dw.kernel_size == (3, 3)
    assert [modules[f"blocks.{i}.0.conv_dw"].stride[0] for i in range(7)] == [1, 1, 2, 2, 1, 2, 1]
    assert [f["module"] for f in model.feature_info] == ["blocks.1", "blocks.2", "blocks.4", "blocks.6"]
    assert model.kw_layout == "mobilenetv2"


def test_mobilenetv2_depths_and_residuals() -> None:
    """Group depths of the full and tiny nets, and skips only where stride 1 keeps the channels."""
    full = timm.create_model("cifar_mobilenetv2")
    tiny = timm.create_model("cifar_mobilenetv2_tiny")
    assert [len(group) for group in full.blocks] == [1, 2, 3, 4, 3, 3, 1]
    assert [len(group) for group in tiny.blocks] == [1] * 7
    assert [block.has_skip for block in full.blocks[2]] == [False, True, True]
    assert not any(group[0].has_skip for group in tiny.blocks)
    assert _num_params(tiny) < _num_params(full)


def test_mobilenetv2_width() -> None:
    """width scales channels to multiples of 8 and widens the head only above 1."""
    half = timm.create_model("cifar_mobilenetv2", width=0.5)
    assert half.conv_stem.out_channels == 16 and half.num_features == 1280
    assert [f["num_chs"] for f in half.feature_info] == [16, 16, 48, 160]  # 24 * 0.5 = 12 rounds up to 16
    wide = timm.create_model("cifar_mobilenetv2", width=1.5)
    assert wide.conv_stem.out_channels == 48 and wide.num_features == 1920
