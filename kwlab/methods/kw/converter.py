"""Turn any nn.Module (a timm model in particular) into a KernelWarehouse model: `plan`, `convert`, `create_model`."""

from __future__ import annotations

import fnmatch
import math
from typing import Any

import timm
import torch
from torch import nn

from kwlab.methods.kw.layouts import REFERENCE_LAYOUTS, Assignment, Placement, auto_layout
from kwlab.models.families import family_of
from kwlab.errors import KWLabError
from kwlab.models.factory import timm_model
from kwlab.methods.kw.config import KWConfig
from kwlab.methods.kw.layers import KWConv1d, KWConv2d, KWConv3d, KWLayer, KWLinear
from kwlab.methods.kw.planner import LayerPlan, LayerSpec, Plan, initial_assignment, plan_layers, warehouse_settings
from kwlab.methods.kw.warehouse import Warehouse
from kwlab.methods.mixing import split_kernel

MAX_PARAMS = 2_000_000_000  # refuse to allocate a plan this large: it would not fit in memory for training

# Exact torch types only: subclasses that override forward (timm's Conv2dSame, StdConv2d, a MultiheadAttention's
# out_proj read by weight) compute something else than their weight applied plainly.
_KW_TYPES: dict[type[nn.Module], type[KWLayer]] = {
    nn.Conv1d: KWConv1d, nn.Conv2d: KWConv2d, nn.Conv3d: KWConv3d, nn.Linear: KWLinear, timm.layers.Linear: KWLinear,
}


def candidates(model: nn.Module) -> dict[str, nn.Module]:
    """The layers of `model` that KernelWarehouse can replace, in module order."""
    return {
        name: module for name, module in model.named_modules()
        if type(module) in _KW_TYPES and getattr(module, "padding_mode", "zeros") == "zeros"
    }


def layer_spec(name: str, module: nn.Module, placement: Placement) -> LayerSpec:
    """Describe a torch conv/linear layer for the planner."""
    where = (placement.stage, placement.role, placement.alone)
    if isinstance(module, nn.Linear):
        return LayerSpec(name, module.in_features, module.out_features, (), 1, module.bias is not None, *where)
    return LayerSpec(name, module.in_channels, module.out_channels, tuple(module.kernel_size), module.groups,
                     module.bias is not None, *where)


def resolve(model: nn.Module, kw: KWConfig) -> tuple[Assignment, KWConfig]:
    """Place every candidate layer with the layout `kw.layout` and settle the attention norm."""
    family = family_of(model)
    if kw.layout == "reference" and family not in REFERENCE_LAYOUTS:
        raise KWLabError(f"kw.layout: {type(model).__name__} has no reference layout (models with one: "
                         f"{', '.join(map(repr, sorted(REFERENCE_LAYOUTS)))}); use layout 'auto' or 'default'")
    use_reference = kw.layout != "auto" and family in REFERENCE_LAYOUTS
    found = candidates(model)
    if not found:
        raise KWLabError(f"kw: {type(model).__name__} has no convolution or linear layer that KernelWarehouse "
                         "can replace")
    assignment = select_layers((REFERENCE_LAYOUTS[family] if use_reference else auto_layout)(model, found), kw)
    norm = kw.attention_norm
    if norm == "auto":  # LayerNorm where the model itself has no BatchNorm (ConvNeXt, ViT), as the reference does
        has_batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        norm = "layer" if (family == "convnext" if use_reference else not has_batchnorm) else "batch"
    return assignment, kw.model_copy(update={"attention_norm": norm})


def select_layers(assignment: Assignment, kw: KWConfig) -> Assignment:
    """Apply `kw.static_layers` (matching layers stay static) and `kw.kw_layers` (matching layers the layout keeps
    static become KW layers with a warehouse of their own) to a layout's assignment; a pattern matching no
    candidate layer is an error."""
    assignment = dict(assignment)
    for key, patterns in (("static_layers", kw.static_layers), ("kw_layers", kw.kw_layers)):
        for pattern in patterns:
            matched = [name for name in assignment if fnmatch.fnmatchcase(name, pattern)]
            if not matched:
                raise KWLabError(f"kw.{key}: {pattern!r} matches no convolution or linear layer of this model "
                                 f"(e.g. {', '.join(list(assignment)[:4])}, ...)")
            for name in matched:
                if key == "static_layers":
                    assignment[name] = None
                elif assignment[name] is None:
                    assignment[name] = Placement(name, name, alone=True)
    return assignment


def _plan(model: nn.Module, kw: KWConfig) -> tuple[Plan, KWConfig]:
    assignment, kw = resolve(model, kw)
    found = candidates(model)
    specs = [layer_spec(name, found[name], p) for name, p in assignment.items() if p is not None]
    replaced = sum(math.prod(spec.weight_shape) for spec in specs)
    other = sum(p.numel() for p in model.parameters()) - replaced
    static = tuple(name for name, p in assignment.items() if p is None)
    return plan_layers(specs, kw, layer_norm=kw.attention_norm == "layer", other_params=other, static_layers=static), kw


