"""KW layers: drop-in replacements of nn.Conv1d/2d/3d and nn.Linear whose kernels are mixed from a warehouse.

The forward picks the fastest path for the input's shape (see kwlab.methods.kw.fastpath); `reference_forward` keeps the
straightforward computation (assemble every kernel, permute it to conv layout, one grouped convolution over the batch)
that the tests check every path against and that `kwlab bench` reports as the "before".
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.modules.utils import _ntuple

from kwlab.methods.kw.assembly import assemble, merge_kernel
from kwlab.methods.kw.attention import KWAttention
from kwlab.methods.kw.config import KWConfig
from kwlab.methods.kw.fastpath import (CONV_BY_DIMS, PATHS, Geometry, choose_path, compute_dtype, kw_conv,
                                       resolve_padding, shared_conv)
from kwlab.methods.kw.planner import attention_hidden, initial_assignment, layer_cell_shape, mixtures, num_basis
from kwlab.methods.kw.warehouse import Warehouse


def initial_beta(m: int, n: int, own_start: int, own_cells: int) -> torch.Tensor:
    """The one-hot initial assignment beta (m, n+1): each mixture points at an own cell or at the zero cell."""
    beta = torch.zeros(m, n + 1)
    for i, offset in enumerate(initial_assignment(m, own_cells)):
        beta[i, n if offset is None else own_start + offset] = 1.0
    return beta


class KWLayer(nn.Module):
    """What every KW layer shares: a non-owning reference to its warehouse, its attention and its bias."""

    def __init__(
        self,
        weight_shape: tuple[int, ...],
        bias: bool,
        warehouse: Warehouse,
        own: tuple[int, int] | None,
        kw: KWConfig | None,
    ) -> None:
        super().__init__()
        kw = kw or KWConfig()
        # The module that builds the layers owns the warehouse (convert: `model.kw_warehouses`); each layer keeps a
        # plain reference so a shared warehouse appears once in state_dict() (EMA would otherwise update it k times).
        object.__setattr__(self, "warehouse", warehouse)
        self.weight_shape = weight_shape
        self.cell_shape = warehouse.cell_shape
        n = warehouse.num_cells
        own_start, own_cells = own if own is not None else (0, n)
        m = mixtures(weight_shape, warehouse.cell_shape)
        blend = kw.init == "one_to_one"
        self.attention = KWAttention(
            self.in_channels,
            m,
            n,
            attention_hidden(self.in_channels, kw.reduction, kw.min_hidden),
            initial_beta(m, n, own_start, own_cells) if blend else torch.zeros(m, n + 1),
            function=kw.attention,
            blend=blend,
            layer_norm=kw.attention_norm == "layer",
            own_start=own_start,
            own_cells=own_cells,
            num_basis=num_basis(n - own_cells, kw.nonlocal_basis_ratio),
        )
        self.bias = nn.Parameter(torch.zeros(weight_shape[0])) if bias else None
        self.memory = kw.memory  # fast | lean: whether backward may keep per-sample kernels (see KWConfig.memory)
        self.path = "auto"  # auto picks per input shape; tests and `kwlab bench` force one of fastpath.PATHS
        # set_temperature marks tau == 1 exactly (alpha = beta for every sample) with the buffer and its version
        self.attention.tau_is_one = None
        self.attention.register_load_state_dict_post_hook(_forget_temperature)

    @torch.no_grad()
    def reset_like_reference(self) -> None:
        """The reference's initialisation of a fresh KW layer: its own warehouse slice (Warehouse.init_slice) and a
        zero bias; the attention is constructed with the reference's initialisation already."""
        self.warehouse.init_slice(self.attention.own_start, self.attention.own_cells)
        if self.bias is not None:
            self.bias.zero_()

    in_channels: int
    groups: int
    geometry: Geometry  # the shape contract the fast paths work from (kwlab.methods.kw.fastpath.Geometry)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pool of the input to (B, C_in), the attention's input."""
        raise NotImplementedError

    def kernels(self, x: torch.Tensor) -> torch.Tensor:
        """Every sample's kernel (B, C_out, C_in/groups, *k) assembled from the warehouse."""
        alpha = self.attention(self.pool(x))  # (B, m, n)
        parts = assemble(alpha, self.warehouse.cells.to(alpha.dtype))  # (B, m, cell_numel)
        return merge_kernel(parts, self.weight_shape, self.cell_shape)

    def shares_alpha(self) -> bool:
        """Whether alpha is the same for every sample: the blend at tau = 1 exactly, known without reading the buffer.

        set_temperature(model, 1) leaves a marker (the tau buffer and its version counter); any later write to the
        buffer (by hand, load_state_dict, an EMA) bumps the version and voids it. Under torch.compile the marker is
        not consulted (the sample-dependent paths are exact at tau = 1 too).
        """
        marker = getattr(self.attention, "tau_is_one", None)
        if not self.attention.blend or marker is None or torch.compiler.is_compiling():
            return False
        tau, version = marker
        return tau is self.attention.tau and tau._version == version

    def select_path(self, positions: int, batch: int = 1, dtype: torch.dtype = torch.float32) -> str:
        """The path the forward takes for a batch with P = `positions` output positions per sample."""
        if self.path not in PATHS:
            raise ValueError(f"KW layer path {self.path!r} is not one of {PATHS}")
        if self.path != "auto":
            return self.path
        return choose_path(self.geometry, positions, self.attention.cells, self.shares_alpha(), self.memory,
                           batch, dtype.itemsize)

    def path_for(self, x: torch.Tensor) -> str:
        """The path the forward takes for x in conv layout, (B, C_in, *L) (a linear layer's tokens as (B, C_in, T))."""
        positions = math.prod(self.geometry.out_size(tuple(x.shape[2:])))
        return self.select_path(positions, x.shape[0], compute_dtype(x))

    def _mix(self, x: torch.Tensor, alpha: torch.Tensor, padding: str | tuple[int, ...]) -> torch.Tensor:
        """Convolve x (B, C_in, *L) with every sample's kernel (alpha (B, m, n)) along the selected path, with bias."""
        path = self.path_for(x)
        dtype = compute_dtype(x)
        x, alpha, cells = x.to(dtype), alpha.to(dtype), self.warehouse.cells
        if path == "shared":
            out = shared_conv(x, alpha, cells.to(dtype), self.geometry, self.weight_shape, padding)
        elif path == "grouped":
            out = kw_conv(x, alpha, cells.to(dtype), self.geometry, path, self.memory)
        else:  # batched and mixed cast the cells a block at a time
            out = kw_conv(x, alpha, cells, self.geometry, path, self.memory)
        if self.bias is not None:
            out = out + self.bias.to(out.dtype).reshape(1, -1, *([1] * (out.dim() - 2)))
        return out


