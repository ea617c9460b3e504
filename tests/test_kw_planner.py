"""Tests for kwlab.methods.kw.planner: parity with the reference implementation's parameter counts, and the planning rules."""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path

import pytest
import timm
from torch import nn

import kwlab
from kwlab.errors import KWLabError
from kwlab.methods.kw.planner import (
    LayerSpec,
    cell_shape,
    group_layers,
    initial_assignment,
    own_slices,
    warehouse_size,
)

# Golden parameter counts (num_classes=1000) computed by running the reference implementation, OSVAI/KernelWarehouse
# (modules/kernel_warehouse.py @ b1a852ce, models @ 4965750, configs/*.json), with timm 1.0.31.
REFERENCE_PARAMS = {
    "resnet18-1x-stage": ("resnet18", {"budget": 1}, 11_932_148),
    "resnet18-2x-stage": ("resnet18", {"budget": 2}, 23_242_127),
    "resnet18-4x-stage": ("resnet18", {"budget": 4}, 45_862_085),
    "resnet18-1/2x-cells1/2": ("resnet18", {"budget": "1/2", "cell_in_ratio": 0.5, "cell_out_ratio": 0.5},
                               7_431_044),
    "resnet18-1/4x-cells1/2": ("resnet18", {"budget": "1/4", "cell_in_ratio": 0.5, "cell_out_ratio": 0.5},
                               4_031_768),
    "resnet50-1x-stage": ("resnet50", {"budget": 1}, 28_052_310),
    "resnet50-4x-stage": ("resnet50", {"budget": 4}, 102_015_144),
    "resnet50-1/2x-cells1/2-basis": ("resnet50", {"budget": "1/2", "cell_in_ratio": 0.5, "cell_out_ratio": 0.5,
                                                  "nonlocal_basis_ratio": 0.0625}, 17_638_264),
    "mobilenetv2_100-1x-stage": ("mobilenetv2_100", {"budget": 1}, 5_168_146),
    "mobilenetv2_100-4x-role": ("mobilenetv2_100", {"budget": 4, "sharing": "role"}, 11_379_382),
    "mobilenetv2_050-1x-stage": ("mobilenetv2_050", {"budget": 1}, 2_854_522),
    "mobilenetv2_050-4x-role": ("mobilenetv2_050", {"budget": 4, "sharing": "role"}, 4_648_587),
    "convnext_tiny-1x-stage": ("convnext_tiny", {"budget": 1}, 39_370_674),
}


@pytest.mark.parametrize("name,kw,expected", REFERENCE_PARAMS.values(), ids=REFERENCE_PARAMS.keys())
def test_parameter_count_matches_the_reference_implementation(name, kw, expected):
    result = kwlab.plan(name, kw, num_classes=1000)
    assert result.params == expected
    assert result.params == result.warehouse_params + result.attention_params + result.other_params


def test_resnet18_1x_warehouses_match_the_reference():
    """Reference resnet18 1x: one warehouse per stage, n = 56, 47, 47, 27, cells of the stage width squared x 1x1."""
    warehouses = kwlab.plan("resnet18", {"budget": 1}).warehouses
    assert [w.cells for w in warehouses] == [56, 47, 47, 27]
    assert [w.cell_shape for w in warehouses] == [(c, c, 1, 1) for c in (64, 128, 256, 512)]
    # stage s's warehouse also serves the hand-over layers of stage s+1's first block
    assert warehouses[0].layers == ("layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1", "layer1.1.conv2",
                                    "layer2.0.conv1", "layer2.0.downsample.0")
    assert warehouses[0].mixtures == (9, 9, 9, 9, 18, 2)  # n = 1 x 56 cells
    assert warehouses[3].layers == ("layer4.0.conv2", "layer4.1.conv1", "layer4.1.conv2")


def test_resnet50_1x_static_layers():
    """Bottleneck nets leave layer1.0.conv1 and the stride-1 downsample of layer1 static, like stem and classifier."""
    static = kwlab.plan("resnet50", {"budget": 1}).static_layers
    assert set(static) == {"conv1", "layer1.0.conv1", "layer1.0.downsample.0", "fc"}


