"""The warehouse planner: which layers share a warehouse, cell shapes, n, m and parameter counts, without tensors.

Everything here is integer arithmetic on layer shapes, so a sweep can price a configuration before building it.
Symbols follow Li & Yao (ICML 2024): a layer's kernel is cut into m cells; a warehouse holds n = b x sum(m) cells.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import reduce
from typing import Any

from kwlab.errors import KWLabError
from kwlab.methods.attention import attention_hidden
from kwlab.methods.kw.config import KWConfig
from kwlab.methods.kw.sharing import SHARING_RULES
from kwlab.methods.mixing.assembly import mixtures


@dataclass(frozen=True)
class LayerSpec:
    """One replaceable layer: its torch shape contract plus where it sits (stage, role) in the network."""

    name: str
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]  # () for a linear layer
    groups: int = 1
    bias: bool = False
    stage: str = "0"
    role: str = ""
    alone: bool = False  # a warehouse of its own, named after the layer, whatever the sharing range

    @property
    def in_per_group(self) -> int:
        """Input channels seen by one output channel (C_in / groups)."""
        return self.in_channels // self.groups

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """The static weight this layer replaces: (C_out, C_in/groups, *k)."""
        return (self.out_channels, self.in_per_group, *self.kernel_size)

    @property
    def family(self) -> str:
        """`dense` or `grouped` (depthwise and grouped convolutions never share cells with dense ones)."""
        return "dense" if self.groups == 1 else "grouped"


@dataclass(frozen=True)
class LayerPlan:
    """How one layer draws on its warehouse: m mixtures, its own slice of cells, its attention size."""

    spec: LayerSpec
    warehouse: str
    mixtures: int  # m
    own_start: int  # first cell of the layer's own slice (the cells beta points at)
    own_cells: int
    hidden: int
    attention_params: int


@dataclass(frozen=True)
class WarehousePlan:
    """A bank of n cells of one shape shared by `layers`."""

    name: str
    cell_shape: tuple[int, ...]  # (c_out, c_in, *cell kernel)
    cells: int  # n
    layers: tuple[str, ...]
    mixtures: tuple[int, ...]  # m of each layer, in `layers` order

    @property
    def params(self) -> int:
        """Number of warehouse parameters (n x cell size)."""
        return self.cells * math.prod(self.cell_shape)


@dataclass(frozen=True)
class Plan:
    """The KW plan of a whole model, with parameters split into warehouse / attention / other."""

    warehouses: tuple[WarehousePlan, ...]
    layers: tuple[LayerPlan, ...]
    other_params: int  # everything that is neither a warehouse cell nor an attention weight
    static_layers: tuple[str, ...] = field(default=())

    @property
    def warehouse_params(self) -> int:
        """Parameters held in warehouse cells."""
        return sum(w.params for w in self.warehouses)

    @property
    def attention_params(self) -> int:
        """Parameters of the attention modules."""
        return sum(layer.attention_params for layer in self.layers)

    @property
    def params(self) -> int:
        """Total parameter count of the converted model."""
        return self.warehouse_params + self.attention_params + self.other_params

    def layer(self, name: str) -> LayerPlan:
        """The plan of the layer called `name`."""
        return next(layer for layer in self.layers if layer.spec.name == name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the shape `kwlab info --json` prints)."""
        return {
            "params": self.params,
            "params_warehouse": self.warehouse_params,
            "params_attention": self.attention_params,
            "params_other": self.other_params,
            "warehouses": [
                {"name": w.name, "cell_shape": list(w.cell_shape), "n": w.cells, "layers": list(w.layers),
                 "m": list(w.mixtures), "params": w.params}
                for w in self.warehouses
            ],
            "static_layers": list(self.static_layers),
        }


def sharing_key(spec: LayerSpec, sharing: str | int, spatial_partition: bool) -> tuple[str, ...]:
    """The warehouse a layer joins under sharing range l, as a tuple key (before chunking for integer k)."""
    # Whole-kernel cells only fit layers with the same kernel; 1x1 cells fit any kernel.
    kernel = () if spatial_partition else (str(spec.kernel_size),)
    if spec.alone:
        return (spec.name,)
    rule = SHARING_RULES.get("stage" if isinstance(sharing, int) else sharing)  # k chunks the stage's groups
    return (*rule(spec), *kernel)


