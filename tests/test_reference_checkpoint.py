"""Tests for kwlab.methods.kw.reference_checkpoint: a state dict in the KW reference implementation's format, written
here from the reference's rules (OSVAI/KernelWarehouse modules/kernel_warehouse.py and models/kw_resnet.py,
kw1d2x_mobilenetv2.py, kw_convnext.py, read, not imported), loads into the matching kwlab model.

The reference's rules this file writes out:
- a KW layer is reserved under a name `stage{s}_layer{l}_{conv}{c}`; its sharing range collapses the name into the
  warehouse name; warehouses are numbered in the order their first layer is reserved (`warehouse_manager.weights.i`,
  shape (n, c_out, c_in, *1)); `allocate` then walks the modules in order and gives each layer the next slice;
- a cell's shape is the gcd of the warehouse's output / input channels (per group) times the cell ratios, 1 x 1
  spatially; n = int(cell_num_ratio x the layers' cells); mixture index i runs over (spatial position, output block,
  input block), the last fastest (the reference's permute (0, 2, 4, 3, 5, 1, 6, 7));
- beta (`init_temperature`): for a ratio b >= 1 mixture i points at cell start + i b; for b = 1/k, mixtures with
  i % k == (i // k) % k point at the next cell, the others at the zero cell;
- attention: fc1 (no bias before BatchNorm1d), norm1, fc2 to (n + 1) m logits with bias, or, with a nonlocal basis,
  fc2 to (int(b m) + basis + 1) m without bias, fc3 (basis -> nonlocal cells) and a flat basis_bias ((n + 1) m,);
  hidden = max(int(C_in x reduction), 16).
"""

from __future__ import annotations

import argparse
import copy
import math
from dataclasses import dataclass
from functools import reduce
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

import kwlab
from kwlab.config import load_yaml
from kwlab.errors import KWLabError
from kwlab.methods.kw.reference_checkpoint import load_reference_checkpoint
from kwlab.methods.temperature import set_temperature


PRESETS = Path(__file__).resolve().parents[1] / "configs" / "reference"


@dataclass(frozen=True)
class RefLayer:
    """A KW layer as the reference reserves it: kwlab/timm module name, reference module name, collapsed
    warehouse name, and its reference kind (2: a KWConv2d, 1: a KWLinear, i.e. a KWConv1d under `.conv`)."""

    name: str
    ref: str
    warehouse: str
    dims: int = 2


def randomise(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Distinct values in every parameter and buffer (BN statistics, biases), so misplaced tensors show."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif tensor.is_floating_point():
                scale = 0.1 if name.endswith(("bias", "running_mean")) else tensor.std().nan_to_num(0.1).clamp(min=1e-2)
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * scale)
    return model.eval()


