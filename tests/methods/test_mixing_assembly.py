"""Tests for kwlab.methods.mixing.assembly: cutting kernels into cells and assembling kernels from attentions and
cells."""

from __future__ import annotations

import math

import pytest
import torch

from kwlab.methods.mixing.assembly import assemble, merge_kernel, mixtures, split_kernel

# (kernel shape (C_out, C_in/groups, *k), cell shape): 1d, 2d, 3d, linear, non-square kernels, and whole-kernel cells
# (spatial_partition False: the cell keeps the kernel's spatial extent).
KERNELS = {
    "conv1d": ((6, 4, 3), (3, 2, 1)),
    "conv2d": ((8, 4, 3, 3), (4, 2, 1, 1)),
    "conv2d-rect": ((4, 6, 3, 2), (2, 3, 1, 1)),
    "conv2d-depthwise": ((6, 1, 3, 3), (3, 1, 1, 1)),
    "conv2d-2d-cell-from-flat": ((6, 4, 3, 3), (3, 2)),  # a linear-shaped cell used by a conv: 1x1 spatially
    "conv3d": ((4, 2, 3, 2, 3), (2, 1, 1, 1, 1)),
    "linear": ((6, 4), (3, 2)),
    "conv2d-whole-kernel": ((6, 4, 3, 3), (3, 2, 3, 3)),
    "conv3d-whole-kernel": ((4, 4, 3, 3, 3), (2, 4, 3, 3, 3)),
    "single-cell": ((5, 3, 3), (5, 3, 3)),
}


@pytest.mark.parametrize("shape,cell", KERNELS.values(), ids=KERNELS.keys())
def test_split_then_merge_is_identity(shape, cell, generator):
    weight = torch.randn(shape, generator=generator, dtype=torch.float64)
    parts = split_kernel(weight, cell)
    assert parts.shape == (mixtures(shape, cell), math.prod(cell))
    torch.testing.assert_close(merge_kernel(parts[None], shape, cell)[0], weight, rtol=0, atol=0)


@pytest.mark.parametrize("shape,cell", KERNELS.values(), ids=KERNELS.keys())
def test_merge_then_split_is_identity_over_a_batch(shape, cell, generator):
    parts = torch.randn(3, mixtures(shape, cell), math.prod(cell), generator=generator)
    kernels = merge_kernel(parts, shape, cell)
    assert kernels.shape == (3, *shape)
    for b in range(3):
        torch.testing.assert_close(split_kernel(kernels[b], cell), parts[b], rtol=0, atol=0)


@pytest.mark.parametrize("shape,cell", KERNELS.values(), ids=KERNELS.keys())
def test_split_follows_the_reference_mixture_order(shape, cell, generator, mixture_tiles):
    """Row i of split_kernel is the tile at (spatial blocks, output block, input block) enumerated in that order."""
    weight = torch.randn(shape, generator=generator)
    parts = split_kernel(weight, cell)
    tiles = mixture_tiles(shape, cell)
    assert len(tiles) == parts.shape[0]
    for i, tile in enumerate(tiles):
        torch.testing.assert_close(parts[i], weight[tile].reshape(-1), rtol=0, atol=0)


def test_mixture_order_golden():
    """A 2x1 kernel of 2x2 channels cut in 1x1x1x1 cells: index = ((k_h * W + k_w) * C_out + o) * C_in + i."""
    # Hand-computed: weight[o, i, h, 0] = 100*o + 10*i + h, so row order is h-major, then o, then i.
    weight = torch.tensor([[[[0.0], [1.0]], [[10.0], [11.0]]], [[[100.0], [101.0]], [[110.0], [111.0]]]])
    assert weight.shape == (2, 2, 2, 1)
    parts = split_kernel(weight, (1, 1, 1, 1))
    assert parts.flatten().tolist() == [0.0, 10.0, 100.0, 110.0, 1.0, 11.0, 101.0, 111.0]


def test_assemble_is_the_attention_weighted_sum_of_cells(generator):
    alpha = torch.randn(2, 5, 7, generator=generator, dtype=torch.float64)  # (B, m, n)
    cells = torch.randn(7, 6, generator=generator, dtype=torch.float64)  # (n, cell_numel)
    mixed = assemble(alpha, cells)
    assert mixed.shape == (2, 5, 6)
    for b in range(2):
        for i in range(5):
            expected = sum(alpha[b, i, j] * cells[j] for j in range(7))
            torch.testing.assert_close(mixed[b, i], expected)


@pytest.mark.parametrize(
    "shape,cell,expected",
    [
        ((64, 64, 3, 3), (64, 64, 1, 1), 9),  # ResNet18 layer1 3x3 conv, 1x cells
        ((128, 64, 1, 1), (64, 64, 1, 1), 2),  # ResNet18 layer2 downsample in stage 0's warehouse
        ((64, 64, 3, 3), (32, 32, 1, 1), 36),  # cell ratios 1/2
        ((96, 1, 7, 7), (96, 1, 1, 1), 49),  # ConvNeXt-T depthwise 7x7
        ((384, 96), (96, 96), 4),  # ConvNeXt-T pointwise linear
        ((6, 4, 3, 3), (3, 2, 3, 3), 4),  # whole-kernel cells
    ],
)
def test_mixture_count(shape, cell, expected):
    assert mixtures(shape, cell) == expected
