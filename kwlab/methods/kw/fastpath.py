"""Fast KW convolutions: per-sample kernels without the reference's permute copies and batch-grouped convolution.

A KW layer computes y_b = W_b * x_b with every sample's kernel mixed from the warehouse, W_b,i = sum_j alpha_b,ij E_j
(Li & Yao, ICML 2024). The reference assembles all B kernels, permutes them into conv layout and runs one convolution
with groups = B, keeping the kernels for backward. Here a kernel is regrouped by *steps*: step r = (outer tap, input
block g_i) of its cell grid. Within a step the (g_o, c_out) x (c_in, inner taps) weights form one (C_out, c_in')
matrix per sample, which `alpha @ cells` yields contiguous, straight in the layout the product consumes. Paths, picked
per shape by `choose_path`:

- `batched`: W_r = alpha_r @ cells for a block of the cell's output channels at a time (the warehouse is read once,
  the kernels stay in cache), then y += W_r X_r as batched matmuls. X_r is a shifted view of the flattened padded
  input for stride-1 convolutions, else a slice of one unfold copy. memory='lean' assembles again in backward.
- `mixed`: no per-sample kernels at all: mix the input, Z_j = sum_r alpha_rj X_r, then y = sum_j E_j Z_j (one matmul
  per cell, over the whole batch). It costs P/R of the assembly (P output positions per sample), so it wins at small
  spatial sizes (deep layers, small images, linear layers on few tokens), below the "FLOP limit" of the assembly.
- `grouped`: grouped and depthwise convolutions: kernels in conv layout (cells on the left of the matmul, taps last),
  one convolution with groups = B x groups; memory='lean' assembles again in backward.
- `shared`: alpha is the same for every sample (tau = 1 exactly with the one-to-one blend): one dense convolution.

The functions take x (B, C_in, *L) in either memory format (channels-last in, channels-last out), alpha (B, m, n) in
the reference mixture order (outer taps, g_o, g_i) and cells (n, cell_numel), and compute in x's dtype; `batched` and
`mixed` cast the cells a block at a time, so under autocast no low-precision copy of the warehouse is kept per layer.
tests/test_fastpath.py checks each path against the reference computation.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from kwlab.methods.kw.assembly import merge_kernel

PATHS = ("auto", "reference", "batched", "mixed", "grouped", "shared")
# Per-sample kernels (and mixed inputs) are built this many bytes at a time: on a CPU a block that stays in the
# heap (below malloc's mmap threshold) and near the caches; on an accelerator, all at once.
CHUNK_BYTES = 1 << 23
CHUNK_BYTES_ACCELERATOR = 1 << 32
# Cost of moving one per-sample kernel element through memory, in multiply-adds, while all B kernels of a layer fit
# in KERNEL_CACHE_BYTES and once they do not: memory traffic makes `batched` lose to `mixed` well before the FLOP
# counts cross. Measured on a 2-core Xeon (see `choose_path`).
KERNEL_TRAFFIC = (80, 250)
KERNEL_CACHE_BYTES = 1 << 24
# The shifted-view inputs compute the output over the padded width; they are used while that wastes at most this
# factor of positions (e.g. 18/16 at 16x16, 10/8 at 8x8, 6/4 at 4x4 with padding 1).
SHIFTED_WASTE = 1.3


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


# ----------------------------------------------------------------------------------------------- choosing a path


def choose_path(
    geometry: Geometry, positions: int, cells: int, shared: bool, memory: str, batch: int = 1, itemsize: int = 4
) -> str:
    """The cheapest path for a layer with P = `positions` output positions per sample and n = `cells`.

    A cost model in units of C_out x c_in' multiply-adds per sample, forward + backward. `batched` assembles R step
    matrices from n cells (3 matmuls; 4 when the lean mode assembles again), applies them at P positions (3) and
    moves each per-sample kernel element through memory a few times (KERNEL_TRAFFIC, dearer once the B kernels
    outgrow the caches). `mixed` runs y = sum_j E_j Z_j (3 matmuls of P x n, slower per FLOP when the cell is small),
    mixes the input (n R P / c_out) and moves Z through memory. Constants measured on a 2-core Xeon (ResNet18 at 64x64
    batch 16, CIFAR ResNet-20 at 8x8 batch 128, budgets 1x and 4x).
    """
    if shared:
        return "shared"
    if geometry.groups > 1:
        return "grouped"
    steps, n, c_out, columns = geometry.steps, cells, geometry.cell[0], geometry.columns
    kernel_bytes = batch * geometry.out_channels * columns * steps * itemsize
    traffic = KERNEL_TRAFFIC[kernel_bytes > KERNEL_CACHE_BYTES]
    batched = steps * ((4 if memory == "lean" else 3) * n + 3 * positions + traffic)
    small_cells = max(1.0, 64 / columns) * max(1.0, 64 / c_out) ** 0.5
    mixed = positions * n * (3 * small_cells + (4 * steps + 64) / c_out)
    return "mixed" if mixed < batched else "batched"


# --------------------------------------------------------------------------------------------- input columns


def _pad(x: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Zero-pad the spatial dims (memory format kept)."""
    if not any(lo or hi for lo, hi in geometry.padding):
        return x
    flat = [p for pair in reversed(geometry.padding) for p in pair]
    return F.pad(x, flat)