def group_layers(specs: Sequence[LayerSpec], sharing: str | int, spatial_partition: bool) -> dict[str, list[LayerSpec]]:
    """Split layers (in module order) into named warehouses according to the sharing range l."""
    groups: dict[tuple[str, ...], list[LayerSpec]] = {}
    for spec in specs:
        groups.setdefault(sharing_key(spec, sharing, spatial_partition), []).append(spec)
    named: dict[str, list[LayerSpec]] = {}
    for key, members in groups.items():
        if isinstance(sharing, int) and not members[0].alone:  # chunks of k neighbouring layers within a stage
            for chunk in range(0, len(members), sharing):
                named[".".join((*key, str(chunk // sharing)))] = members[chunk : chunk + sharing]
        else:
            named[".".join(key)] = members
    return named


def cell_shape(
    members: Sequence[LayerSpec], cell_in_ratio: float, cell_out_ratio: float, spatial_partition: bool, name: str = ""
) -> tuple[int, ...]:
    """Cell shape of a warehouse: gcd of its layers' channels scaled by the cell ratios, 1x1 spatially by default."""
    gcd_out = reduce(math.gcd, (s.out_channels for s in members))
    gcd_in = reduce(math.gcd, (s.in_per_group for s in members))
    c_out = max(int(gcd_out * cell_out_ratio + 1e-9), 1)
    c_in = max(int(gcd_in * cell_in_ratio + 1e-9), 1)
    for value, gcd, ratio in ((c_out, gcd_out, "cell_out_ratio"), (c_in, gcd_in, "cell_in_ratio")):
        if gcd % value:
            divisors = [str(Fraction(d, gcd)) for d in range(gcd, 0, -1) if gcd % d == 0][:6]
            raise KWLabError(
                f"kw.{ratio}: gives cells of {value} channels in warehouse {name or members[0].name!r}, which does not "
                f"divide its layers' {gcd}-channel gcd; use one of {', '.join(divisors)}, ..."
            )
    kernel = members[0].kernel_size
    return (c_out, c_in, *((1,) * len(kernel) if spatial_partition else kernel))


def warehouse_size(total_mixtures: int, budget: float) -> int:
    """n = b x (total cells of the layers), at least one cell."""
    # The epsilon keeps products such as 0.29 x 100 from flooring to 28 through float rounding.
    return max(int(total_mixtures * budget + 1e-9), 1)


def own_slices(layer_mixtures: Sequence[int], n: int) -> list[tuple[int, int]]:
    """Each layer's own consecutive slice (start, count) of the n cells, proportional to its m, in module order."""
    # NOTE: the reference gives layer l the slice [b * M_<l, b * M_<=l) and only supports integer b and b = 1/k;
    # apportioning floor(n * M_<l / M) gives the same slices there and a partition of all n cells for any b > 0.
    total = sum(layer_mixtures)
    bounds = [n * sum(layer_mixtures[:i]) // total for i in range(len(layer_mixtures) + 1)]
    return [(bounds[i], bounds[i + 1] - bounds[i]) for i in range(len(layer_mixtures))]


def initial_assignment(m: int, own: int) -> list[int | None]:
    """beta as offsets: mixture i points at own cell offset[i], or at the zero cell (None) when b < 1."""
    if own >= m:  # b >= 1: spread the mixtures over the slice; integer b gives the reference's i * b
        return [i * own // m for i in range(m)]
    assignment: list[int | None] = [None] * m
    # b < 1: cut the m mixtures into `own` runs and pick one per run, moving along the diagonal
    # (run j picks its (j mod run length)-th mixture): for b = 1/k this is the reference's i % k == (i // k) % k.
    for j in range(own):
        lo, hi = j * m // own, (j + 1) * m // own
        assignment[lo + j % (hi - lo)] = j
    return assignment


def num_basis(nonlocal_cells: int, ratio: float) -> int:
    """Width of the nonlocal basis: max(int(nonlocal cells x ratio), 16); 0 (no basis) for a ratio of 1 or more."""
    return 0 if ratio >= 1 else max(int(nonlocal_cells * ratio), 16)


def attention_params(
    in_channels: int, m: int, n: int, own: int, hidden: int, layer_norm: bool, nonlocal_basis_ratio: float
) -> int:
    """Parameter count of one layer's attention (GAP -> FC -> norm -> ReLU -> FC [-> basis map])."""
    first = in_channels * hidden + (hidden if layer_norm else 0) + 2 * hidden  # fc1 (+bias before LayerNorm), norm
    basis = num_basis(n - own, nonlocal_basis_ratio)
    if basis == 0:
        return first + (hidden + 1) * (n + 1) * m  # fc2 with bias
    return first + hidden * (own + basis + 1) * m + basis * (n - own) + (n + 1) * m  # fc2, fc3, basis bias


def attention_macs(in_channels: int, m: int, n: int, own: int, hidden: int, nonlocal_basis_ratio: float) -> int:
    """Multiply-accumulates of one layer's attention per image: fc1, fc2 and, with a nonlocal basis, the basis map."""
    basis = num_basis(n - own, nonlocal_basis_ratio)
    if basis == 0:
        return in_channels * hidden + hidden * (n + 1) * m
    return in_channels * hidden + hidden * (own + basis + 1) * m + basis * (n - own) * m


def assembly_macs(n: int, weight_numel: int) -> int:
    """Multiply-accumulates of assembling one layer's kernel per image: each of its K weights mixes n cells."""
    return n * weight_numel


def warehouse_settings(kw: KWConfig, warehouse: str) -> KWConfig:
    """The settings of warehouse `warehouse`: `kw` updated by every `kw.warehouses` pattern that matches its name."""
    updates: dict[str, float] = {}
    for pattern, settings in kw.warehouses.items():
        if fnmatch.fnmatchcase(warehouse, pattern):
            updates.update(settings.overrides())
    return kw.model_copy(update=updates) if updates else kw


def check_warehouse_patterns(kw: KWConfig, names: Sequence[str]) -> None:
    """Refuse a `kw.warehouses` pattern that matches none of the model's warehouses (a typo would be silent)."""
    for pattern in kw.warehouses:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            raise KWLabError(f"kw.warehouses: {pattern!r} matches no warehouse of this model; its warehouses: "
                             f"{', '.join(names)}")


def plan_layer(spec: LayerSpec, warehouse: str, n: int, cell: Sequence[int], own: tuple[int, int], kw: KWConfig, *,
               layer_norm: bool) -> LayerPlan:
    """How layer `spec` draws on warehouse `warehouse` of n cells of shape `cell`, owning cells own = (start, count),
    under its warehouse's settings `kw`: m, the attention's width and parameters."""
    m = mixtures(spec.weight_shape, cell)
    hidden = attention_hidden(spec.in_channels, kw.reduction, kw.min_hidden)
    params = attention_params(spec.in_channels, m, n, own[1], hidden, layer_norm, kw.nonlocal_basis_ratio)
    return LayerPlan(spec, warehouse, m, own[0], own[1], hidden, params)


def plan_layers(
    specs: Sequence[LayerSpec], kw: KWConfig, *, layer_norm: bool, other_params: int, static_layers: Sequence[str] = ()
) -> Plan:
    """Plan warehouses and attentions for `specs` (in module order) under `kw`."""
    if not specs:
        raise KWLabError("kw: the model has no convolution or linear layer that KernelWarehouse can replace")
    warehouses, layers = [], []
    groups = group_layers(specs, kw.sharing, kw.spatial_partition)
    check_warehouse_patterns(kw, list(groups))
    for name, members in groups.items():
        settings = warehouse_settings(kw, name)
        cell = cell_shape(members, settings.cell_in_ratio, settings.cell_out_ratio, kw.spatial_partition, name)
        ms = [mixtures(s.weight_shape, cell) for s in members]
        n = warehouse_size(sum(ms), settings.budget)
        warehouses.append(WarehousePlan(name, cell, n, tuple(s.name for s in members), tuple(ms)))
        for spec, own in zip(members, own_slices(ms, n), strict=True):
            layers.append(plan_layer(spec, name, n, cell, own, settings, layer_norm=layer_norm))
    order = {spec.name: i for i, spec in enumerate(specs)}
    layers.sort(key=lambda layer: order[layer.spec.name])
    return Plan(tuple(warehouses), tuple(layers), other_params, tuple(static_layers))
