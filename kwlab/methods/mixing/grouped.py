"""The `grouped` path: every sample's kernel in conv layout, one convolution with groups = B x groups (oneDNN runs it
close to the dense rate on large feature maps); the only path for grouped and depthwise convolutions. memory='lean'
assembles the kernels again in backward instead of keeping them."""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from kwlab.methods.mixing.assembly import assembled_kernels
from kwlab.methods.mixing.columns import _crop, _pad
from kwlab.methods.mixing.geometry import CONV_BY_DIMS, Geometry


def _conv_padding(x: torch.Tensor, geometry: Geometry) -> tuple[torch.Tensor, list[int]]:
    """The input and padding argument for torch's convolution: asymmetric padding ('same' with an even kernel) is
    applied to the input explicitly, since the convolution takes one value per side."""
    if any(lo != hi for lo, hi in geometry.padding):
        return _pad(x, geometry), [0] * len(geometry.kernel)
    return x, [lo for lo, _ in geometry.padding]


def _conv_layout_kernels(alpha: torch.Tensor, cells: torch.Tensor, geometry: Geometry, block: int) -> torch.Tensor:
    """Input block g_i's slice of every sample's kernel, (B, C_out, c_in, *k), in conv layout.

    One matmul alpha @ cells for every sample, tap and output block, then (1x1 cells) one copy that puts the taps
    last, as conv layout wants: faster than a batched matmul that writes conv layout directly, whose products have
    only k x k columns (6-12 times, forward and backward, on KW's and ResNet18's shapes); with whole-kernel cells
    alpha @ cells is already in conv layout.
    """
    batch, n = alpha.shape[0], alpha.shape[-1]
    go, gi, taps = geometry.blocks_out, geometry.blocks_in, math.prod(geometry.outer)
    c_out, c_in = geometry.cell[:2]
    a = alpha.reshape(batch, taps, go, gi, n)[:, :, :, block]  # (B, taps, g_o, n)
    kernels = a @ cells  # (B, taps, g_o, c_out*c_in*inner)
    if taps > 1:  # (B, taps, C_out, c_in) -> (B, C_out, c_in, taps)
        kernels = kernels.view(batch, taps, go * c_out, c_in).permute(0, 2, 3, 1)
    return kernels.reshape(batch, geometry.out_channels, c_in, *geometry.kernel)


def _block_input(x: torch.Tensor, geometry: Geometry, block: int | None) -> torch.Tensor:
    """The channels of input block g_i in every group (all of them for `block` None), as one (1, B*channels, *L)
    tensor for a grouped conv."""
    batch, groups, c_in = x.shape[0], geometry.groups, geometry.cell[1]
    if block is not None and geometry.blocks_in > 1:
        x = x.reshape(batch, groups, geometry.blocks_in, c_in, *x.shape[2:])[:, :, block]
    return x.reshape(1, -1, *x.shape[-len(geometry.kernel):])


def grouped_apply(x: torch.Tensor, kernels: torch.Tensor, geometry: Geometry, block: int | None = None
                  ) -> torch.Tensor:
    """y_b = conv(x_b, W_b) as one convolution with groups = B x groups: x (B, C_in, *L), per-sample kernels in conv
    layout, (B, C_out, C_in/g, *k), or for input block `block` only (B, C_out, c_in, *k) -> (B, C_out, *L')."""
    batch = x.shape[0]
    x, padding = _conv_padding(x, geometry)
    out = CONV_BY_DIMS[len(geometry.kernel)](
        _block_input(x, geometry, block),  # (1, B*channels, *L)
        kernels.reshape(batch * geometry.out_channels, *kernels.shape[2:]),  # (B*C_out, channels/g, *k)
        None, geometry.stride, padding, geometry.dilation, batch * geometry.groups,
    )
    return out.reshape(batch, geometry.out_channels, *out.shape[2:])


