"""The `combined` path, convolve then combine: y_b = sum_k alpha_b,k (W_k * x_b). K dense convolutions of the whole
batch, run as one convolution with K x C_out output channels (oneDNN's or cuDNN's dense kernels), then a weighted sum
of the K outputs per sample. No per-sample kernel exists, at K times the convolution's multiply-adds; it pays where
the per-sample kernels cost more memory traffic than K convolutions cost arithmetic (deep layers, few kernels).

Only for layers of one mixture whose cells are whole kernels (m = 1: CondConv, DY-Conv, ODConv's 1x1 convs, a KW
layer whose cell is its kernel). Plain differentiable ops, so autograd (and torch.compile) derive the backward: the
gradient of the K outputs is alpha times dy, and the K outputs are kept for alpha's gradient. Nothing per-sample is
kept in either memory mode.
"""

from __future__ import annotations

import torch

from kwlab.methods.mixing.geometry import CONV_BY_DIMS, Geometry, channels_last
from kwlab.methods.mixing.grouped import _conv_padding


def stacked_kernels(cells: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """The n whole-kernel cells (n, C_out x C_in/g x k..) as one kernel of n x C_out outputs in the group order a
    convolution with `groups` wants: (g x n x C_out/g, C_in/g, *k)."""
    n, groups = cells.shape[0], geometry.groups
    weight = cells.view(n, groups, geometry.out_channels // groups, -1)  # (n, g, C_out/g, C_in/g*k..)
    return weight.transpose(0, 1).reshape(-1, *geometry.weight_shape[1:])  # (g*n*C_out/g, C_in/g, *k)


def combine(outputs: torch.Tensor, alpha: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """y_b = sum_k alpha_b,k z_b,k: the stacked outputs (B, g x n x C_out/g, *L') and alpha (B, n) -> (B, C_out, *L'),
    in the outputs' memory format."""
    batch, n, groups = outputs.shape[0], alpha.shape[-1], geometry.groups
    size = outputs.shape[2:]
    if channels_last(outputs):  # (B, *L', g, n, C_out/g): a weighted sum over n
        z = outputs.movedim(1, -1).unflatten(-1, (groups, n, -1))
        y = (z * alpha.view(batch, *(1,) * len(size), 1, n, 1)).sum(-2)  # (B, *L', g, C_out/g)
        return y.flatten(-2).movedim(-1, 1)
    z = outputs.reshape(batch, groups, n, -1)  # (B, g, n, C_out/g x L')
    y = alpha.view(batch, 1, 1, n) @ z  # (B, g, 1, C_out/g x L'): one batched product
    return y.reshape(batch, geometry.out_channels, *size)


def combined_conv(x: torch.Tensor, alpha: torch.Tensor, cells: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """y_b = sum_k alpha_b,k (W_k * x_b) for alpha (B, 1, n) and whole-kernel cells (n, C_out x C_in/g x k..): one
    convolution to n x C_out channels, then `combine`."""
    if geometry.mixtures != 1:
        raise ValueError(f"the combined path needs whole-kernel cells (one mixture), not {geometry.mixtures}")
    x, padding = _conv_padding(x, geometry)
    outputs = CONV_BY_DIMS[len(geometry.kernel)](x, stacked_kernels(cells, geometry), None, geometry.stride, padding,
                                                 geometry.dilation, geometry.groups)
    return combine(outputs, alpha[:, 0], geometry)
