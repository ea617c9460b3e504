"""KW layers: drop-in replacements of nn.Conv1d/2d/3d and nn.Linear whose kernels are mixed from a warehouse."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _ntuple

from kwlab.kw.assembly import assemble, merge_kernel
from kwlab.kw.attention import KWAttention
from kwlab.kw.config import KWConfig
from kwlab.kw.planner import attention_hidden, initial_assignment, mixtures
from kwlab.kw.warehouse import Warehouse


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
            nonlocal_basis_ratio=kw.nonlocal_basis_ratio,
        )
        self.bias = nn.Parameter(torch.zeros(weight_shape[0])) if bias else None

    in_channels: int

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pool of the input to (B, C_in), the attention's input."""
        raise NotImplementedError

    def kernels(self, x: torch.Tensor) -> torch.Tensor:
        """Every sample's kernel (B, C_out, C_in/groups, *k) assembled from the warehouse."""
        alpha = self.attention(self.pool(x))  # (B, m, n)
        parts = assemble(alpha, self.warehouse.cells.to(alpha.dtype))  # (B, m, cell_numel)
        return merge_kernel(parts, self.weight_shape, self.cell_shape)


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

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over the spatial dims: (B, C_in, *spatial) -> (B, C_in)."""
        return x.mean(dim=tuple(range(2, x.dim())))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve every sample with its own kernel (one grouped convolution over the batch)."""
        batch = x.shape[0]
        weight = self.kernels(x).to(x.dtype)  # (B, C_out, C_in/g, *k)
        out = _CONV[self.dims](
            x.reshape(1, batch * self.in_channels, *x.shape[2:]),  # (1, B*C_in, *spatial)
            weight.reshape(batch * self.out_channels, *weight.shape[2:]),  # (B*C_out, C_in/g, *k)
            None, self.stride, self.padding, self.dilation, self.groups * batch,
        )
        out = out.reshape(batch, self.out_channels, *out.shape[2:])  # (B, C_out, *spatial')
        if self.bias is not None:
            out = out + self.bias.to(out.dtype).reshape(1, -1, *([1] * self.dims))
        return out

    def extra_repr(self) -> str:
        """Torch-style summary plus the warehouse draw."""
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}, m={self.attention.mixtures}, "
                f"n={self.attention.cells}, bias={self.bias is not None}")


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


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

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over tokens/positions: (B, ..., C_in) -> (B, C_in)."""
        return x.reshape(x.shape[0], -1, x.shape[-1]).mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply every sample's own (C_out, C_in) matrix with one batched matmul."""
        weight = self.kernels(x).to(x.dtype)  # (B, C_out, C_in)
        tokens = x.reshape(x.shape[0], -1, x.shape[-1])  # (B, T, C_in)
        out = torch.bmm(tokens, weight.transpose(1, 2))  # (B, T, C_out)
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        """Torch-style summary plus the warehouse draw."""
        return (f"in_features={self.in_features}, out_features={self.out_features}, m={self.attention.mixtures}, "
                f"n={self.attention.cells}, bias={self.bias is not None}")