def test_convnext_tiny_1x_stem_and_downsamples_have_their_own_warehouse():
    result = kwlab.plan("convnext_tiny", {"budget": 1})
    alone = {w.layers[0] for w in result.warehouses if len(w.layers) == 1}
    assert alone == {"stem.0", "stages.1.downsample.1", "stages.2.downsample.1", "stages.3.downsample.1"}
    assert result.static_layers == ("head.fc",)
    for stage, depth in enumerate((3, 3, 9, 3)):  # per stage: depthwise convs together, pointwise layers together
        members = {w.layers for w in result.warehouses if w.layers[0].startswith(f"stages.{stage}.blocks.")}
        assert members == {tuple(f"stages.{stage}.blocks.{b}.conv_dw" for b in range(depth)),
                           tuple(f"stages.{stage}.blocks.{b}.mlp.{fc}" for b in range(depth) for fc in ("fc1", "fc2"))}


def _real_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("budget", ["1/4", 4])
def test_plan_equals_the_built_model_resnet18(budget):
    kw = {"budget": budget}
    assert _real_params(kwlab.create_model("resnet18", kw=kw)) == kwlab.plan("resnet18", kw).params


with contextlib.suppress(ImportError):
    import kwlab.models  # noqa: F401  (registers kwlab's cifar_* models with timm)
SMALL_MODELS = [n for n in ("cifar_resnet8", "cifar_mobilenetv2_tiny") if timm.is_model(n)]
SMALL_MODELS = SMALL_MODELS or timm.list_models("cifar_*")[:2]


@pytest.mark.skipif(not SMALL_MODELS, reason="kwlab.models registers no cifar_* model")
@pytest.mark.parametrize("name", SMALL_MODELS or ["none"])
@pytest.mark.parametrize("kw", [{"budget": 1}, {"budget": "1/2", "sharing": "role"}], ids=["1x", "1/2x-role"])
def test_plan_equals_the_built_model_small(name, kw):
    assert _real_params(kwlab.create_model(name, kw=kw)) == kwlab.plan(name, kw).params


# ---- sharing ranges on resnet18 (reference layout) ----

RESNET18 = kwlab.plan("resnet18", {"sharing": "none"})
SPECS = {layer.spec.name: layer.spec for layer in RESNET18.layers}


def _warehouses(sharing) -> list[tuple[str, ...]]:
    return [w.layers for w in kwlab.plan("resnet18", {"sharing": sharing}).warehouses]


def test_sharing_none_gives_each_layer_its_own_warehouse():
    assert _warehouses("none") == [(name,) for name in SPECS]
    assert len(SPECS) == 19  # 16 block convs + 3 downsamples


def test_sharing_role_groups_by_stage_and_role():
    groups = _warehouses("role")
    keys = [{(SPECS[name].stage, SPECS[name].role) for name in members} for members in groups]
    assert all(len(k) == 1 for k in keys)  # one (stage, role) per warehouse ...
    assert len({next(iter(k)) for k in keys}) == len(groups) == 8  # ... and one warehouse per (stage, role)
    assert ("layer1.0.conv1", "layer1.1.conv1", "layer2.0.conv1", "layer2.0.downsample.0") in groups


def test_sharing_stage_gives_four_warehouses():
    groups = _warehouses("stage")
    assert len(groups) == 4
    assert [{SPECS[name].stage for name in members} for members in groups] == [{"0"}, {"1"}, {"2"}, {"3"}]


def test_sharing_network_gives_one_warehouse():
    assert _warehouses("network") == [tuple(SPECS)]


def test_sharing_integer_chunks_neighbours_within_a_stage():
    groups = _warehouses(2)
    stage_members = {stage: [n for n in SPECS if SPECS[n].stage == stage] for stage in "0123"}
    expected = [tuple(members[i : i + 2]) for members in stage_members.values() for i in range(0, len(members), 2)]
    assert sorted(groups) == sorted(expected)
    assert len(groups) == 11  # stages of 6, 5, 5 and 3 layers


# ---- planning rules ----

@pytest.mark.parametrize("ms,n", [((9, 9, 9, 9, 18, 2), 56), ((9, 9, 9, 9, 18, 2), 28), ((9, 9, 9, 9, 18, 2), 14),
                                  ((9, 9, 18, 2), 114), ((3, 7, 1), 3), ((1, 1, 1), 1), ((36, 4, 36), 23)])
def test_own_slices_partition_the_warehouse(ms, n):
    slices = own_slices(ms, n)
    assert len(slices) == len(ms)
    assert [start for start, _ in slices] == list(itertools.accumulate([0] + [c for _, c in slices[:-1]]))
    assert sum(c for _, c in slices) == n