def _forget_temperature(module: nn.Module, _incompatible: object) -> None:
    """After load_state_dict tau may be anything: use the sample-dependent paths until set_temperature says."""
    module.tau_is_one = None



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
    ) -> None:
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must divide by groups")
        as_tuple = _ntuple(self.dims)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.dilation = as_tuple(kernel_size), as_tuple(stride), as_tuple(dilation)
        self.padding = padding if isinstance(padding, str) else as_tuple(padding)
        super().__init__((out_channels, in_channels // groups, *self.kernel_size), bias, warehouse, own, kw)
        self.geometry = Geometry(
            in_channels, out_channels, groups, self.kernel_size, self.stride, self.dilation,
            resolve_padding(self.padding, self.kernel_size, self.dilation),
            layer_cell_shape(self.weight_shape, self.cell_shape),
        )

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over the spatial dims: (B, C_in, *spatial) -> (B, C_in)."""
        return x.mean(dim=tuple(range(2, x.dim())))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve every sample with its own kernel, along the fastest path for this shape."""
        if self.path == "reference":
            return reference_forward(self, x)
        return self._mix(x, self.attention(self.pool(x)), self.padding)

    def extra_repr(self) -> str:
        """Torch-style summary plus the warehouse draw."""
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}, m={self.attention.mixtures}, "
                f"n={self.attention.cells}, bias={self.bias is not None}")


def reference_forward(layer: KWLayer, x: torch.Tensor) -> torch.Tensor:
    """The straightforward computation: assemble every sample's kernel, permute it to conv layout, and run one grouped
    convolution with groups = B x groups (KWLinear: one batched matmul). Kept as the ground truth for tests and as
    the "before" of `kwlab bench`."""
    weight = layer.kernels(x).to(x.dtype)  # (B, C_out, C_in/g, *k)
    batch = x.shape[0]
    if isinstance(layer, KWLinear):
        tokens = x.reshape(batch, -1, x.shape[-1])  # (B, T, C_in)
        out = torch.bmm(tokens, weight.transpose(1, 2))  # (B, T, C_out)
        if layer.bias is not None:
            out = out + layer.bias.to(out.dtype)
        return out.reshape(*x.shape[:-1], layer.out_features)
    out = CONV_BY_DIMS[layer.dims](
        x.reshape(1, batch * layer.in_channels, *x.shape[2:]),  # (1, B*C_in, *spatial)
        weight.reshape(batch * layer.out_channels, *weight.shape[2:]),  # (B*C_out, C_in/g, *k)
        None, layer.stride, layer.padding, layer.dilation, layer.groups * batch,
    )
    out = out.reshape(batch, layer.out_channels, *out.shape[2:])  # (B, C_out, *spatial')
    if layer.bias is not None:
        out = out + layer.bias.to(out.dtype).reshape(1, -1, *([1] * layer.dims))
    return out


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
    ) -> None:
        self.in_features = self.in_channels = in_features
        self.out_features = self.out_channels = out_features
        self.groups = 1
        super().__init__((out_features, in_features), bias, warehouse, own, kw)
        # a linear layer is a kernel-1 convolution over the tokens, read channels-last
        self.geometry = Geometry(
            in_features, out_features, 1, (1,), (1,), (1,), ((0, 0),), (*self.cell_shape[:2], 1)
        )

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over tokens/positions: (B, ..., C_in) -> (B, C_in)."""
        return x.reshape(x.shape[0], -1, x.shape[-1]).mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply every sample's own (C_out, C_in) matrix to its tokens, along the fastest path for this shape."""
        if self.path == "reference":
            return reference_forward(self, x)
        tokens = x.reshape(x.shape[0], -1, x.shape[-1])  # (B, T, C_in)
        alpha = self.attention(self.pool(x))  # (B, m, n)
        out = self._mix(tokens.transpose(1, 2), alpha, 0)  # (B, C_out, T)
        return out.transpose(1, 2).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        """Torch-style summary plus the warehouse draw."""
        return (f"in_features={self.in_features}, out_features={self.out_features}, m={self.attention.mixtures}, "
                f"n={self.attention.cells}, bias={self.bias is not None}")
