"""The `reference` and `shared` paths: every sample's kernel assembled in full, then plain convolutions.

`reference_conv` is the computation the papers' code runs (KernelWarehouse's, ODConv's and timm's CondConv2d: every
kernel in conv layout, one convolution with groups = B x groups); the tests check every other path against it.
`shared_conv` is the case of one alpha for every sample (KW at tau = 1 exactly, ODConv with neither kernel nor
spatial attention): one kernel, one dense convolution.
"""

from __future__ import annotations

import torch

from kwlab.methods.mixing.assembly import assemble, merge_kernel
from kwlab.methods.mixing.grouped import _conv_padding
from kwlab.methods.mixing.geometry import CONV_BY_DIMS, Geometry


def assembled_kernels(alpha: torch.Tensor, cells: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Every sample's kernel in conv layout, (B, C_out, C_in/g, *k), from alpha (B, m, n) and cells (n, cell_numel)."""
    return merge_kernel(assemble(alpha, cells), geometry.weight_shape, geometry.cell)


def reference_conv(x: torch.Tensor, kernels: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """y_b = conv(x_b, W_b) for per-sample kernels (B, C_out, C_in/g, *k) as one convolution with groups = B x groups:
    x (B, C_in, *L) -> (B, C_out, *L')."""
    batch = x.shape[0]
    x, padding = _conv_padding(x, geometry)
    out = CONV_BY_DIMS[len(geometry.kernel)](
        x.reshape(1, batch * geometry.in_channels, *x.shape[2:]),  # (1, B*C_in, *L)
        kernels.reshape(batch * geometry.out_channels, *kernels.shape[2:]),  # (B*C_out, C_in/g, *k)
        None, geometry.stride, padding, geometry.dilation, geometry.groups * batch,
    )
    return out.reshape(batch, geometry.out_channels, *out.shape[2:])  # (B, C_out, *L')


def shared_conv(x: torch.Tensor, alpha: torch.Tensor, cells: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """The attention is the same for every sample: one kernel from the first sample's alpha, one dense convolution.

    Gradients match the per-sample computation: the cells receive sum_b dW_b mixed by the common alpha.
    """
    kernel = assembled_kernels(alpha[:1], cells, geometry)[0]  # (C_out, C_in/g, *k): one kernel
    x, padding = _conv_padding(x, geometry)
    return CONV_BY_DIMS[len(geometry.kernel)](x, kernel, None, geometry.stride, padding, geometry.dilation,
                                              geometry.groups)