def write_reference_state(static: nn.Module, layers: list[RefLayer], static_key, settings: list[tuple[float, ...]],
                          mixture_tiles, generator: torch.Generator, reduction: float = 1 / 16,
                          layer_norm: bool = False, basis_ratio: float = 1.0):
    """The reference-format state dict of a KW model whose cells hold `static`'s kernels where beta points, plus
    each KW layer's kernel at tau = 1 (the static kernel with the tiles beta sends to the zero cell zeroed).

    `layers` in the order the reference reserves them; `settings[i]` = (cell_num_ratio, cell_in_ratio,
    cell_out_ratio) of warehouse i; `static_key(key)` names a non-KW tensor the reference's way."""
    modules = dict(static.named_modules())
    position = {name: i for i, name in enumerate(modules)}
    state: dict[str, torch.Tensor] = {}
    kernels: dict[str, torch.Tensor] = {}
    order = list(dict.fromkeys(layer.warehouse for layer in layers))
    for index, warehouse in enumerate(order):
        members = sorted((lay for lay in layers if lay.warehouse == warehouse), key=lambda lay: position[lay.name])
        weights = [modules[lay.name].weight.detach() for lay in members]
        groups = [modules[lay.name].groups if hasattr(modules[lay.name], "groups") else 1 for lay in members]
        # the kernel as the reference holds it: a linear is a 1 x 1 conv (KWConv2d) or a kernel-1 KWConv1d
        kernel_shapes = [(*w.shape, *(1,) * (lay.dims + 2 - w.dim())) for w, lay in zip(weights, members)]
        ratio, in_ratio, out_ratio = settings[index]
        c_out = max(int(reduce(math.gcd, (s[0] for s in kernel_shapes)) * out_ratio), 1)
        c_in = max(int(reduce(math.gcd, (s[1] for s in kernel_shapes)) * in_ratio), 1)
        cell = (c_out, c_in, *(1,) * (len(kernel_shapes[0]) - 2))
        tiles = [mixture_tiles(shape, cell) for shape in kernel_shapes]
        n = max(int(sum(len(t) for t in tiles) * ratio), 1)
        cells = torch.randn(n, *cell, generator=generator)
        start = 0
        for lay, weight, shape, layer_tiles, groups_ in zip(members, weights, kernel_shapes, tiles, groups):
            kernel, m = weight.reshape(shape), len(layer_tiles)
            at_tau_one = torch.zeros(shape)
            for i, tile in enumerate(layer_tiles):
                if ratio >= 1:
                    cells[start + i * int(ratio)] = kernel[tile]
                    at_tau_one[tile] = kernel[tile]
                elif i % int(1 / ratio) == (i // int(1 / ratio)) % int(1 / ratio):
                    cells[start] = kernel[tile]
                    at_tau_one[tile] = kernel[tile]
                    start += 1
            if ratio >= 1:
                start += m * int(ratio)
            kernels[lay.name] = at_tau_one.reshape(weight.shape)
            in_channels = weight.shape[1] * groups_
            hidden = max(int(in_channels * reduction), 16)
            prefix = f"{lay.ref}.attention"
            state[f"{prefix}.fc1.weight"] = torch.randn(hidden, in_channels, generator=generator)
            if layer_norm:
                state[f"{prefix}.fc1.bias"] = torch.randn(hidden, generator=generator)
            state[f"{prefix}.norm1.weight"] = torch.rand(hidden, generator=generator) + 0.5
            state[f"{prefix}.norm1.bias"] = torch.randn(hidden, generator=generator)
            if not layer_norm:
                state[f"{prefix}.norm1.running_mean"] = torch.randn(hidden, generator=generator)
                state[f"{prefix}.norm1.running_var"] = torch.rand(hidden, generator=generator) + 0.5
                state[f"{prefix}.norm1.num_batches_tracked"] = torch.tensor(7)
            if basis_ratio >= 1:
                state[f"{prefix}.fc2.weight"] = torch.randn((n + 1) * m, hidden, generator=generator)
                state[f"{prefix}.fc2.bias"] = torch.randn((n + 1) * m, generator=generator)
            else:
                local = int(ratio * m)
                basis = max(int((n - local) * basis_ratio), 16)
                state[f"{prefix}.fc2.weight"] = torch.randn((local + basis + 1) * m, hidden, generator=generator)
                state[f"{prefix}.fc3.weight"] = torch.randn(n - local, basis, generator=generator)
                state[f"{prefix}.basis_bias"] = torch.randn((n + 1) * m, generator=generator)
            if modules[lay.name].bias is not None:
                state[f"{lay.ref}.bias"] = modules[lay.name].bias.detach().clone()
        assert start == n, "the reference asserts that the slices fill the warehouse"
        state[f"warehouse_manager.weights.{index}"] = cells
    kw_names = {lay.name for lay in layers}
    for key, value in static.state_dict().items():
        if key.rpartition(".")[0] not in kw_names:
            ref_key, ref_value = static_key(key, value)
            state[ref_key] = ref_value.clone()
    return state, kernels


def at_tau_one(static: nn.Module, kernels: dict[str, torch.Tensor]) -> nn.Module:
    """`static` with each KW layer's weight replaced by its kernel at tau = 1."""
    model = copy.deepcopy(static)
    with torch.no_grad():
        for name, kernel in kernels.items():
            model.get_submodule(name).weight.copy_(kernel)
    return model


def save(state: dict[str, torch.Tensor], tmp_path) -> str:
    """A checkpoint as the reference's utils.save_model writes it."""
    path = tmp_path / "checkpoint-best.pth"
    torch.save({"model": state, "epoch": 299, "args": argparse.Namespace(model="kw", lr=4e-3)}, path)
    return str(path)


# ---- the reference's layer lists (reserve order, collapsed warehouse names) ----

def resnet18_layers(model: nn.Module) -> list[RefLayer]:
    """kw_resnet.py with sharing ('layer', 'conv'): one warehouse `stage{s}_l_c` per stage; _make_layer reserves a
    stage's downsample (stage s - 1) before its first block, whose conv1 also goes to stage s - 1 (0 for stage 0)."""
    layers = []
    for s in range(4):
        for b, block in enumerate(getattr(model, f"layer{s + 1}")):
            if block.downsample is not None:
                layers.append(RefLayer(f"layer{s + 1}.{b}.downsample.0", f"layer{s + 1}.{b}.downsample.0",
                                       f"stage{s - 1}_l_c"))
            conv1_stage = max(s - 1, 0) if b == 0 else s
            layers.append(RefLayer(f"layer{s + 1}.{b}.conv1", f"layer{s + 1}.{b}.conv1", f"stage{conv1_stage}_l_c"))
            layers.append(RefLayer(f"layer{s + 1}.{b}.conv2", f"layer{s + 1}.{b}.conv2", f"stage{s}_l_c"))
    return layers


MOBILENETV2_STAGES = (1, 2, 3, 4, 5, 6, 6)  # kw_stage_setting of kw_mobilenetv2.py


def mobilenetv2_names(model: nn.Module) -> dict[str, str]:
    """timm module name -> the reference's torchvision-style `features.{k}` name."""
    names = {"conv_stem": "features.0.0", "bn1": "features.0.1", "classifier": "classifier.1"}
    k = 0
    for g, group in enumerate(model.blocks):
        for b, block in enumerate(group):
            k += 1
            parts = (("conv_pw", "0.0"), ("bn1", "0.1"), ("conv_dw", "1.0"), ("bn2", "1.1"), ("conv_pwl", "2"),
                     ("bn3", "3")) if hasattr(block, "conv_pwl") else (("conv_dw", "0.0"), ("bn1", "0.1"),
                                                                       ("conv_pw", "1"), ("bn2", "2"))
            names.update({f"blocks.{g}.{b}.{part}": f"features.{k}.conv.{ref}" for part, ref in parts})
    names.update({"conv_head": f"features.{k + 1}.0", "bn2": f"features.{k + 1}.1"})
    return names


def mobilenetv2_1d2x_layers(model: nn.Module) -> list[RefLayer]:
    """kw1d2x_mobilenetv2.py: sharing tuple('layer') (by role); a group's first block joins the previous stage when
    the stage changes; pointwise convs are KW in stage 6 only; the 1x1 head conv joins stage 6's pwconv1; the
    classifier is a KW linear with a warehouse of its own."""
    names = mobilenetv2_names(model)
    layers = [RefLayer("conv_stem", names["conv_stem"], "stage0_conv0")]
    for g, group in enumerate(model.blocks):
        for b, block in enumerate(group):
            handover = b == 0 and g > 0 and MOBILENETV2_STAGES[g] != MOBILENETV2_STAGES[g - 1]
            stage = MOBILENETV2_STAGES[g] - handover
            pointwise = stage == 6  # pwlinear_enabled[stage - 1]
            parts = [("conv_pw", "pwconv0"), ("conv_dw", "dwconv0"), ("conv_pwl", "pwconv1")] if hasattr(
                block, "conv_pwl") else [("conv_dw", "dwconv0"), ("conv_pw", "pwconv1")]
            for part, kind in parts:
                if kind == "dwconv0" or pointwise:
                    name = f"blocks.{g}.{b}.{part}"
                    layers.append(RefLayer(name, names[name], f"stage{stage}_l_{kind}"))
    layers.append(RefLayer("conv_head", names["conv_head"], "stage6_l_pwconv1"))
    layers.append(RefLayer("classifier", "classifier.1.conv", "classifier", dims=1))
    return layers


# per warehouse, in reserve order: (cell_num_ratio, cell_inplane_ratio, cell_outplane_ratio) of kw1d2x_mobilenetv2.py
MOBILENETV2_1D2X_SETTINGS = list(zip((1, 1, 1, 1, 1, 1, 0.5, 1, 0.5, 0.5), (1, 1, 1, 1, 1, 1, 0.5, 1, 0.5, 0.025),
                                     (1, 1, 1, 1, 1, 1, 0.5, 1, 0.5, 1)))


def convnext_layers(model: nn.Module) -> list[RefLayer]:
    """kw_convnext.py with sharing 'layer_pwconv': the stem and the three downsample convs are reserved first, each
    alone; then per stage the depthwise convs share `stage{s}_l_dwconv0` and both pointwise layers `stage{s}_l_p`
    (KWConv2d 1 x 1)."""
    layers = [RefLayer("stem.0", "downsample_layers.0.0", "stagestem_c")]
    layers += [RefLayer(f"stages.{i}.downsample.1", f"downsample_layers.{i}.1", f"stage{i - 1}_l_c") for i in (1, 2, 3)]
    for s, stage in enumerate(model.stages):
        for j in range(len(stage.blocks)):
            block = f"stages.{s}.blocks.{j}"
            layers += [RefLayer(f"{block}.conv_dw", f"stages.{s}.{j}.dwconv", f"stage{s}_l_dwconv0"),
                       RefLayer(f"{block}.mlp.fc1", f"stages.{s}.{j}.pwconv1", f"stage{s}_l_p"),
                       RefLayer(f"{block}.mlp.fc2", f"stages.{s}.{j}.pwconv2", f"stage{s}_l_p")]
    return layers


def convnext_key(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor]:
    """timm ConvNeXt tensor -> the reference's name (and its (1, C, 1, 1) layer scale)."""
    parts = key.split(".")
    if parts[0] == "stem":
        return f"downsample_layers.0.{parts[1]}.{parts[2]}", value
    if parts[0] == "head":
        return {"norm": "norm", "fc": "head"}[parts[1]] + f".{parts[2]}", value
    if parts[2] == "downsample":
        return f"downsample_layers.{parts[1]}.{parts[3]}.{parts[4]}", value
    if parts[-1] == "gamma":
        return f"stages.{parts[1]}.{parts[3]}.gamma", value.reshape(1, -1, 1, 1)
    return f"stages.{parts[1]}.{parts[3]}.{'.'.join(parts[4:])}", value


# ---- tests ----

def check_tau_one(kw_model: nn.Module, static: nn.Module, kernels: dict, size: int, generator) -> None:
    set_temperature(kw_model, 1.0)
    x = torch.randn(2, 3, size, size, generator=generator)
    with torch.no_grad():
        expected = at_tau_one(static, kernels)(x)
        assert torch.allclose(kw_model.eval()(x), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kw,settings,basis", [
    ({"budget": 1}, [(1, 1, 1)] * 4, 1.0),
    ({"budget": "1/2", "cell_in_ratio": 0.5, "cell_out_ratio": 0.5, "nonlocal_basis_ratio": 0.0625},
     [(0.5, 0.5, 0.5)] * 4, 0.0625),
], ids=["1x", "1/2x-basis"])
def test_resnet18_reference_checkpoint_round_trip(kw, settings, basis, mixture_tiles, generator, tmp_path):
    static = randomise(timm.create_model("resnet18", num_classes=10), generator)
    layers = resnet18_layers(static)
    state, kernels = write_reference_state(static, layers, lambda k, v: (k, v), settings, mixture_tiles, generator,
                                           basis_ratio=basis)
    model = kwlab.create_model("resnet18", kw=kw, num_classes=10)
    assert load_reference_checkpoint(model, save(state, tmp_path)) is model

    loaded = model.state_dict()
    assert {float(t) for k, t in loaded.items() if k.endswith(".tau")} == {0.0}  # the reference evaluates at tau 0
    for s in range(4):  # warehouse i of the reference is stage i's
        reference = state[f"warehouse_manager.weights.{s}"]
        assert torch.equal(model.kw_warehouses[f"stage{s}_dense"].cells, reference.flatten(1))
    for name in ("layer1.0.conv1", "layer2.0.downsample.0", "layer4.1.conv2"):
        ref, ours = f"{name}.attention", f"{name}.attention"
        assert torch.equal(loaded[f"{ours}.norm.running_mean"], state[f"{ref}.norm1.running_mean"])
        assert torch.equal(loaded[f"{ours}.fc1.weight"], state[f"{ref}.fc1.weight"])
        if basis < 1:
            assert torch.equal(loaded[f"{ours}.basis.weight"], state[f"{ref}.fc3.weight"])
            assert torch.equal(loaded[f"{ours}.basis_bias"].flatten(), state[f"{ref}.basis_bias"])
        else:
            assert torch.equal(loaded[f"{ours}.fc2.bias"], state[f"{ref}.fc2.bias"])
    assert torch.equal(loaded["bn1.running_var"], state["bn1.running_var"])
    assert torch.equal(loaded["fc.weight"], state["fc.weight"])
    check_tau_one(model, static, kernels, 32, generator)


