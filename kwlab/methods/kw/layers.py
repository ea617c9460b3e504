"""KW layers: drop-in replacements of nn.Conv1d/2d/3d and nn.Linear whose kernels are mixed from a warehouse.

Every layer hands its attention alpha and its warehouse's cells to the mixing engine (kwlab.methods.mixing), which
picks the path for the input's shape from KernelWarehouse's cost constants (`KW_PATH_COSTS`); path 'reference' is
the straightforward computation (assemble every kernel, one grouped convolution over the batch) that the tests check
every path against and that `kwlab bench` reports as the "before".
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.modules.utils import _ntuple

from kwlab.methods import mixing
from kwlab.methods.kw.attention import KWAttention
from kwlab.methods.kw.config import KWConfig
from kwlab.methods.kw.planner import LayerPlan, LayerSpec, initial_assignment, num_basis, plan_layer
from kwlab.methods.kw.warehouse import Warehouse

# KernelWarehouse's constants of the engine's cost model, in units of one multiply-add of the batched matmuls. Fitted
# on 2026-12-07 on a 2-core Intel Xeon (AVX-512; torch 2.14.1, one thread) to forward+backward timings of every path
# of every KW 1x and 4x layer shape of ResNet18 at 64 and 224 px (batch 16, best of 2-3, other jobs loading the
# machine at times) and of KW 1/4x, 1x and 4x on the Fashion study's ResNet-8 at half width (14 px, batch 64, best of
# 9, twice, on a quiet machine): 61 layer shapes, a coordinate search on the mean log slowdown of the chosen path
# against the fastest. `auto` then takes paths 1.009x the fastest in total time, at worst 1.24x on one layer (the
# constants fitted earlier on an AMD EPYC: 1.39x in total on this Xeon, mostly `grouped` on 256- and 512-channel
# layers at 224 px). The per-sample grouped convolution (oneDNN) wins on 3x3 layers while all B kernels fit in 16 MB
# and, past that, on large feature maps; `batched` on the deep layers at 224 px; `mixed` where the outputs are few,
# slower on cells narrower than 64 channels. `batched_traffic` is higher for kernels that fit the cache than for
# those that do not: small kernels carry the per-call overhead of the many small matmuls. `assembly_lean` keeps the
# earlier fit's ratio to `assembly` (lean assembles again in backward; not refitted).
KW_PATH_COSTS = mixing.PathCosts(batched=3.6, assembly=2.1, assembly_lean=2.8, batched_traffic=(450, 88), mixed=1.26,
                                 mixed_pointwise=3, mixing=4, mixed_traffic=64, small_cells=64, grouped=0.5,
                                 grouped_assembly=2, grouped_traffic=(0, 1000))


def initial_beta(m: int, n: int, own_start: int, own_cells: int) -> torch.Tensor:
    """The one-hot initial assignment beta (m, n+1): each mixture points at an own cell or at the zero cell."""
    beta = torch.zeros(m, n + 1)
    for i, offset in enumerate(initial_assignment(m, own_cells)):
        beta[i, n if offset is None else own_start + offset] = 1.0
    return beta


class KWLayer(nn.Module):
    """What every KW layer shares: a non-owning reference to its warehouse, its attention and its bias.

    `plan` is the layer's LayerPlan (m, its own slice of the warehouse, the attention's width), as `convert` hands
    it over; a layer built by hand without one is planned alone from `own` (default: the whole warehouse) and `kw`.
    """

    def __init__(
        self,
        weight_shape: tuple[int, ...],
        bias: bool,
        warehouse: Warehouse,
        own: tuple[int, int] | None,
        kw: KWConfig | None,
        plan: LayerPlan | None = None,
    ) -> None:
        super().__init__()
        kw = kw or KWConfig()
        # The module that builds the layers owns the warehouse (convert: `model.kw_warehouses`); each layer keeps a
        # plain reference so a shared warehouse appears once in state_dict() (EMA would otherwise update it k times).
        object.__setattr__(self, "warehouse", warehouse)
        self.weight_shape = weight_shape
        self.cell_shape = warehouse.cell_shape
        n = warehouse.num_cells
        if plan is None:
            spec = LayerSpec("", self.in_channels, weight_shape[0], tuple(weight_shape[2:]), self.groups, bias)
            plan = plan_layer(spec, "", n, warehouse.cell_shape, own if own is not None else (0, n), kw,
                              layer_norm=kw.attention_norm == "layer")
        m, blend = plan.mixtures, kw.init == "one_to_one"
        self.attention = KWAttention(
            self.in_channels,
            m,
            n,
            plan.hidden,
            initial_beta(m, n, plan.own_start, plan.own_cells) if blend else torch.zeros(m, n + 1),
            function=kw.attention,
            blend=blend,
            layer_norm=kw.attention_norm == "layer",
            own_start=plan.own_start,
            own_cells=plan.own_cells,
            num_basis=num_basis(n - plan.own_cells, kw.nonlocal_basis_ratio),
        )
        self.bias = nn.Parameter(torch.zeros(weight_shape[0])) if bias else None
        self.memory = kw.memory  # fast | lean: whether backward may keep per-sample kernels (see KWConfig.memory)
        self.path = "auto"  # auto picks per input shape; tests and `kwlab bench` force one of mixing.PATHS
        self.training_path: str | None = None  # the path of the last forward under autograd
        self.chosen: dict = {}  # the cost model's choice per memory mode, shared alpha and input (resolve_path)

    @torch.no_grad()
    def reset_like_reference(self) -> None:
        """The reference's initialisation of a fresh KW layer: its own warehouse slice (Warehouse.init_slice) and a
        zero bias; the attention is constructed with the reference's initialisation already."""
        self.warehouse.init_slice(self.attention.own_start, self.attention.own_cells)
        if self.bias is not None:
            self.bias.zero_()

    in_channels: int
    groups: int
    geometry: mixing.Geometry  # the shape contract of the mixing engine

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pool of the input to (B, C_in), the attention's input."""
        raise NotImplementedError

    def shares_alpha(self) -> bool:
        """Whether alpha is the same for every sample (see KWAttention.shares_alpha)."""
        return self.attention.shares_alpha()

    def modelled(self, positions: int, batch: int = 1, dtype: torch.dtype = torch.float32) -> dict[str, float]:
        """The modelled cost of each path for a batch with P = `positions` output positions per sample."""
        return mixing.path_costs(self.geometry, positions, self.attention.cells, KW_PATH_COSTS, batch=batch,
                                 itemsize=dtype.itemsize, memory=self.memory, shared=self.shares_alpha())

    def select_path(self, positions: int, batch: int = 1, dtype: torch.dtype = torch.float32) -> str:
        """The path the forward takes for a batch with P = `positions` output positions per sample, without an
        input to time ('measured' takes the model's choice here)."""
        return mixing.resolve_path(self.path, lambda: self.modelled(positions, batch, dtype))

    def _conv_path(self, x: torch.Tensor) -> str:
        """The path for x in conv layout, (B, C_in, *L) (a linear layer's tokens as (B, C_in, T))."""
        positions = math.prod(self.geometry.out_size(tuple(x.shape[2:])))
        path = mixing.resolve_path(self.path, lambda: self.modelled(positions, x.shape[0], mixing.compute_dtype(x)),
                                   lambda path: self._engine_trial(x, path), x,
                                   (type(self), self.geometry, self.attention.mixtures, self.attention.cells,
                                    self.memory), self.chosen, (self.memory, self.shares_alpha()))
        if torch.is_grad_enabled():
            self.training_path = path
        return path

    def _engine_trial(self, x: torch.Tensor, path: str) -> None:
        """One engine call along `path` on x (conv layout) with a uniform alpha, backward where autograd records."""
        x = x.detach().requires_grad_(x.requires_grad)
        m, n = self.attention.mixtures, self.attention.cells
        alpha = x.new_full((x.shape[0], m, n), 1 / n).requires_grad_(torch.is_grad_enabled())
        cells = self.warehouse.cells
        mixing.engine_trial(lambda: mixing.convolve(x, alpha, cells, self.geometry, path, self.memory),
                            [x, alpha, cells])

    def _mix(self, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """Convolve x (B, C_in, *L) with every sample's kernel (alpha (B, m, n)) along the selected path, with bias."""
        out = mixing.convolve(x, alpha, self.warehouse.cells, self.geometry, self._conv_path(x), self.memory)
        if self.bias is not None:
            out = out + self.bias.to(out.dtype).reshape(1, -1, *([1] * (out.dim() - 2)))
        return out


class KWConvNd(KWLayer):
    """A KW convolution over `dims` spatial dims with nn.ConvNd's constructor contract plus its warehouse."""

    dims: int = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] = 1,
        padding: int | str | tuple[int, ...] = 0,
        dilation: int | tuple[int, ...] = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        warehouse: Warehouse,
        own: tuple[int, int] | None = None,
        kw: KWConfig | None = None,
        plan: LayerPlan | None = None,
    ) -> None:
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must divide by groups")
        as_tuple = _ntuple(self.dims)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.dilation = as_tuple(kernel_size), as_tuple(stride), as_tuple(dilation)
        self.padding = padding if isinstance(padding, str) else as_tuple(padding)
        super().__init__((out_channels, in_channels // groups, *self.kernel_size), bias, warehouse, own, kw, plan)
        self.geometry = mixing.Geometry(
            in_channels, out_channels, groups, self.kernel_size, self.stride, self.dilation,
            mixing.resolve_padding(self.padding, self.kernel_size, self.dilation),
            mixing.layer_cell_shape(self.weight_shape, self.cell_shape),
        )

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over the spatial dims: (B, C_in, *spatial) -> (B, C_in)."""
        return x.mean(dim=tuple(range(2, x.dim())))

    def path_for(self, x: torch.Tensor) -> str:
        """The path the forward takes for input x (B, C_in, *L)."""
        return self._conv_path(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve every sample with its own kernel, along the fastest path for this shape."""
        return self._mix(x, self.attention(self.pool(x)))

    def extra_repr(self) -> str:
        """Torch-style summary plus the warehouse draw."""
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}, m={self.attention.mixtures}, "
                f"n={self.attention.cells}, bias={self.bias is not None}")


