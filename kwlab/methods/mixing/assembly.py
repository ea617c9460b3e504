"""Kernel assembly, pure arithmetic: cut a kernel into its m cells, and assemble kernels from attentions and cells.

A kernel W of shape (C_out, C_in/groups, k_1..k_D) is tiled by cells (c_out, c_in, ck_1..ck_D). Mixture index i
enumerates the tiles as (spatial blocks g_1..g_D, output block g_o, input block g_i), the reference's order, so the
attention matrices kwlab records read like the reference's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from kwlab.methods.mixing.geometry import Geometry



def layer_cell_shape(weight_shape: Sequence[int], cell: Sequence[int]) -> tuple[int, ...]:
    """The warehouse cell seen with the layer's number of spatial dims (1x1 cells fit linear, 1d, 2d and 3d)."""
    spatial = tuple(cell[2:]) if len(cell) == len(weight_shape) else (1,) * (len(weight_shape) - 2)
    return (cell[0], cell[1], *spatial)


def mixtures(weight_shape: Sequence[int], cell: Sequence[int]) -> int:
    """m: the number of cells a kernel of `weight_shape` is cut into (requires the cell to tile it)."""
    return math.prod(w // c for w, c in zip(weight_shape, layer_cell_shape(weight_shape, cell), strict=True))


def _grid(weight_shape: Sequence[int], cell: Sequence[int]) -> tuple[list[int], list[int]]:
    """Block counts (g_o, g_i, g_1..g_D) and the cell shape seen with the layer's spatial dims."""
    cell = layer_cell_shape(weight_shape, cell)
    return [w // c for w, c in zip(weight_shape, cell, strict=True)], list(cell)


def split_kernel(weight: torch.Tensor, cell: Sequence[int]) -> torch.Tensor:
    """Cut a kernel (C_out, C_in/g, *k) into its cells: (m, cell_numel), mixtures in reference order."""
    grid, cell = _grid(weight.shape, cell)
    dims = len(grid) - 2
    # (g_o, c_out, g_i, c_in, g_1, ck_1, ..., g_D, ck_D)
    tiled = weight.reshape(*(x for pair in zip(grid, cell, strict=True) for x in pair))
    order = [4 + 2 * d for d in range(dims)] + [0, 2, 1, 3] + [5 + 2 * d for d in range(dims)]
    return tiled.permute(order).reshape(-1, math.prod(cell))


def merge_kernel(parts: torch.Tensor, weight_shape: Sequence[int], cell: Sequence[int]) -> torch.Tensor:
    """Inverse of `split_kernel` over a leading batch dim: (B, m, cell_numel) -> (B, C_out, C_in/g, *k)."""
    grid, cell = _grid(weight_shape, cell)
    dims = len(grid) - 2
    batch = parts.shape[0]
    # (B, g_1..g_D, g_o, g_i, c_out, c_in, ck_1..ck_D)
    tiled = parts.reshape(batch, *grid[2:], grid[0], grid[1], *cell)
    spatial = [x for d in range(dims) for x in (1 + d, dims + 5 + d)]
    return tiled.permute(0, dims + 1, dims + 3, dims + 2, dims + 4, *spatial).reshape(batch, *weight_shape)


def assemble(alpha: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Mix cells with attentions: (B, m, n) @ (n, cell_numel) -> (B, m, cell_numel), w_i = sum_j alpha_ij E_j."""
    return alpha @ cells


def assembled_kernels(alpha: torch.Tensor, cells: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Every sample's kernel in conv layout, (B, C_out, C_in/g, *k), from alpha (B, m, n) and cells (n, cell_numel):
    one matmul and one copy into conv layout."""
    return merge_kernel(assemble(alpha, cells), geometry.weight_shape, geometry.cell)


def step_cells_as_shared(alpha: torch.Tensor, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each step's own cells written as one bank mixed by every step: alpha (B, R, n_r) over cells (R, n_r,
    cell_numel) -> a block-diagonal alpha (B, R, n_r x R) over cells (n_r x R, cell_numel), cell i x R + r being step
    r's i-th (ODConv's tap-major kernels viewed as K x k x k tap cells)."""
    steps, per_step = cells.shape[:2]
    eye = torch.eye(steps, dtype=alpha.dtype, device=alpha.device)
    dense = (alpha[..., None] * eye[:, None, :]).reshape(alpha.shape[0], steps, per_step * steps)  # (B, R, n_r*R)
    return dense, cells.transpose(0, 1).reshape(per_step * steps, -1)
