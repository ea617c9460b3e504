"""Tests for kwlab.convert: weight-preserving conversion, gradients, state handling, budgets and layouts."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.utils import ModelEmaV2, ModelEmaV3
from torch import nn

import kwlab
from kwlab.methods.selection import input_size
from kwlab.errors import KWLabError
from kwlab.methods.attention import BatchNorm1dAnyBatch
from kwlab.methods.kw.attention import KWAttention
from kwlab.methods.kw.layers import KWLayer, KWLinear

# Models exercising every reference layout and the auto layout, at a small input (their native one for the ViT).
MODELS = {
    "resnet18": (3, 64, 64),  # reference layout, BasicBlock
    "mobilenetv2_050": (3, 64, 64),  # reference layout, depthwise warehouses
    "convnext_atto": (3, 64, 64),  # reference layout, LayerNorm attention, KWLinear on NHWC tokens (conv_mlp off)
    "test_vit": None,  # auto layout, KWLinear on tokens; None: native input size
}
TIMM_KWARGS = {
    "resnet18": {"zero_init_last": False},  # timm's zero-init of each block's last norm would starve branches of grads
    "convnext_atto": {"conv_mlp": False},  # the released ConvNeXt's nn.Linear MLP, as convnext_tiny has
}


def kw_model(name: str, kw) -> nn.Module:
    return kwlab.create_model(name, kw=kw, **TIMM_KWARGS.get(name, {}))


def make_input(name: str, batch: int = 2, generator: torch.Generator | None = None) -> torch.Tensor:
    shape = MODELS.get(name) or input_size(timm.create_model(name, pretrained=False))
    return torch.randn(batch, *shape, generator=generator)


def kw_layers(model: nn.Module) -> dict[str, KWLayer]:
    return {name: module for name, module in model.named_modules() if isinstance(module, KWLayer)}


def source_and_converted(name: str, kw) -> tuple[nn.Module, nn.Module]:
    """A timm model (eval) and a KernelWarehouse copy of it (eval)."""
    source = timm.create_model(name, pretrained=False, **TIMM_KWARGS.get(name, {})).eval()
    return source, kwlab.convert(copy.deepcopy(source), kw).eval()


def max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


# ---- weight-preserving conversion ----

@pytest.mark.parametrize("name,budget", [(name, b) for name in MODELS for b in (1, 2)] + [("resnet18", 1.5)])
def test_tau_one_reproduces_the_source_model(name, budget, generator):
    source, model = source_and_converted(name, {"budget": budget})
    assert kw_layers(model), "nothing was converted"
    x = make_input(name, generator=generator)
    with torch.no_grad():
        expected, as_built = source(x), model(x)
        kwlab.set_temperature(model, 1.0)  # what a trainer's schedule does at step 0
        after_set = model(x)
    tolerance = 1e-4 * float(expected.abs().max())
    torch.testing.assert_close(as_built, expected, rtol=0, atol=tolerance)
    torch.testing.assert_close(after_set, expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize("name", MODELS)
def test_budget_below_one_does_not_reproduce_the_source(name, generator):
    """Sanity check of the test above: with b = 1/2 half the mixtures start on the zero cell."""
    source, model = source_and_converted(name, {"budget": 0.5})
    x = make_input(name, generator=generator)
    with torch.no_grad():
        expected, out = source(x), model(x)
    assert torch.isfinite(out).all()
    assert max_error(out, expected) > 1e-2 * float(expected.abs().max())


def test_create_model_without_kw_is_the_plain_timm_model():
    model = kwlab.create_model("resnet18", kw=None)
    reference = timm.create_model("resnet18", pretrained=False)
    assert type(model) is type(reference)
    assert not hasattr(model, "kw_warehouses") and not kw_layers(model)
    assert [(k, v.shape) for k, v in model.state_dict().items()] == [
        (k, v.shape) for k, v in reference.state_dict().items()]


def test_create_model_with_kw_converts():
    model = kwlab.create_model("resnet18", kw={"budget": 2}, num_classes=10)
    assert model.fc.out_features == 10 and type(model.fc) is nn.Linear  # classifier stays static
    assert model.kw_config.budget == 2.0
    assert set(kw_layers(model)) == {layer.spec.name for layer in model.kw_plan.layers}
    assert sum(p.numel() for p in model.parameters()) == model.kw_plan.params


def test_convnext_reference_layout_converts_the_linear_mlp_with_layernorm_attention():
    model = kw_model("convnext_atto", {"budget": 1})
    assert isinstance(model.stages[0].blocks[0].mlp.fc1, KWLinear)
    assert isinstance(model.stages[0].blocks[0].mlp.fc1.attention.norm, nn.LayerNorm)
    assert type(model.head.fc) is nn.Linear


# ---- every cell reachable ----

@pytest.mark.parametrize("name,budget,attention", [(name, 0.5, "caf") for name in MODELS]
                         + [("resnet18", 1, "softmax"), ("resnet18", 2, "sigmoid")])
def test_every_cell_and_parameter_gets_a_gradient(name, budget, attention, generator):
    """b = 1/2 included: cells no mixture starts on are still reachable through the attention."""
    model = kw_model(name, {"budget": budget, "attention": attention}).train()
    assert kwlab.set_temperature(model, 0.5) == len(kw_layers(model))
    model(make_input(name, generator=generator)).square().mean().backward()
    for key, warehouse in model.kw_warehouses.items():
        dead = (warehouse.cells.grad.abs().sum(1) == 0).nonzero().flatten().tolist()
        assert not dead, f"warehouse {key}: cells {dead} received no gradient"
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"parameters without a gradient: {missing}"


# ---- state: state_dict, deepcopy, dtype, memory format, EMA ----

@pytest.fixture
def resnet18_kw() -> nn.Module:
    """A converted resnet18 at tau = 0.5 in eval mode (attention depends on the input)."""
    model = kwlab.create_model("resnet18", kw={"budget": 1}).eval()
    kwlab.set_temperature(model, 0.5)
    return model


def test_state_dict_round_trip_keeps_tau_and_beta(generator):
    model = kwlab.create_model("resnet18", kw={"budget": 1}).eval()
    kwlab.set_temperature(model, 0.37)
    conv = model.layer1[0].conv1.attention
    conv.beta.copy_(conv.beta.roll(1, dims=0))  # a beta no fresh model has: proves beta is saved, not rebuilt
    fresh = kwlab.create_model("resnet18", kw={"budget": 1}).eval()
    x = make_input("resnet18", generator=generator)
    with torch.no_grad():
        expected = model(x)
        assert max_error(fresh(x), expected) > 1e-3  # different init and tau before loading
        fresh.load_state_dict(model.state_dict())
        out = fresh(x)
    taus = [float(m.tau) for m in fresh.modules() if isinstance(m, KWAttention)]
    assert taus == pytest.approx([0.37] * len(kw_layers(model)))
    assert torch.equal(fresh.layer1[0].conv1.attention.beta, conv.beta)
    torch.testing.assert_close(out, expected)


def test_shared_warehouse_appears_once_in_state_dict(resnet18_kw):
    keys = list(resnet18_kw.state_dict())
    assert [k for k in keys if k.endswith("cells")] == [f"kw_warehouses.{k}.cells" for k in resnet18_kw.kw_warehouses]
    assert not [k for k in keys if ".warehouse." in k]
    assert len(resnet18_kw.kw_warehouses) == 4
    assert all(f"{name}.attention.tau" in keys and f"{name}.attention.beta" in keys for name in kw_layers(resnet18_kw))


def assert_layers_use_own_warehouses(model: nn.Module) -> None:
    """Each KW layer points at the warehouse its plan names, held by this model's kw_warehouses."""
    for layer in model.kw_plan.layers:
        held = model.kw_warehouses[layer.warehouse.replace(".", "_")]
        assert model.get_submodule(layer.spec.name).warehouse is held, layer.spec.name