def grouped_conv(x: torch.Tensor, alpha: torch.Tensor, cells: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Every sample's kernel assembled in full (one matmul, one copy into conv layout) and one convolution with
    groups = B x groups, as the papers' code computes (autograd keeps the kernels: the `fast` memory mode)."""
    return grouped_apply(x, assembled_kernels(alpha, cells, geometry), geometry)


def _blockwise_conv(x: torch.Tensor, alpha: torch.Tensor, cells: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """`grouped_conv` one input block g_i at a time (only one block's kernels exist at once)."""
    y = None
    for block in range(geometry.blocks_in):
        out = grouped_apply(x, _conv_layout_kernels(alpha, cells, geometry, block), geometry, block)
        y = out if y is None else y + out
    return y


class _GroupedLean(torch.autograd.Function):
    """`grouped_conv` one input block at a time that assembles the kernels again in backward instead of keeping
    them."""

    @staticmethod
    def forward(ctx, x, alpha, cells, geometry: Geometry):  # noqa: D102
        ctx.save_for_backward(x, alpha, cells)
        ctx.geometry = geometry
        return _blockwise_conv(x, alpha, cells, geometry)

    @staticmethod
    @once_differentiable  # the backward writes into buffers in place: no double backward
    def backward(ctx, dy):  # noqa: D102
        x, alpha, cells = ctx.saved_tensors
        geometry = ctx.geometry
        need_x, need_alpha, need_cells = ctx.needs_input_grad[:3]
        batch, n, dims = x.shape[0], cells.shape[0], len(geometry.kernel)
        go, gi, taps = geometry.blocks_out, geometry.blocks_in, math.prod(geometry.outer)
        xp, padding = _conv_padding(x, geometry)
        dxp = torch.zeros_like(xp).reshape(batch, geometry.groups, gi, -1, *xp.shape[2:]) if need_x else None
        dalpha = torch.zeros_like(alpha).reshape(batch, taps, go, gi, n) if need_alpha else None
        dcells = torch.zeros_like(cells) if need_cells else None
        grad = dy.reshape(1, -1, *dy.shape[2:])  # (1, B*C_out, *L')
        for block in range(gi):
            kernels = _conv_layout_kernels(alpha, cells, geometry, block)  # (B, C_out, c_in, *k)
            dx_block, dkernels, _ = torch.ops.aten.convolution_backward(
                grad, _block_input(xp, geometry, block), kernels.reshape(-1, *kernels.shape[2:]), None,
                list(geometry.stride), padding, list(geometry.dilation), False, [0] * dims, batch * geometry.groups,
                [need_x, need_alpha or need_cells, False],
            )
            if need_x:
                dxp[:, :, block] += dx_block.reshape(dxp[:, :, block].shape)
            if need_alpha or need_cells:
                a = alpha.reshape(batch, taps, go, gi, n)[:, :, :, block]  # (B, taps, g_o, n)
                # kernels = a @ cells with the taps moved last: the gradient with the taps moved back (a copy)
                dk = dkernels.reshape(batch, go, -1, taps).permute(0, 3, 1, 2).reshape(-1, cells.shape[1])
                if need_alpha:  # (B*taps*g_o, cell) @ (cell, n)
                    dalpha[:, :, :, block] = (dk @ cells.t()).view(batch, taps, go, n)
                if need_cells:  # (n, B*taps*g_o) @ (B*taps*g_o, cell)
                    dcells.addmm_(a.reshape(-1, n).t(), dk)
        dx = None
        if need_x:
            dx = dxp.reshape(xp.shape)
            dx = _crop(dx, geometry) if xp is not x else dx
        return dx, dalpha.reshape(alpha.shape) if need_alpha else None, dcells, None


class _GroupedRebuilt(torch.autograd.Function):
    """`grouped_apply` of the kernels `build(*inputs)` (a method's own assembly, e.g. ODConv's per-tap scaling) that
    keeps x and the inputs, not the kernels: backward builds them again (memory='lean')."""

    @staticmethod
    def forward(ctx, x, geometry: Geometry, build, *inputs):  # noqa: D102
        ctx.save_for_backward(x, *inputs)
        ctx.geometry, ctx.build = geometry, build
        return grouped_apply(x, build(*inputs), geometry)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):  # noqa: D102
        x, *inputs = ctx.saved_tensors
        geometry, need_x, need = ctx.geometry, ctx.needs_input_grad[0], ctx.needs_input_grad[3:]
        with torch.enable_grad():  # the kernels again, as a graph from the inputs that need a gradient
            leaves = [t.detach().requires_grad_(n) if t is not None else None for t, n in zip(inputs, need)]
            kernels = ctx.build(*leaves)  # (B, C_out, C_in/g, *k)
        batch, dims = x.shape[0], len(geometry.kernel)
        xp, padding = _conv_padding(x, geometry)
        dxp, dkernels, _ = torch.ops.aten.convolution_backward(
            dy.reshape(1, -1, *dy.shape[2:]), _block_input(xp, geometry, None),
            kernels.detach().reshape(-1, *kernels.shape[2:]), None, list(geometry.stride), padding,
            list(geometry.dilation), False, [0] * dims, batch * geometry.groups, [need_x, any(need), False],
        )
        grads: list[torch.Tensor | None] = [None] * len(inputs)
        wanted = [i for i, leaf in enumerate(leaves) if leaf is not None and leaf.requires_grad]
        if wanted:
            found = torch.autograd.grad(kernels, [leaves[i] for i in wanted], dkernels.reshape(kernels.shape))
            for i, grad in zip(wanted, found, strict=True):
                grads[i] = grad
        dx = None
        if need_x:
            dx = dxp.reshape(xp.shape)
            dx = _crop(dx, geometry) if xp is not x else dx
        return dx, None, None, *grads