def _crop(dxp: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Undo `_pad` on a gradient."""
    for d, (lo, hi) in enumerate(geometry.padding):
        if lo or hi:
            dxp = dxp.narrow(2 + d, lo, dxp.shape[2 + d] - lo - hi)
    return dxp


def _zeros_padded(x: torch.Tensor, geometry: Geometry, last: bool) -> torch.Tensor:
    """Zeros shaped like the padded input, in x's memory format."""
    size = geometry.padded_size(x.shape[2:])
    if last:
        return x.new_zeros([x.shape[0], *size, x.shape[1]]).movedim(-1, 1)
    return x.new_zeros([x.shape[0], x.shape[1], *size])


def _windows(xp: torch.Tensor, geometry: Geometry, out_size: tuple[int, ...]) -> torch.Tensor:
    """View (B, g_i, c_in, *k, *L') of the padded input (groups = 1): element (t, p) reads p*stride + t*dilation."""
    dims = len(geometry.kernel)
    x = xp.unflatten(1, (geometry.blocks_in, geometry.cell[1]))  # (B, g_i, c_in, *L_padded)
    for d in range(dims):
        k, stride, dil = geometry.kernel[d], geometry.stride[d], geometry.dilation[d]
        axis = 3 + 2 * d  # earlier dims are already split into (tap, position)
        x = x.narrow(axis, 0, (out_size[d] - 1) * stride + (k - 1) * dil + 1)
        x = x.unfold(axis, (k - 1) * dil + 1, stride)[..., ::dil]  # (..., L'_d, ..., k_d)
        x = x.movedim(-1, axis)  # (..., k_d, L'_d, ...)
    order = [0, 1, 2] + [3 + 2 * d for d in range(dims)] + [4 + 2 * d for d in range(dims)]
    return x.permute(order)


def _layout(geometry: Geometry, by_sample: bool, last: bool) -> list[int]:
    """Axis order that turns windows (B, g_i, c_in, *k, *L') into a columns tensor.

    Steps r = (outer taps, g_i) lead, then B (`by_sample` puts B first); one step's matrix is (c_in', P), or (P, c_in')
    when `last`, with c_in' = (c_in, inner taps). Spatial cells: the taps are outer; whole-kernel cells: inner.
    """
    dims = len(geometry.kernel)
    taps = [3 + d for d in range(dims)]
    positions = [3 + dims + d for d in range(dims)]
    spatial = math.prod(geometry.inner) == 1
    outer, inner = (taps, []) if spatial else ([], taps)
    matrix = positions + [2] + inner if last else [2] + inner + positions
    return ([0] + outer + [1] if by_sample else outer + [1, 0]) + matrix


def _unfold(
    xp: torch.Tensor, geometry: Geometry, out_size: tuple[int, ...], by_sample: bool, last: bool
) -> torch.Tensor:
    """Every step's input columns in one copy: (R, B, c_in', P) | (R, B, P, c_in') | by sample (B, R, ...)."""
    batch, positions = xp.shape[0], math.prod(out_size)
    windows = _windows(xp, geometry, out_size).permute(_layout(geometry, by_sample, last))
    matrix = (positions, geometry.columns) if last else (geometry.columns, positions)
    lead = (batch, geometry.steps) if by_sample else (geometry.steps, batch)
    return windows.reshape(*lead, *matrix)


def _fold(
    cols: torch.Tensor, x: torch.Tensor, geometry: Geometry, out_size: tuple[int, ...], by_sample: bool, last: bool
) -> torch.Tensor:
    """Adjoint of `_pad` + `_unfold`: sum a columns gradient back onto the input (B, C_in, *L)."""
    dxp = _zeros_padded(x, geometry, channels_last(x))
    order = _layout(geometry, by_sample, last)
    canonical = [x.shape[0], geometry.blocks_in, geometry.cell[1], *geometry.kernel, *out_size]
    grad = cols.reshape([canonical[i] for i in order]).permute([order.index(i) for i in range(len(order))])
    grad = grad.flatten(1, 2)  # (B, C_in, *k, *L')
    for taps in itertools.product(*(range(k) for k in geometry.kernel)):
        # the input positions tap t reads: a strided slice per dim (no two positions of one tap coincide)
        target = dxp
        for d, t in enumerate(taps):
            first, stride = t * geometry.dilation[d], geometry.stride[d]
            target = target.narrow(2 + d, first, (out_size[d] - 1) * stride + 1)
            if stride > 1:
                target = target[(slice(None),) * (2 + d) + (slice(None, None, stride),)]
        target.add_(grad[(slice(None), slice(None), *taps)])
    return _crop(dxp, geometry)


# ------------------------------------------------------------------------------------------------- helpers


def _alpha_by_step(alpha: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """alpha (B, m), mixtures (outer taps, g_o, g_i) -> (R*g_o*B, n), rows (step, g_o, B) (a small copy)."""
    batch, n = alpha.shape[0], alpha.shape[-1]
    taps = math.prod(geometry.outer)
    a = alpha.reshape(batch, taps, geometry.blocks_out, geometry.blocks_in, n)
    return a.permute(1, 3, 2, 0, 4).reshape(-1, n)


def _alpha_from_steps(grad: torch.Tensor, geometry: Geometry, batch: int) -> torch.Tensor:
    """Inverse of `_alpha_by_step` for a gradient: (R*g_o*B, n) -> (B, m, n)."""
    n = grad.shape[-1]
    taps = math.prod(geometry.outer)
    g = grad.reshape(taps, geometry.blocks_in, geometry.blocks_out, batch, n)
    return g.permute(3, 0, 2, 1, 4).reshape(batch, -1, n)


def _to_output(y: torch.Tensor, batch: int, out_size: tuple[int, ...], last: bool) -> torch.Tensor:
    """(B, C_out, P) or (B, P, C_out) -> (B, C_out, *L') in the matching memory format (a view)."""
    if last:
        return y.reshape(batch, *out_size, y.shape[-1]).movedim(-1, 1)
    return y.reshape(batch, y.shape[1], *out_size)


def _from_output(dy: torch.Tensor, last: bool) -> torch.Tensor:
    """Gradient of the output (B, C_out, *L') as (B, C_out, P), or (B, P, C_out) when `last`."""
    batch, c_out = dy.shape[:2]
    if last:
        return dy.movedim(1, -1).reshape(batch, -1, c_out).contiguous()
    return dy.reshape(batch, c_out, -1).contiguous()


def _spans(total: int, per_item: int, budget: int) -> list[tuple[int, int]]:
    """Split range(total) into equal runs of items taking at most `budget` bytes each (at least one item)."""
    pieces = max(1, -(-total * per_item // max(budget, 1)))
    size = -(-total // pieces)
    return [(i, min(i + size, total)) for i in range(0, total, size)]


def _chunk_bytes(device: torch.device) -> int:
    return CHUNK_BYTES if device.type == "cpu" else CHUNK_BYTES_ACCELERATOR


def _bmm_into(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, accumulate: bool) -> None:
    """out (+)= a @ b, batched, in place (out contiguous)."""
    if accumulate:
        out.baddbmm_(a, b)
    else:
        torch.bmm(a, b, out=out)


def _into(out: torch.Tensor, op, *args: torch.Tensor) -> None:
    """out = op(*args) without a temporary where `out=` allows it: a contiguous `out`, or a row-strided one for mm
    (bmm would fall back to one matmul per sample; torch.compile wants contiguous outputs)."""
    if out.is_contiguous() or (op is torch.mm and out.stride(-1) == 1 and not torch.compiler.is_compiling()):
        op(*args, out=out)
    else:
        out.copy_(op(*args))


# -------------------------------------------------------------------------------------------------- batched


class _Unfolded:
    """Step inputs copied out of the padded input, (R, B, c_in', P) | (R, B, P, c_in'): any stride and cell."""

    def __init__(self, x: torch.Tensor, geometry: Geometry, out_size: tuple[int, ...], last: bool) -> None:
        self.x, self.geometry, self.out_size, self.last = x, geometry, out_size, last
        self.positions = math.prod(out_size)
        self.cols = _unfold(_pad(x, geometry), geometry, out_size, False, last)
        self.grad = self.dcols = None

    def step(self, r: int) -> torch.Tensor:
        """Step r's input matrix per sample."""
        return self.cols[r]

    def output(self, block: torch.Tensor) -> torch.Tensor:
        """A block of output channels (B, q, P) | (B, P, q) as (B, q, *L') | (B, *L', q)."""
        batch = block.shape[0]
        return block.view(batch, *self.out_size, -1) if self.last else block.view(batch, -1, *self.out_size)

    def set_grad(self, dy: torch.Tensor, go: int) -> None:
        """Take the output gradient (B, C_out, *L')."""
        batch, c_out = dy.shape[0], self.geometry.cell[0]
        dy = _from_output(dy, self.last)
        self.grad = dy.view(batch, -1, go, c_out) if self.last else dy.view(batch, go, c_out, -1)
        self.dcols = torch.empty_like(self.cols)

    def grad_rows(self, g: int, c0: int, c1: int) -> torch.Tensor:
        """Output gradient of channels (g, c0:c1): (B, q, P) | (B, P, q)."""
        return self.grad[:, :, g, c0:c1] if self.last else self.grad[:, g, c0:c1]

    def add_grad_input(self, r: int, w: torch.Tensor, g: int, c0: int, c1: int, first: bool) -> None:
        """dX_r (+)= W_r^T dY for the block; `first` for the first block that reaches step r."""
        grad = self.grad_rows(g, c0, c1)
        if self.last:
            _bmm_into(self.dcols[r], grad, w, not first)
        else:
            _bmm_into(self.dcols[r], w.transpose(1, 2), grad, not first)

    def grad_input(self) -> torch.Tensor:
        return _fold(self.dcols, self.x, self.geometry, self.out_size, False, self.last)


class _Shifted:
    """Step inputs as shifted views of the flattened padded input: no copies (stride 1, 1x1 cells only).

    With the padded spatial dims flattened, tap t of a stride-1 convolution reads the input at one fixed offset,
    so step r's matrix is a plain slice. The output is computed on the padded width (the extra columns are dropped);
    in backward, dX is the same product against the output gradient shifted the other way.
    """

    def __init__(self, x: torch.Tensor, geometry: Geometry, out_size: tuple[int, ...], last: bool) -> None:
        self.x, self.geometry, self.out_size, self.last = x, geometry, out_size, last
        batch, channels, dims = x.shape[0], x.shape[1], len(geometry.kernel)
        self.padded = geometry.padded_size(x.shape[2:])
        strides = [math.prod(self.padded[d + 1 :]) for d in range(dims)]
        self.flat = math.prod(self.padded)
        self.positions = out_size[0] * strides[0]  # output rows over the whole padded width
        self.offsets = [
            sum(t * geometry.dilation[d] * strides[d] for d, t in enumerate(taps))
            for taps in itertools.product(*(range(k) for k in geometry.kernel))
        ]
        self.reach = self.offsets[-1]
        length = self.reach + self.positions  # the last tap reads this far
        buffer = x.new_zeros((batch, length, channels) if last else (batch, channels, length))
        self._interior(buffer, 0, self.flat).copy_(x)
        self.xflat = buffer
        self.grad = self.grad_flat = self.dx = None

    def _interior(self, buffer: torch.Tensor, start: int, length: int) -> torch.Tensor:
        """The unpadded part of a flat padded buffer (B, C, start:start+length) | (B, start:start+length, C)."""
        window = buffer[:, start : start + length] if self.last else buffer[:, :, start : start + length]
        window = window.unflatten(1 if self.last else 2, self.padded)
        for d, (lo, _) in enumerate(self.geometry.padding):
            axis = 1 + d if self.last else 2 + d
            window = window.narrow(axis, lo, self.x.shape[2 + d])
        return window.movedim(-1, 1) if self.last else window

    def _index(self, r: int) -> tuple[int, int]:
        """Step r -> (offset of its tap, first input channel of its block)."""
        tap, block = divmod(r, self.geometry.blocks_in)
        return self.offsets[tap], block * self.geometry.cell[1]

    def step(self, r: int) -> torch.Tensor:
        offset, c0 = self._index(r)
        c1 = c0 + self.geometry.cell[1]
        if self.last:
            return self.xflat[:, offset : offset + self.positions, c0:c1]
        return self.xflat[:, c0:c1, offset : offset + self.positions]

    def _crop(self, block: torch.Tensor) -> torch.Tensor:
        """(B, q, rows x padded width) -> (B, q, *L') | channels-last alike (a view)."""
        shape = [self.out_size[0], *self.padded[1:]]
        block = block.unflatten(1 if self.last else 2, shape)
        for d in range(1, len(shape)):
            block = block.narrow((1 if self.last else 2) + d, 0, self.out_size[d])
        return block

    def output(self, block: torch.Tensor) -> torch.Tensor:
        return self._crop(block)

    def set_grad(self, dy: torch.Tensor, go: int) -> None:
        batch, c_out = dy.shape[0], dy.shape[1]
        # the gradient on the padded width, placed `reach` into a zero buffer so that every shift reads inside it
        length = self.reach + self.flat
        buffer = dy.new_zeros((batch, length, c_out) if self.last else (batch, c_out, length))
        inner = buffer[:, self.reach : self.reach + self.positions] if self.last else \
            buffer[:, :, self.reach : self.reach + self.positions]
        self._crop(inner).copy_(dy.movedim(1, -1) if self.last else dy)
        self.grad_flat = buffer
        self.grad = inner.unflatten(2, (go, -1)) if self.last else inner.unflatten(1, (go, -1))
        blocks, c_in = self.geometry.blocks_in, self.geometry.cell[1]
        self.dx = dy.new_zeros((blocks, batch, self.flat, c_in) if self.last else (blocks, batch, c_in, self.flat))

    def grad_rows(self, g: int, c0: int, c1: int) -> torch.Tensor:
        return self.grad[:, :, g, c0:c1] if self.last else self.grad[:, g, c0:c1]

    def add_grad_input(self, r: int, w: torch.Tensor, g: int, c0: int, c1: int, first: bool) -> None:
        offset, _ = self._index(r)
        start = self.reach - offset
        rows = slice(g * self.geometry.cell[0] + c0, g * self.geometry.cell[0] + c1)
        acc = self.dx[r % self.geometry.blocks_in]
        if self.last:  # (B, flat, c_in) += (B, flat, q) @ (B, q, c_in)
            acc.baddbmm_(self.grad_flat[:, start : start + self.flat, rows], w)
        else:  # (B, c_in, flat) += (B, c_in, q) @ (B, q, flat)
            acc.baddbmm_(w.transpose(1, 2), self.grad_flat[:, rows, start : start + self.flat])

    def grad_input(self) -> torch.Tensor:
        # (g_i, B, c_in, flat) -> (B, C_in, *L) | channels-last alike
        if self.last:
            dx = self.dx.permute(1, 2, 0, 3).reshape(self.x.shape[0], self.flat, -1)
            dx = dx.unflatten(1, self.padded)
        else:
            dx = self.dx.transpose(0, 1).reshape(self.x.shape[0], -1, *self.padded)
        for d, (lo, _) in enumerate(self.geometry.padding):
            dx = dx.narrow((1 if self.last else 2) + d, lo, self.x.shape[2 + d])
        return dx.movedim(-1, 1) if self.last else dx


def _steps(x: torch.Tensor, geometry: Geometry, out_size: tuple[int, ...], last: bool) -> _Unfolded | _Shifted:
    """Shifted views where they apply (stride 1, 1x1 cells) and pay off, else the unfolded copy."""
    shifted = all(s == 1 for s in geometry.stride) and math.prod(geometry.inner) == 1 and math.prod(geometry.kernel) > 1
    if shifted and SHIFTED_WASTE * math.prod(out_size) >= _padded_rows(x, geometry, out_size):
        return _Shifted(x, geometry, out_size, last)
    return _Unfolded(x, geometry, out_size, last)


def _padded_rows(x: torch.Tensor, geometry: Geometry, out_size: tuple[int, ...]) -> int:
    """Positions the shifted product computes per sample (output rows on the padded width)."""
    return out_size[0] * math.prod(geometry.padded_size(x.shape[2:])[1:])


class _BatchedConv(torch.autograd.Function):
    """y_b = sum_r W_b,r X_b,r, W_r = alpha_r @ cells, assembled for a block of the cell's output channels at a time.

    Blocking over the cell's rows reads the warehouse once per pass and keeps each block of per-sample kernels
    (R, g_o, B, q, c_in') small; with rows ordered (step, g_o, B) every (r, g) slice is one contiguous batch of
    matrices, which the batched matmuls need to run as one call.
    """

    @staticmethod
    def forward(ctx, x, alpha, cells, geometry: Geometry, keep: bool):  # noqa: D102
        batch, last = x.shape[0], channels_last(x)
        out_size = geometry.out_size(tuple(x.shape[2:]))
        n, go, c_out = cells.shape[0], geometry.blocks_out, geometry.cell[0]
        columns, steps = geometry.columns, geometry.steps
        a = _alpha_by_step(alpha, geometry)  # (R*g_o*B, n)
        source = _steps(x, geometry, out_size, last)
        positions = source.positions
        cells3 = cells.view(n, c_out, columns)
        # output (B, g_o, c_out, *L') | (B, *L', g_o, c_out)
        y = x.new_empty((batch, *out_size, go, c_out) if last else (batch, go, c_out, *out_size))
        kept = []
        for c0, c1 in _spans(c_out, a.shape[0] * columns * x.element_size(), _chunk_bytes(x.device)):
            # (R*g_o*B, n) @ (n, q*c_in') -> (R, g_o, B, q, c_in'): this block of every per-sample kernel
            block = cells3[:, c0:c1].flatten(1).to(x.dtype)  # (n, q*c_in'), cast a block at a time
            kernels = (a @ block).view(steps, go, batch, c1 - c0, columns)
            if keep:
                kept.append(kernels)
            for g in range(go):
                out = x.new_empty((batch, positions, c1 - c0) if last else (batch, c1 - c0, positions))
                for r in range(steps):
                    if last:  # (B, P, q) += (B, P, c_in') @ (B, c_in', q)
                        _bmm_into(out, source.step(r), kernels[r, g].transpose(1, 2), r > 0)
                    else:  # (B, q, P) += (B, q, c_in') @ (B, c_in', P)
                        _bmm_into(out, kernels[r, g], source.step(r), r > 0)
                (y[..., g, c0:c1] if last else y[:, g, c0:c1]).copy_(source.output(out))
        ctx.save_for_backward(x, a, cells, *kept)
        ctx.geometry, ctx.last = geometry, last
        y = y.flatten(-2) if last else y.flatten(1, 2)
        return y.movedim(-1, 1) if last else y

    @staticmethod
    @once_differentiable  # the backward writes into buffers in place: no double backward
    def backward(ctx, dy):  # noqa: D102
        geometry, last = ctx.geometry, ctx.last
        x, a, cells, *kept = ctx.saved_tensors
        batch, n = x.shape[0], cells.shape[0]
        out_size = geometry.out_size(tuple(x.shape[2:]))
        go, c_out, columns, steps = geometry.blocks_out, geometry.cell[0], geometry.columns, geometry.steps
        need_x, need_alpha, need_cells = ctx.needs_input_grad[:3]
        source = _steps(x, geometry, out_size, last)
        source.set_grad(dy, go)
        cells3 = cells.view(n, c_out, columns)
        da = torch.zeros_like(a) if need_alpha else None
        dcells = torch.empty_like(cells, dtype=x.dtype) if need_cells else None  # autograd casts it back
        spans = _spans(c_out, a.shape[0] * columns * x.element_size(), _chunk_bytes(x.device))
        for index, (c0, c1) in enumerate(spans):
            block = cells3[:, c0:c1].flatten(1).to(x.dtype)  # (n, q*c_in')
            if kept:
                kernels = kept[index]
            else:  # lean: assemble again instead of keeping B kernels per layer
                kernels = (a @ block).view(steps, go, batch, c1 - c0, columns)
            dkernels = torch.empty_like(kernels) if (need_alpha or need_cells) else None
            for g in range(go):
                grad = source.grad_rows(g, c0, c1)  # (B, q, P) | (B, P, q)
                for r in range(steps):
                    if need_x:  # dX_r (+)= W_r^T dY
                        source.add_grad_input(r, kernels[r, g], g, c0, c1, index == 0 and g == 0)
                    if dkernels is not None:  # dW_r = dY X_r^T
                        if last:
                            _into(dkernels[r, g], torch.bmm, grad.transpose(1, 2), source.step(r))
                        else:
                            _into(dkernels[r, g], torch.bmm, grad, source.step(r).transpose(1, 2))
            if dkernels is not None:
                dk = dkernels.view(a.shape[0], -1)  # (R*g_o*B, q*c_in')
                if need_alpha:
                    da.addmm_(dk, block.t())
                if need_cells:
                    _into(dcells.view(n, c_out, columns)[:, c0:c1].flatten(1), torch.mm, a.t(), dk)
        dx = source.grad_input() if need_x else None
        dalpha = _alpha_from_steps(da, geometry, batch) if need_alpha else None
        return dx, dalpha, dcells, None, None


# --------------------------------------------------------------------------------------------------- mixed


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


# -------------------------------------------------------------------------------------------------- grouped

CONV_BY_DIMS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _conv_padding(x: torch.Tensor, geometry: Geometry) -> tuple[torch.Tensor, list[int]]:
    """The input and padding argument for torch's convolution: asymmetric padding ('same' with an even kernel) is
    applied to the input explicitly, since the convolution takes one value per side."""
    if any(lo != hi for lo, hi in geometry.padding):
        return _pad(x, geometry), [0] * len(geometry.kernel)
    return x, [lo for lo, _ in geometry.padding]


def _conv_layout_kernels(alpha: torch.Tensor, cells: torch.Tensor, geometry: Geometry, block: int) -> torch.Tensor:
    """Input block g_i's slice of every sample's kernel, (B, C_out, c_in, *k), assembled directly in conv layout.

    With 1x1 cells the cells go on the left of the matmul, E^T (cell, n) @ alpha (n, taps), so the taps land last as
    conv layout wants; with whole-kernel cells the usual alpha @ cells is already in conv layout.
    """
    batch, n = alpha.shape[0], alpha.shape[-1]
    go, gi, taps = geometry.blocks_out, geometry.blocks_in, math.prod(geometry.outer)
    c_out, c_in = geometry.cell[:2]
    a = alpha.reshape(batch, taps, go, gi, n)[:, :, :, block]  # (B, taps, g_o, n)
    if taps == 1:  # whole-kernel cells: (B, g_o, n) @ (n, c_out*c_in*k) -> (B, g_o, c_out, c_in, *k)
        kernels = a[:, 0] @ cells
    else:  # (c_out*c_in, n) @ (B*g_o, n, taps) -> (B*g_o, c_out*c_in, taps); bmm, since matmul would permute
        a = a.permute(0, 2, 3, 1).reshape(batch * go, n, taps)
        kernels = torch.bmm(cells.t().expand(batch * go, *cells.t().shape), a)
    return kernels.reshape(batch, geometry.out_channels, c_in, *geometry.kernel)


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a convolution runs in: autocast's for x's device when it is on, else x's."""
    kind = x.device.type
    if kind != "meta" and x.is_floating_point() and torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return x.dtype


def _block_input(x: torch.Tensor, geometry: Geometry, block: int) -> torch.Tensor:
    """The channels of input block g_i in every group, as one (1, B*groups*c_in, *L) tensor for a grouped conv."""
    batch, groups, c_in = x.shape[0], geometry.groups, geometry.cell[1]
    if geometry.blocks_in > 1:
        x = x.reshape(batch, groups, geometry.blocks_in, c_in, *x.shape[2:])[:, :, block]
    return x.reshape(1, batch * groups * c_in, *x.shape[-len(geometry.kernel):])


def grouped_apply(x: torch.Tensor, kernels: torch.Tensor, geometry: Geometry, block: int = 0) -> torch.Tensor:
    """y_b = conv(x_b, W_b) as one convolution with groups = B x groups, for input block `block`: x (B, C_in, *L),
    per-sample kernels (B, C_out, c_in, *k) -> (B, C_out, *L')."""
    batch = x.shape[0]
    x, padding = _conv_padding(x, geometry)
    out = CONV_BY_DIMS[len(geometry.kernel)](
        _block_input(x, geometry, block),  # (1, B*groups*c_in, *L)
        kernels.reshape(batch * geometry.out_channels, *kernels.shape[2:]),  # (B*C_out, c_in, *k)
        None, geometry.stride, padding, geometry.dilation, batch * geometry.groups,
    )
    return out.reshape(batch, geometry.out_channels, *out.shape[2:])


def grouped_conv(x: torch.Tensor, alpha: torch.Tensor, cells: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Per-sample kernels in conv layout, one convolution with groups = B x groups per input block (autograd keeps
    the kernels: the `fast` memory mode)."""
    y = None
    for block in range(geometry.blocks_in):
        out = grouped_apply(x, _conv_layout_kernels(alpha, cells, geometry, block), geometry, block)
        y = out if y is None else y + out
    return y


class _GroupedLean(torch.autograd.Function):
    """`grouped_conv` that assembles the kernels again in backward instead of keeping them."""

    @staticmethod
    def forward(ctx, x, alpha, cells, geometry: Geometry):  # noqa: D102
        ctx.save_for_backward(x, alpha, cells)
        ctx.geometry = geometry
        return grouped_conv(x, alpha, cells, geometry)

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
                if taps == 1:  # whole-kernel cells: kernels = a @ cells
                    dk = dkernels.reshape(batch, go, -1)  # (B, g_o, cell)
                    if need_alpha:
                        dalpha[:, 0, :, block] = dk @ cells.t()
                    if need_cells:
                        dcells += torch.einsum("bgn,bgc->nc", a[:, 0], dk)
                else:  # kernels = E^T @ a^T with the taps last
                    dk = dkernels.reshape(batch, go, -1, taps)  # (B, g_o, c_out*c_in, taps)
                    if need_alpha:
                        dalpha[:, :, :, block] = torch.matmul(cells, dk).permute(0, 3, 1, 2)
                    if need_cells:
                        dcells += torch.einsum("bgct,btgn->nc", dk, a)
        dx = None
        if need_x:
            dx = dxp.reshape(xp.shape)
            dx = _crop(dx, geometry) if xp is not x else dx
        return dx, dalpha.reshape(alpha.shape) if need_alpha else None, dcells, None


# --------------------------------------------------------------------------------------------------- shared


def shared_conv(
    x: torch.Tensor, alpha: torch.Tensor, cells: torch.Tensor, geometry: Geometry, weight_shape: tuple[int, ...],
    padding: str | tuple[int, ...],
) -> torch.Tensor:
    """The attention is the same for every sample: one kernel from the first sample's alpha, one dense convolution.

    Gradients match the per-sample computation: the cells receive sum_b dW_b mixed by the common alpha.
    """
    kernel = merge_kernel(alpha[:1] @ cells, weight_shape, geometry.cell)[0]  # (C_out, C_in/g, *k): one kernel
    kernel = kernel.reshape(geometry.out_channels, -1, *geometry.kernel)  # a linear layer's (C_out, C_in, 1)
    return CONV_BY_DIMS[len(geometry.kernel)](x, kernel, None, geometry.stride, padding, geometry.dilation, geometry.groups)


# ------------------------------------------------------------------------------------------------- dispatch


def kw_conv(
    x: torch.Tensor, alpha: torch.Tensor, cells: torch.Tensor, geometry: Geometry, path: str, memory: str
) -> torch.Tensor:
    """Run a KW convolution (no bias) along `path` (batched | mixed | grouped), keeping kernels when memory='fast'."""
    keep = memory == "fast"
    if path == "batched":
        return _BatchedConv.apply(x, alpha, cells, geometry, keep)
    if path == "mixed":
        return _MixedConv.apply(x, alpha, cells, geometry)
    if path == "grouped":
        return grouped_conv(x, alpha, cells, geometry) if keep else _GroupedLean.apply(x, alpha, cells, geometry)
    raise ValueError(f"unknown KW path {path!r}")