@pytest.mark.parametrize("budget", [1, 2, 4])
def test_own_slices_are_the_reference_slices_for_integer_budgets(budget):
    """Reference: layer l owns [b * M_<l, b * M_<=l)."""
    ms = (9, 9, 9, 9, 18, 2)
    bounds = [budget * sum(ms[:i]) for i in range(len(ms) + 1)]
    assert own_slices(ms, budget * sum(ms)) == [(bounds[i], bounds[i + 1] - bounds[i]) for i in range(len(ms))]


@pytest.mark.parametrize("m,budget", [(9, 1), (9, 2), (4, 4), (36, 3)])
def test_initial_assignment_integer_budget_is_i_times_b(m, budget):
    assert initial_assignment(m, budget * m) == [i * budget for i in range(m)]


@pytest.mark.parametrize("m,k", [(36, 2), (36, 4), (8, 2), (12, 4), (9, 3)])
def test_initial_assignment_one_over_k_is_the_reference_diagonal(m, k):
    """Reference rule for b = 1/k: mixture i takes the next own cell iff i % k == (i // k) % k, else the zero cell."""
    expected, next_cell = [], 0
    for i in range(m):
        if i % k == (i // k) % k:
            expected.append(next_cell)
            next_cell += 1
        else:
            expected.append(None)
    assert initial_assignment(m, m // k) == expected


def test_initial_assignment_golden_quarter():
    # hand-computed from the reference rule for m = 12, k = 4: i in {0, 5, 10}
    assert initial_assignment(12, 3) == [0, None, None, None, None, 1, None, None, None, None, 2, None]


@pytest.mark.parametrize("m,own", [(9, 13), (10, 3), (7, 2), (5, 1), (9, 9), (3, 0)])
def test_initial_assignment_any_budget_points_at_distinct_own_cells(m, own):
    offsets = [o for o in initial_assignment(m, own) if o is not None]
    assert len(offsets) == min(m, own)
    assert len(set(offsets)) == len(offsets) and all(0 <= o < own for o in offsets)


@pytest.mark.parametrize("total,budget,expected", [(56, 1, 56), (56, 0.25, 14), (100, 0.29, 29), (3, 0.1, 1),
                                                  (56, 1.5, 84), (10, 1 / 3, 3)])
def test_warehouse_size(total, budget, expected):
    assert warehouse_size(total, budget) == expected


def test_cell_shape_is_the_gcd_scaled_by_the_ratios():
    members = [LayerSpec("a", 64, 128, (3, 3)), LayerSpec("b", 128, 192, (1, 1)), LayerSpec("c", 96, 96, (3, 3), 3)]
    assert cell_shape(members[:2], 1, 1, True) == (64, 64, 1, 1)
    assert cell_shape(members[:2], 0.5, 0.25, True) == (16, 32, 1, 1)
    assert cell_shape(members, 1, 1, True) == (32, 32, 1, 1)  # grouped: gcd over in_channels / groups
    assert cell_shape(members[:1], 1, 1, False) == (128, 64, 3, 3)


def test_cell_ratio_that_does_not_divide_names_the_warehouse_and_suggests_divisors():
    with pytest.raises(KWLabError) as raised:
        kwlab.plan("resnet18", {"cell_in_ratio": 0.3})
    message = str(raised.value)
    assert "\n" not in message
    assert "kw.cell_in_ratio" in message and "'stage0.dense'" in message
    assert "1/2" in message and "1/4" in message  # divisors of the 64-channel gcd


def test_group_layers_keeps_dense_and_grouped_apart():
    specs = [LayerSpec("pw", 32, 32, (1, 1), stage="1"), LayerSpec("dw", 32, 32, (3, 3), 32, stage="1")]
    for sharing in ("role", "stage", "network", 3):
        assert sorted(map(len, group_layers(specs, sharing, True).values())) == [1, 1]


def test_whole_kernel_cells_only_share_between_equal_kernels():
    specs = [LayerSpec("a", 8, 8, (3, 3)), LayerSpec("b", 8, 8, (1, 1)), LayerSpec("c", 8, 8, (3, 3))]
    assert [len(v) for v in group_layers(specs, "stage", False).values()] == [2, 1]
    assert [len(v) for v in group_layers(specs, "stage", True).values()] == [3]


def test_whole_kernel_plan_has_spatial_cells():
    """Without spatial partition, 3x3 and 1x1 convs of a stage use separate warehouses of whole-kernel cells."""
    result = kwlab.plan("resnet18", {"spatial_partition": False})
    stage0 = {w.cell_shape: (w.layers, w.mixtures) for w in result.warehouses if w.name.startswith("stage0.")}
    assert stage0 == {
        (64, 64, 3, 3): (("layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1", "layer1.1.conv2", "layer2.0.conv1"),
                         (1, 1, 1, 1, 2)),
        (128, 64, 1, 1): (("layer2.0.downsample.0",), (1,)),
    }


@pytest.mark.parametrize("layers", [[nn.BatchNorm2d(3)], [nn.ReLU()]], ids=["batchnorm-only", "parameter-free"])
def test_model_without_replaceable_layers_is_rejected(layers):
    with pytest.raises(KWLabError, match="no convolution or linear layer"):
        kwlab.plan(nn.Sequential(*layers))


# ---- per-warehouse settings and layer selections ----

def test_warehouse_settings_apply_to_matching_warehouses_in_order():
    kw = {"warehouses": {"stage*": {"budget": 2}, "stage3.*": {"budget": 4, "reduction": 0.125}}}
    result = kwlab.plan("resnet18", kw)
    base = kwlab.plan("resnet18", {})
    assert [w.cells for w in result.warehouses] == [2 * w.cells for w in base.warehouses[:3]] + [4 * 27]
    assert result.layer("layer4.1.conv2").hidden == 64  # 512 x 0.125
    assert result.layer("layer3.1.conv2").hidden == 16


def test_warehouse_pattern_matching_nothing_is_an_error():
    with pytest.raises(KWLabError, match=r"kw.warehouses: 'stage9\.\*' matches no warehouse.*stage0.dense"):
        kwlab.plan("resnet18", {"warehouses": {"stage9.*": {"budget": 2}}})


def test_static_layers_and_kw_layers_select_layers_by_name():
    result = kwlab.plan("resnet18", {"static_layers": ["layer1.*"], "kw_layers": ["fc"]})
    assert {"conv1", "layer1.0.conv1", "layer1.1.conv2"} <= set(result.static_layers)
    assert "fc" not in result.static_layers
    fc = result.layer("fc")
    assert fc.warehouse == "fc" and result.warehouses[-1].layers == ("fc",)  # a warehouse of its own
    assert result.warehouses[0].layers == ("layer2.0.conv1", "layer2.0.downsample.0")


@pytest.mark.parametrize("key", ["static_layers", "kw_layers"])
def test_layer_pattern_matching_nothing_is_an_error(key):
    with pytest.raises(KWLabError, match=f"kw.{key}: 'layer9.*' matches no convolution or linear layer"):
        kwlab.plan("resnet18", {key: ["layer9.*"]})


def test_mobilenetv2_half_budget_builds_like_its_plan():
    """Static pointwise convs, per-warehouse cells and reduction and a KW classifier in a real model."""
    import torch

    from kwlab.config import load_yaml
    from kwlab.methods.kw.layers import KWLinear

    kw = load_yaml(Path(__file__).resolve().parents[1] / "configs/reference/kw1d2x_mobilenetv2_050.yaml")["kw"]
    model = kwlab.create_model("mobilenetv2_050", kw=kw, num_classes=10)
    assert _real_params(model) == kwlab.plan("mobilenetv2_050", kw, num_classes=10).params
    assert isinstance(model.classifier, KWLinear) and model.classifier.attention.fc1.out_features == 40
    assert type(model.blocks[1][0].conv_pw) is torch.nn.Conv2d
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_a_registered_sharing_range_is_planned_and_an_unknown_one_named():
    """Sharing ranges are a registry like the attention functions: a user's rule is accepted by KWConfig and
    planned; an unknown name is one line listing the known ones."""
    from kwlab.errors import KWLabError
    from kwlab.methods.kw.config import KWConfig
    from kwlab.methods.kw.sharing import SHARING_RULES, register_sharing

    register_sharing("role_everywhere")(lambda layer: ("all", layer.role or layer.name, layer.family))
    try:
        by_role = kwlab.plan("resnet18", {"sharing": "role_everywhere"})
        roles = kwlab.plan("resnet18", {"sharing": "role"})
        assert len(by_role.warehouses) < len(roles.warehouses)  # one warehouse per role across the stages
        assert {w.name.split(".")[1] for w in by_role.warehouses} == {"conv1", "conv2"}  # downsamples are conv1s
    finally:
        del SHARING_RULES["role_everywhere"]
    with pytest.raises(KWLabError, match=r"kw\.sharing: 'role_everywhere' is not one of 'network', 'none'"):
        KWConfig(sharing="role_everywhere")
