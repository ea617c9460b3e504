"""The `reference` and `shared` paths: every sample's kernel assembled in full, then plain convolutions.

`reference_conv` is the definition, one convolution per sample with its own kernel: the ground truth the tests check
every other path against (the papers' code runs one convolution with groups = B x groups instead: the `grouped`
path). `shared_conv` is the case of one alpha for every sample (KW at tau = 1 exactly, ODConv with neither kernel
nor spatial attention): one kernel, one dense convolution.
"""

from __future__ import annotations

import torch

from kwlab.methods.mixing.assembly import assembled_kernels
from kwlab.methods.mixing.geometry import CONV_BY_DIMS, Geometry
from kwlab.methods.mixing.grouped import _conv_padding


def reference_conv(x: torch.Tensor, kernels: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """y_b = conv(x_b, W_b), one convolution per sample, for per-sample kernels (B, C_out, C_in/g, *k):
    x (B, C_in, *L) -> (B, C_out, *L')."""
    x, padding = _conv_padding(x, geometry)
    conv = CONV_BY_DIMS[len(geometry.kernel)]
    return torch.cat([conv(x[b : b + 1], kernels[b], None, geometry.stride, padding, geometry.dilation,
                           geometry.groups) for b in range(x.shape[0])])


def shared_conv(x: torch.Tensor, alpha: torch.Tensor, cells: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """The attention is the same for every sample: one kernel from the first sample's alpha, one dense convolution.

    Gradients match the per-sample computation: the cells receive sum_b dW_b mixed by the common alpha.
    """
    kernel = assembled_kernels(alpha[:1], cells, geometry)[0]  # (C_out, C_in/g, *k): one kernel
    x, padding = _conv_padding(x, geometry)
    return CONV_BY_DIMS[len(geometry.kernel)](x, kernel, None, geometry.stride, padding, geometry.dilation,
                                              geometry.groups)