def plan(model_or_name: nn.Module | str, kw: KWConfig | dict[str, Any] | None = None, **timm_kwargs: Any) -> Plan:
    """The KW plan (warehouses, cell shapes, n, m, parameter counts) of a model or timm model name, unallocated."""
    kw = KWConfig.from_dict(kw or {})
    if isinstance(model_or_name, str):
        with torch.device("meta"):  # build the architecture without allocating a tensor
            model_or_name = timm_model(model_or_name, **timm_kwargs)
    return _plan(model_or_name, kw)[0]


def convert(model: nn.Module, kw: KWConfig | dict[str, Any] | None = None) -> nn.Module:
    """Replace the model's conv/linear layers by KW layers in place (and return it).

    With b >= 1 and one-to-one init the source weights are copied into the cells beta points at, so at tau = 1 the
    KW model computes what the source model computed.
    """
    if hasattr(model, "kw_warehouses"):
        raise KWLabError(f"convert: {type(model).__name__} is already a KernelWarehouse model")
    kw = KWConfig.from_dict(kw or {})
    layout_plan, kw = _plan(model, kw)
    if layout_plan.params > MAX_PARAMS:
        raise KWLabError(
            f"kw: this plan has {layout_plan.params:,} parameters ({layout_plan.attention_params:,} in attention), "
            f"over kwlab's limit of {MAX_PARAMS:,}; use a narrower sharing range, a smaller budget or "
            "nonlocal_basis_ratio < 1 (price variants with `kwlab info`)"
        )
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    with torch.device(device):  # build on the model's device (meta stays unallocated)
        warehouses = {w.name: Warehouse(w.cells, w.cell_shape) for w in layout_plan.warehouses}
        for layer in layout_plan.layers:
            _replace(model, layer, warehouses[layer.warehouse], warehouse_settings(kw, layer.warehouse))
    model.kw_warehouses = nn.ModuleDict(
        {name.replace(".", "_"): w.to(dtype=dtype) for name, w in warehouses.items()}
    )
    model.kw_plan = layout_plan
    model.kw_config = kw
    return model


def _replace(model: nn.Module, layer: LayerPlan, warehouse: Warehouse, kw: KWConfig) -> None:
    """Swap one torch layer for its KW layer, built from its LayerPlan, and seed the layer's own cells."""
    source = model.get_submodule(layer.spec.name)
    spec = layer.spec
    if isinstance(source, nn.Linear):
        new = KWLinear(spec.in_channels, spec.out_channels, spec.bias, warehouse=warehouse, kw=kw, plan=layer)
    else:
        new = _KW_TYPES[type(source)](
            spec.in_channels, spec.out_channels, spec.kernel_size, source.stride, source.padding,
            source.dilation, spec.groups, spec.bias, warehouse=warehouse, kw=kw, plan=layer,
        )
    _fill_own_cells(warehouse, layer, source, kw)
    if spec.bias:
        new.bias.data.copy_(source.bias.data)
    model.set_submodule(spec.name, new.to(dtype=source.weight.dtype))


@torch.no_grad()
def _fill_own_cells(warehouse: Warehouse, layer: LayerPlan, source: nn.Module, kw: KWConfig) -> None:
    """Initialise a layer's own slice (Kaiming, fan-out) and, for b >= 1 with one-to-one init, copy its weights."""
    weight = source.weight
    # NOTE: with model.init 'timm' (and kwlab.convert) kwlab uses the replaced layer's own fan-out, so that a KW layer
    # at tau = 1 starts at the static layer's scale; the reference applies Kaiming to the slice viewed as
    # (slice x c_out, c_in, ...), i.e. fan_out = slice x c_out, which model.init 'reference' applies to fresh models
    # afterwards (Warehouse.init_slice via KWLayer.reset_like_reference). This std is 0.71x the reference's at ResNet18
    # 1/4x and 2x at 4x; copied timm weights add up to 31x on MobileNetV2 depthwise warehouses.
    fan_out = weight.shape[0] * math.prod(weight.shape[2:])
    cells = warehouse.cells[layer.own_start : layer.own_start + layer.own_cells]
    cells.normal_(0.0, math.sqrt(2.0 / fan_out))
    if kw.init == "one_to_one" and layer.own_cells >= layer.mixtures:
        offsets = torch.tensor(initial_assignment(layer.mixtures, layer.own_cells))
        cells[offsets] = split_kernel(weight.detach(), warehouse.cell_shape).to(cells.dtype)  # (m, cell_numel)


def create_model(name: str, *, kw: KWConfig | dict[str, Any] | None = None, **timm_kwargs: Any) -> nn.Module:
    """Build timm model `name` (kwlab's small models included); with `kw`, convert it to KernelWarehouse."""
    model = timm_model(name, **timm_kwargs)
    return model if kw is None else convert(model, kw)
