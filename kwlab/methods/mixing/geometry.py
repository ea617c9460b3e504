"""The shape contract every per-sample path works from (`Geometry`), and the small facts about an input that choose
how it is computed: its padding, memory format and compute dtype."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

CONV_BY_DIMS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


@dataclass(frozen=True)
class Geometry:
    """A KW convolution's shape: channels, groups, kernel, stride, dilation, padding, and its warehouse cell.

    A linear layer is a 1-d convolution with kernel 1 on channels-last input. The kernel grid (C_out/c_out, C_in/g/c_in,
    k/ck) gives the block counts; "outer taps" are the spatial blocks of the grid (k for 1x1 cells, 1 for whole-kernel
    cells), "inner taps" the spatial positions inside one cell.
    """

    in_channels: int
    out_channels: int
    groups: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]  # (before, after) per spatial dim
    cell: tuple[int, ...]  # (c_out, c_in, *cell kernel)

    @classmethod
    def of(cls, in_channels: int, out_channels: int, groups: int, kernel: tuple[int, ...],
           cell: tuple[int, ...]) -> Geometry:
        """A geometry for counting work (stride, dilation 1, no padding; `kernel` () for a linear layer), e.g. to
        price a layer before it is built."""
        kernel = tuple(kernel) or (1,)
        ones = (1,) * len(kernel)
        return cls(in_channels, out_channels, groups, kernel, ones, ones, ((0, 0),) * len(kernel),
                   (*cell[:2], *(tuple(cell[2:]) if len(cell) == 2 + len(kernel) else ones)))

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """One kernel in conv layout, (C_out, C_in/groups, *k) (a linear layer's with k = 1)."""
        return (self.out_channels, self.in_channels // self.groups, *self.kernel)

    @property
    def kernel_numel(self) -> int:
        """K: the weights of one kernel, C_out x C_in/groups x k x k."""
        return math.prod(self.weight_shape)

    @property
    def blocks_out(self) -> int:
        """g_o: output blocks of the kernel grid."""
        return self.out_channels // self.cell[0]

    @property
    def blocks_in(self) -> int:
        """g_i: input blocks (per group) of the kernel grid."""
        return self.in_channels // self.groups // self.cell[1]

    @property
    def inner(self) -> tuple[int, ...]:
        """The cell's own kernel (1 per dim for the default spatial partition)."""
        return tuple(self.cell[2:]) or (1,) * len(self.kernel)

    @property
    def outer(self) -> tuple[int, ...]:
        """Spatial blocks of the kernel grid per dim."""
        return tuple(k // c for k, c in zip(self.kernel, self.inner, strict=True))

    @property
    def mixtures(self) -> int:
        """m = g_o x g_i x outer taps: the cells one kernel is cut into (1 when the cell is the whole kernel)."""
        return self.blocks_out * self.steps

    @property
    def steps(self) -> int:
        """R = outer taps x g_i: the number of (C_out x c_in') matrices a kernel splits into."""
        return math.prod(self.outer) * self.blocks_in

    @property
    def columns(self) -> int:
        """c_in' = c_in x inner taps: the columns of one step's matrix."""
        return self.cell[1] * math.prod(self.inner)

    def padded_size(self, size: tuple[int, ...]) -> list[int]:
        """Spatial size of an input of spatial size `size` after zero-padding."""
        return [n + lo + hi for n, (lo, hi) in zip(size, self.padding, strict=True)]

    def out_size(self, size: tuple[int, ...]) -> tuple[int, ...]:
        """Output spatial size for an input of spatial size `size`."""
        return tuple(
            (n + lo + hi - d * (k - 1) - 1) // s + 1
            for n, k, s, d, (lo, hi) in zip(size, self.kernel, self.stride, self.dilation, self.padding, strict=True)
        )


def resolve_padding(
    padding: str | tuple[int, ...], kernel: tuple[int, ...], dilation: tuple[int, ...]
) -> tuple[tuple[int, int], ...]:
    """torch's padding argument as explicit (before, after) pairs ('same' puts the odd one after, as torch does)."""
    if padding == "valid":
        return tuple((0, 0) for _ in kernel)
    if padding == "same":
        total = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        return tuple((t // 2, t - t // 2) for t in total)
    return tuple((p, p) for p in padding)


def channels_last(x: torch.Tensor) -> bool:
    """True when x (B, C, *L) is stored channels-last (and not also plainly contiguous)."""
    if x.dim() < 3 or x.is_contiguous():
        return False
    return x.movedim(1, -1).is_contiguous()


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a convolution runs in: autocast's for x's device when it is on, else x's."""
    kind = x.device.type
    if kind != "meta" and x.is_floating_point() and torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return x.dtype
