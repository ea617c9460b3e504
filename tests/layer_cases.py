"""A KW layer geometry for tests, shared by the layer and fast-path tests: the layer's constructor arguments."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kwlab.methods.kw.config import KWConfig
from kwlab.methods.kw.layers import KWConv1d, KWConv2d, KWConv3d, KWLayer, KWLinear
from kwlab.methods.kw.warehouse import Warehouse

KW_CONV = {1: KWConv1d, 2: KWConv2d, 3: KWConv3d}


@dataclass(frozen=True)
class LayerCase:
    """One KW layer geometry: dims 0 is a linear layer; `cell` is the warehouse cell; `input` the test input shape."""

    dims: int
    in_channels: int
    out_channels: int
    cell: tuple[int, ...]
    input: tuple[int, ...]
    kernel: int | tuple[int, ...] = 1
    stride: int | tuple[int, ...] = 1
    padding: int | str | tuple[int, ...] = 0
    dilation: int | tuple[int, ...] = 1
    groups: int = 1
    bias: bool = True

    def weight_shape(self) -> tuple[int, ...]:
        """The replaced layer's weight shape (C_out, C_in/groups, *k)."""
        kernel = () if self.dims == 0 else torch.nn.modules.utils._ntuple(self.dims)(self.kernel)
        return (self.out_channels, self.in_channels // self.groups, *kernel)

    def make(self, warehouse: Warehouse, kw: KWConfig | None = None, own: tuple[int, int] | None = None) -> KWLayer:
        """The KW layer drawing from `warehouse` (own cells as KWLayer takes them)."""
        if self.dims == 0:
            return KWLinear(self.in_channels, self.out_channels, self.bias, warehouse=warehouse, own=own, kw=kw)
        return KW_CONV[self.dims](
            self.in_channels, self.out_channels, self.kernel, self.stride, self.padding, self.dilation, self.groups,
            self.bias, warehouse=warehouse, own=own, kw=kw,
        )