def test_mobilenetv2_1d2x_reference_checkpoint_round_trip(mixture_tiles, generator, tmp_path):
    """Per-warehouse cell settings, static pointwise convs in stages 1-5 and the KW classifier (`classifier.1.conv`)."""
    static = randomise(timm.create_model("mobilenetv2_050", num_classes=1000), generator)
    names = mobilenetv2_names(static)

    def static_key(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor]:
        module, _, leaf = key.rpartition(".")
        return f"{names[module]}.{leaf}", value

    layers = mobilenetv2_1d2x_layers(static)
    state, kernels = write_reference_state(static, layers, static_key, MOBILENETV2_1D2X_SETTINGS, mixture_tiles,
                                           generator, reduction=1 / 32)
    kw = load_yaml(PRESETS / "kw1d2x_mobilenetv2_050.yaml")["kw"]  # the preset's KW section
    model = kwlab.create_model("mobilenetv2_050", kw=kw, num_classes=1000)
    load_reference_checkpoint(model, save(state, tmp_path))

    loaded = model.state_dict()
    assert torch.equal(loaded["classifier.attention.fc1.weight"], state["classifier.1.conv.attention.fc1.weight"])
    assert torch.equal(loaded["classifier.bias"], state["classifier.1.conv.bias"])
    assert torch.equal(model.kw_warehouses["classifier"].cells, state["warehouse_manager.weights.9"].flatten(1))
    assert torch.equal(loaded["blocks.1.0.conv_pw.weight"], state["features.2.conv.0.0.weight"])  # static pointwise
    assert torch.equal(loaded["blocks.6.0.bn3.running_mean"], state["features.17.conv.3.running_mean"])
    assert torch.equal(loaded["bn2.weight"], state["features.18.1.weight"])
    check_tau_one(model, static, kernels, 32, generator)