def test_deepcopy_keeps_tau_and_rewires_the_shared_warehouses(resnet18_kw, generator):
    clone = copy.deepcopy(resnet18_kw)
    assert clone.layer1[0].conv1.warehouse is clone.kw_warehouses["stage0_dense"]
    assert clone.layer1[0].conv1.warehouse is not resnet18_kw.kw_warehouses["stage0_dense"]
    assert_layers_use_own_warehouses(clone)
    assert all(float(m.tau) == 0.5 for m in clone.modules() if isinstance(m, KWAttention))
    x = make_input("resnet18", generator=generator)
    with torch.no_grad():
        expected = resnet18_kw(x)
        torch.testing.assert_close(clone(x), expected, rtol=0, atol=0)
        for warehouse in clone.kw_warehouses.values():
            warehouse.cells.mul_(2)
        assert max_error(clone(x), expected) > 1e-3  # the copy's layers read the copy's cells ...
        torch.testing.assert_close(resnet18_kw(x), expected, rtol=0, atol=0)  # ... and the original is untouched


def test_to_float64_moves_cells_beta_and_tau(resnet18_kw, generator):
    x = make_input("resnet18", generator=generator)
    with torch.no_grad():
        expected = resnet18_kw(x)
        resnet18_kw.to(torch.float64)
        out = resnet18_kw(x.double())
    assert all(w.cells.dtype == torch.float64 for w in resnet18_kw.kw_warehouses.values())
    for module in resnet18_kw.modules():
        if isinstance(module, KWAttention):
            assert module.beta.dtype == module.tau.dtype == torch.float64
    assert all(layer.warehouse.cells.dtype == torch.float64 for layer in kw_layers(resnet18_kw).values())
    assert out.dtype == torch.float64
    torch.testing.assert_close(out.float(), expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_channels_last(resnet18_kw, generator):
    x = make_input("resnet18", generator=generator)
    with torch.no_grad():
        expected = resnet18_kw(x)
        resnet18_kw.to(memory_format=torch.channels_last)
        out = resnet18_kw(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("ema_type", [ModelEmaV2, ModelEmaV3])
def test_ema_updates_the_shared_warehouse_once(ema_type, resnet18_kw, generator):
    ema = ema_type(resnet18_kw, decay=0.5)
    assert_layers_use_own_warehouses(ema.module)
    before = {k: w.cells.detach().clone() for k, w in ema.module.kw_warehouses.items()}
    with torch.no_grad():
        for warehouse in resnet18_kw.kw_warehouses.values():
            warehouse.cells.add_(torch.randn(warehouse.cells.shape, generator=generator))
    ema.update(resnet18_kw)
    for key, warehouse in ema.module.kw_warehouses.items():
        expected = torch.lerp(before[key], resnet18_kw.kw_warehouses[key].cells.detach(), 0.5)
        torch.testing.assert_close(warehouse.cells, expected, msg=f"warehouse {key} is not averaged exactly once")


def tau_set_by_hand(model: nn.Module, tau: float) -> None:
    """Write the tau buffers directly, as load_state_dict, an EMA or user code may, bypassing set_temperature."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, KWAttention):
                module.tau.copy_(torch.tensor(tau))


def output_at(model: nn.Module, tau: float, x: torch.Tensor) -> torch.Tensor:
    """The output of a copy of `model` with tau set through the public API."""
    reference = copy.deepcopy(model)
    kwlab.set_temperature(reference, tau)
    with torch.no_grad():
        return reference(x)


def test_output_follows_the_tau_buffer(generator):
    """tau is module state: after set_temperature(1), a tau written into the buffers is the tau the layers use."""
    model = kwlab.create_model("resnet18", kw={"budget": 1}).eval()
    kwlab.set_temperature(model, 1.0)
    tau_set_by_hand(model, 0.5)
    x = make_input("resnet18", generator=generator)
    with torch.no_grad():
        out = model(x)
    expected = output_at(model, 0.5, x)
    assert max_error(expected, output_at(model, 1.0, x)) > 1e-3  # tau 0.5 and 1 differ, so the check can fail
    torch.testing.assert_close(out, expected)


def test_ema_of_a_model_whose_tau_anneals_uses_the_averaged_tau(generator):
    """The trainer's case: EMA made at tau = 1, the schedule lowers tau, the EMA's averaged tau must be used."""
    model = kwlab.create_model("resnet18", kw={"budget": 1}).eval()
    kwlab.set_temperature(model, 1.0)
    ema = ModelEmaV3(model, decay=0.5)
    kwlab.set_temperature(model, 0.0)
    ema.update(model)
    taus = {float(m.tau) for m in ema.module.modules() if isinstance(m, KWAttention)}
    assert taus == {0.5}
    x = make_input("resnet18", generator=generator)
    with torch.no_grad():
        out = ema.module(x)
    torch.testing.assert_close(out, output_at(ema.module, 0.5, x))


# ---- training ----

@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2_050"])
def test_batch_size_one_training_step(name, generator):
    model = kw_model(name, {"budget": 1}).train()
    assert all(isinstance(m.norm, BatchNorm1dAnyBatch) for m in model.modules() if isinstance(m, KWAttention))
    kwlab.set_temperature(model, 0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, target = make_input(name, batch=1, generator=generator), torch.tensor([3])  # 1000 classes
    for _ in range(2):
        loss = F.cross_entropy(model(x), target)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ---- budgets ----

def beta_targets(attention: KWAttention) -> list[int]:
    """The cell each mixture's one-hot beta row points at (n = the zero cell); asserts the rows are one-hot."""
    beta = attention.beta
    assert ((beta == 0) | (beta == 1)).all() and (beta.sum(1) == 1).all()
    return beta.argmax(1).tolist()


@pytest.mark.parametrize("budget", [0.3, 0.75, 1.5, 3])
def test_any_positive_budget_builds_and_runs(budget, generator):
    model = kwlab.create_model("resnet18", kw={"budget": budget}).eval()
    with torch.no_grad():
        out = model(make_input("resnet18", generator=generator))
    assert out.shape == (2, 1000) and torch.isfinite(out).all()

    slices: dict[int, list[tuple[int, int]]] = {}
    for name, layer in kw_layers(model).items():
        attention = layer.attention
        m, n, start, own = attention.mixtures, attention.cells, attention.own_start, attention.own_cells
        slices.setdefault(id(layer.warehouse), []).append((start, own))
        targets = beta_targets(attention)
        chosen = [t for t in targets if t != n]
        assert all(start <= t < start + own for t in chosen), name
        assert len(set(chosen)) == len(chosen) == min(m, own), name  # distinct own cells
        if budget >= 1:
            assert len(chosen) == m, name  # no mixture on the zero cell
    for warehouse in model.kw_warehouses.values():  # own slices partition every warehouse
        parts = sorted(slices[id(warehouse)])
        assert parts[0][0] == 0 and sum(c for _, c in parts) == warehouse.num_cells
        assert all(a + c == b for (a, c), (b, _) in zip(parts, parts[1:], strict=False))


@pytest.mark.parametrize("k", [2, 4])
def test_one_over_k_budget_follows_the_reference_rule(k):
    model = kwlab.create_model("resnet18", kw={"budget": f"1/{k}", "cell_in_ratio": 0.5, "cell_out_ratio": 0.5})
    checked = 0
    for name, layer in kw_layers(model).items():
        attention = layer.attention
        m, n, start = attention.mixtures, attention.cells, attention.own_start
        if m % k or attention.own_cells != m // k:
            continue
        expected = [start + i // k if i % k == (i // k) % k else n for i in range(m)]
        assert beta_targets(attention) == expected, name
        checked += 1
    assert checked >= 10


# ---- layouts ----

def test_auto_layout_on_a_vit(generator):
    source, model = source_and_converted("vit_tiny_patch16_224", {"layout": "auto"})
    layers = kw_layers(model)
    assert len(layers) == 48 and all(isinstance(layer, KWLinear) for layer in layers.values())  # qkv/proj/fc1/fc2
    assert set(model.kw_plan.static_layers) == {"patch_embed.proj", "head"}
    assert model.kw_config.attention_norm == "layer"  # no BatchNorm in a ViT
    x = torch.randn(1, 3, 224, 224, generator=generator)
    with torch.no_grad():
        expected = source(x)
        torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-4 * float(expected.abs().max()))


def test_default_layout_falls_back_to_auto_for_models_without_a_reference():
    name = "vit_tiny_patch16_224"
    assert kwlab.plan(name).to_dict() == kwlab.plan(name, {"layout": "auto"}).to_dict()


def test_auto_layout_keeps_squeeze_excite_static():
    result = kwlab.plan("efficientnet_b0", {"layout": "auto"})
    gates = {name for name in result.static_layers if ".se." in name}
    assert len(gates) == 2 * 16  # conv_reduce and conv_expand of each of the 16 blocks
    assert set(result.static_layers) == gates | {"conv_stem", "classifier"}
    assert not any(".se." in layer.spec.name for layer in result.layers)


def test_reference_layout_on_a_vit_is_a_clear_error():
    with pytest.raises(KWLabError) as raised:
        kwlab.plan("vit_tiny_patch16_224", {"layout": "reference"})
    message = str(raised.value)
    assert "\n" not in message
    assert "kw.layout" in message and "VisionTransformer" in message
    assert "'resnet'" in message and "'mobilenetv2'" in message and "'convnext'" in message
    assert "None" not in message, f"message reads as garbled: {message!r}"


# ---- bad input ----

def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(KWLabError) as raised:
        kwlab.create_model("resnet_nonexistent", kw={"budget": 1})
    message = str(raised.value)
    assert "\n" not in message and "'resnet_nonexistent'" in message and "timm" in message


@pytest.mark.parametrize("kw,needle", [({"budget": -1}, "kw.budget"), ({"budget": "abc"}, "kw.budget"),
                                       ({"sharing": "everything"}, "kw.sharing"), ({"attention": "x"}, "kw.attention"),
                                       ({"cell_in_ratio": 0.3}, "kw.cell_in_ratio"), ({"bugdet": 1}, r"kw\.bugdet: unknown key")])
def test_create_model_rejects_bad_kw(kw, needle):
    with pytest.raises(KWLabError, match=needle):
        kwlab.create_model("resnet18", kw=kw)


def test_converting_twice_is_rejected():
    model = kwlab.create_model("resnet18", kw={"budget": 1})
    with pytest.raises(KWLabError, match="already a KernelWarehouse model"):
        kwlab.convert(model, {"budget": 1})


def test_oversized_plan_is_refused_before_allocating():
    with torch.device("meta"):
        model = timm.create_model("resnet50", pretrained=False)
    with pytest.raises(KWLabError, match="parameters"):
        kwlab.convert(model, {"budget": 4, "sharing": "network"})
    assert not hasattr(model, "kw_warehouses")
