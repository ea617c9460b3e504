"""`Warehouse`: a bank of n kernel cells E_1..E_n of one shape, shared by the KW layers that draw on it."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class Warehouse(nn.Module):
    """n cells of shape `cell_shape`, stored flat as (n, cell_numel) so that any memory format leaves them alone."""

    def __init__(self, cells: int, cell_shape: Sequence[int]) -> None:
        super().__init__()
        self.cell_shape = tuple(int(c) for c in cell_shape)
        self.cells = nn.Parameter(torch.empty(cells, math.prod(self.cell_shape)))
        nn.init.normal_(self.cells, std=math.sqrt(2.0 / math.prod(self.cell_shape[:1] + self.cell_shape[2:])))

    @torch.no_grad()
    def init_slice(self, start: int, count: int) -> None:
        """The reference's initialisation of one layer's own cells [start, start + count): Kaiming normal (fan-out,
        ReLU gain) on the slice viewed as (count x c_out, c_in, *cell kernel), i.e. std sqrt(2 / fan-out) with
        fan-out = count x c_out x cell kernel size (the reference's Warehouse_Manager.allocate)."""
        if count > 0:
            fan_out = count * self.cell_shape[0] * math.prod(self.cell_shape[2:])
            self.cells[start : start + count].normal_(0.0, math.sqrt(2.0 / fan_out))

    @property
    def num_cells(self) -> int:
        """n, the number of cells."""
        return self.cells.shape[0]

    def extra_repr(self) -> str:
        """Show n and the cell shape."""
        return f"cells={self.num_cells}, cell_shape={self.cell_shape}"