def test_convnext_reference_checkpoint_round_trip(mixture_tiles, generator, tmp_path):
    """LayerNorm attentions, KW biases, the reference's warehouse order (stem and downsamples first) and its 4-D layer
    scale; convnext_atto has the released ConvNeXt's structure at a fraction of the size."""
    static = randomise(timm.create_model("convnext_atto", conv_mlp=False, num_classes=10), generator)
    state, kernels = write_reference_state(static, convnext_layers(static), convnext_key, [(1, 1, 1)] * 12,
                                           mixture_tiles, generator, layer_norm=True)
    model = kwlab.create_model("convnext_atto", kw={"budget": 1}, conv_mlp=False, num_classes=10)
    load_reference_checkpoint(model, save(state, tmp_path))

    loaded = model.state_dict()
    assert torch.equal(model.kw_warehouses["stagedownsample1_dense"].cells,
                       state["warehouse_manager.weights.1"].flatten(1))
    assert torch.equal(model.kw_warehouses["stage0_dense"].cells, state["warehouse_manager.weights.5"].flatten(1))
    assert torch.equal(loaded["stages.2.blocks.3.mlp.fc1.bias"], state["stages.2.3.pwconv1.bias"])
    assert torch.equal(loaded["stages.2.blocks.3.mlp.fc1.attention.fc1.bias"],
                       state["stages.2.3.pwconv1.attention.fc1.bias"])
    assert torch.equal(loaded["stages.1.blocks.0.gamma"], state["stages.1.0.gamma"].flatten())
    assert torch.equal(loaded["head.fc.weight"], state["head.weight"])
    check_tau_one(model, static, kernels, 64, generator)


