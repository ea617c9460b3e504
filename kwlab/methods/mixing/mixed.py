"""The `mixed` path: no per-sample kernels at all. The input is mixed, Z_j = sum_r alpha_rj X_r, then y = sum_j E_j Z_j
(one matmul per cell over the whole batch). It costs P/R of the assembly (P output positions per sample), so it wins
at small spatial sizes (deep layers, small images, linear layers on few tokens) and for few mixtures."""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from kwlab.methods.mixing.columns import _chunk_bytes, _fold, _into, _pad, _spans, _to_output, _unfold
from kwlab.methods.mixing.geometry import Geometry, channels_last


def _mixing_matrix(alpha: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """alpha (B, m, n) -> (B, g_o, n, R): per sample and output block, cell j's weight for each step."""
    batch, n = alpha.shape[0], alpha.shape[-1]
    a = alpha.reshape(batch, math.prod(geometry.outer), geometry.blocks_out, geometry.blocks_in, n)
    return a.permute(0, 2, 4, 1, 3).reshape(batch, geometry.blocks_out, n, geometry.steps)


def _mixing_from_matrix(grad: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Inverse of `_mixing_matrix` for a gradient: (B, g_o, n, R) -> (B, m, n)."""
    batch, go, n = grad.shape[:3]
    g = grad.reshape(batch, go, n, math.prod(geometry.outer), geometry.blocks_in)
    return g.permute(0, 3, 1, 4, 2).reshape(batch, -1, n)


def _mixed(a: torch.Tensor, cols: torch.Tensor, geometry: Geometry, positions: int) -> torch.Tensor:
    """Z_j = sum_r alpha_rj X_r for the cells j of `a` (B, g_o, j, R): (j, B*g_o*P, c_in'), one matrix per cell."""
    batch, go, cells = a.shape[:3]
    z = torch.bmm(a.reshape(batch, go * cells, -1), cols)  # (B, g_o*j, P*c_in')
    z = z.view(batch, go, cells, positions, geometry.columns)
    return z.permute(2, 0, 1, 3, 4).reshape(cells, -1, geometry.columns)


class _MixedConv(torch.autograd.Function):
    """y = sum_j E_j Z_j with Z_j = sum_r alpha_rj X_r: the input is mixed instead of the kernels.

    Cells are taken a block at a time so that Z stays small; nothing per-sample but x and alpha is kept for backward.
    """

    @staticmethod
    def forward(ctx, x, alpha, cells, geometry: Geometry):  # noqa: D102
        batch, last = x.shape[0], channels_last(x)
        out_size = geometry.out_size(tuple(x.shape[2:]))
        positions, n, go, c_out = math.prod(out_size), cells.shape[0], geometry.blocks_out, geometry.cell[0]
        a = _mixing_matrix(alpha, geometry)  # (B, g_o, n, R)
        cols = _unfold(_pad(x, geometry), geometry, out_size, True, True).reshape(batch, geometry.steps, -1)
        cells3 = cells.view(n, c_out, geometry.columns)  # (n, c_out, c_in'): cells as they are stored
        y = None
        rows = batch * go * positions
        for j0, j1 in _spans(n, rows * geometry.columns * x.element_size(), _chunk_bytes(x.device)):
            mixed = _mixed(a[:, :, j0:j1], cols, geometry, positions)  # (j, B*g_o*P, c_in')
            part = torch.bmm(mixed, cells3[j0:j1].to(x.dtype).transpose(1, 2)).sum(0)  # (B*g_o*P, c_out)
            y = part if y is None else y.add_(part)
        ctx.save_for_backward(x, a, cells)
        ctx.geometry, ctx.last = geometry, last
        y = y.view(batch, go, positions, c_out)
        if last:  # (B, P, g_o, c_out): a copy only when g_o > 1
            return _to_output(y.transpose(1, 2).reshape(batch, positions, -1), batch, out_size, True)
        return _to_output(y.permute(0, 1, 3, 2).reshape(batch, -1, positions), batch, out_size, False)

    @staticmethod
    @once_differentiable  # the backward writes into buffers in place: no double backward
    def backward(ctx, dy):  # noqa: D102
        geometry = ctx.geometry
        x, a, cells = ctx.saved_tensors
        batch, n, go, c_out = x.shape[0], cells.shape[0], geometry.blocks_out, geometry.cell[0]
        out_size = geometry.out_size(tuple(x.shape[2:]))
        positions, columns = math.prod(out_size), geometry.columns
        need_x, need_alpha, need_cells = ctx.needs_input_grad[:3]
        # (B, C_out, *L') -> (B, g_o, P, c_out) -> (M, c_out), M = B*g_o*P
        dy = dy.reshape(batch, go, c_out, positions).transpose(2, 3).reshape(-1, c_out)
        cols = _unfold(_pad(x, geometry), geometry, out_size, True, True).reshape(batch, geometry.steps, -1)
        cells3 = cells.view(n, c_out, columns)
        dcells = torch.empty_like(cells, dtype=x.dtype) if need_cells else None  # autograd casts it back
        da = torch.empty_like(a) if need_alpha else None
        dcols = torch.zeros_like(cols) if need_x else None
        for j0, j1 in _spans(n, dy.shape[0] * columns * x.element_size(), _chunk_bytes(x.device)):
            if need_cells:  # dE_j = dY^T Z_j
                mixed = _mixed(a[:, :, j0:j1], cols, geometry, positions)
                _into(dcells[j0:j1].view(j1 - j0, c_out, columns), torch.matmul, dy.t(), mixed)
            if need_x or need_alpha:
                dmixed = torch.matmul(dy, cells3[j0:j1].to(x.dtype))  # (j, M, c_in')
                # (j, B, g_o, P*c_in') -> (B, g_o*j, P*c_in')
                dmixed = dmixed.view(j1 - j0, batch, go, -1).permute(1, 2, 0, 3).reshape(batch, -1, cols.shape[-1])
                if need_alpha:  # (B, j, R) per output block
                    per_block = dmixed.view(batch, go, j1 - j0, -1)
                    for g in range(go):
                        _into(da[:, g, j0:j1], torch.bmm, per_block[:, g], cols.transpose(1, 2))
                if need_x:  # (B, R, P*c_in') += (B, R, g_o*j) @ (B, g_o*j, P*c_in')
                    dcols.baddbmm_(a[:, :, j0:j1].reshape(batch, -1, geometry.steps).transpose(1, 2), dmixed)
        dx = _fold(dcols, x, geometry, out_size, True, True) if need_x else None
        dalpha = _mixing_from_matrix(da, geometry) if need_alpha else None
        return dx, dalpha, dcells, None