class KWConv1d(KWConvNd):
    """KW replacement of nn.Conv1d."""

    dims = 1


class KWConv2d(KWConvNd):
    """KW replacement of nn.Conv2d."""

    dims = 2


class KWConv3d(KWConvNd):
    """KW replacement of nn.Conv3d."""

    dims = 3


class KWLinear(KWLayer):
    """KW replacement of nn.Linear on (B, ..., C_in); the attention pools over every non-batch, non-channel dim."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        warehouse: Warehouse,
        own: tuple[int, int] | None = None,
        kw: KWConfig | None = None,
        plan: LayerPlan | None = None,
    ) -> None:
        self.in_features = self.in_channels = in_features
        self.out_features = self.out_channels = out_features
        self.groups = 1
        super().__init__((out_features, in_features), bias, warehouse, own, kw, plan)
        # a linear layer is a kernel-1 convolution over the tokens, read channels-last
        self.geometry = mixing.Geometry(
            in_features, out_features, 1, (1,), (1,), (1,), ((0, 0),), (*self.cell_shape[:2], 1)
        )

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over tokens/positions: (B, ..., C_in) -> (B, C_in)."""
        return x.reshape(x.shape[0], -1, x.shape[-1]).mean(1)

    @staticmethod
    def _tokens(x: torch.Tensor) -> torch.Tensor:
        """(B, ..., C_in) -> the tokens in conv layout (B, C_in, T) (a channels-last view)."""
        return x.reshape(x.shape[0], -1, x.shape[-1]).transpose(1, 2)

    def path_for(self, x: torch.Tensor) -> str:
        """The path the forward takes for input x (B, ..., C_in)."""
        return self._conv_path(self._tokens(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply every sample's own (C_out, C_in) matrix to its tokens, along the fastest path for this shape."""
        out = self._mix(self._tokens(x), self.attention(self.pool(x)))  # (B, C_out, T)
        return out.transpose(1, 2).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        """Torch-style summary plus the warehouse draw."""
        return (f"in_features={self.in_features}, out_features={self.out_features}, m={self.attention.mixtures}, "
                f"n={self.attention.cells}, bias={self.bias is not None}")