def test_mismatches_name_the_first_tensor_that_does_not_fit(mixture_tiles, generator, tmp_path):
    static = randomise(timm.create_model("resnet18", num_classes=10), generator)
    state, _ = write_reference_state(static, resnet18_layers(static), lambda k, v: (k, v), [(1, 1, 1)] * 4,
                                     mixture_tiles, generator)
    model = kwlab.create_model("resnet18", kw={"budget": 1}, num_classes=10)
    wrong_budget = kwlab.create_model("resnet18", kw={"budget": 2}, num_classes=10)
    with pytest.raises(KWLabError, match=r"'warehouse_manager\.weights\.0' has shape \(56, 64, 64, 1, 1\)"):
        load_reference_checkpoint(wrong_budget, save(state, tmp_path))
    missing = {k: v for k, v in state.items() if k != "layer3.1.conv2.attention.fc2.weight"}
    with pytest.raises(KWLabError, match=r"no tensor 'layer3\.1\.conv2\.attention\.fc2\.weight'"):
        load_reference_checkpoint(model, save(missing, tmp_path))
    extra = {**state, "layer9.conv.weight": torch.zeros(1)}
    with pytest.raises(KWLabError, match=r"'layer9\.conv\.weight' has no place"):
        load_reference_checkpoint(model, save(extra, tmp_path))
    with pytest.raises(KWLabError, match="no such file"):
        load_reference_checkpoint(model, tmp_path / "absent.pth")


def test_kwlab_train_starts_from_an_authors_checkpoint(mixture_tiles, generator, tmp_path):
    """`kwlab train --init-from-reference PATH`: the trial's model starts from the reference checkpoint (a learning
    rate of 1e-12 leaves the loaded warehouse where it was), and the trial runs to its end."""
    import yaml

    from kwlab import store
    from kwlab.cli import main

    static = randomise(timm.create_model("resnet18", num_classes=10), generator)
    state, _ = write_reference_state(static, resnet18_layers(static), lambda k, v: (k, v), [(1, 1, 1)] * 4,
                                     mixture_tiles, generator)
    config = tmp_path / "trial.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"name": "resnet18", "kwargs": {}, "init": "timm"}, "kw": {"budget": 1},
        "data": {"name": "synthetic", "shape": [3, 32, 32], "num_classes": 10, "length": 60},
        "optim": {"lr": 1e-12, "warmup_epochs": 0, "weight_decay": 0.0}, "epochs": 1, "batch_size": 8,
        "runtime": {"device": "cpu"}}))
    out = tmp_path / "trial"
    assert main(["train", str(config), "--init-from-reference", save(state, tmp_path), "--out", str(out)]) == 0
    trial = store.TrialDir(out)
    assert trial.status() == "finished"
    assert trial.config()["model"]["init_from_reference"].endswith(".pth")
    weights = torch.load(trial.file(store.BEST), weights_only=True)  # lr 1e-12: the best epoch's are the loaded ones
    for s in range(4):
        torch.testing.assert_close(weights[f"kw_warehouses.stage{s}_dense.cells"],
                                   state[f"warehouse_manager.weights.{s}"].flatten(1), rtol=0, atol=1e-6)
