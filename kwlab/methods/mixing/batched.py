"""The `batched` path: per-sample kernels assembled a block of output channels at a time and applied as batched
matmuls, one per step r = (outer tap, input block g_i) of the cell grid; memory='lean' assembles again in backward.
Cells are shared by every step (n, cell_numel) or each step's own (R, n_r, cell_numel): see `convolve`."""

from __future__ import annotations

import itertools
import math

import torch
from torch.autograd.function import once_differentiable

from kwlab.methods.mixing.columns import (_alpha_by_step, _alpha_from_steps, _bmm_into, _chunk_bytes, _fold,
                                          _from_output, _into, _pad, _spans, _unfold)
from kwlab.methods.mixing.geometry import Geometry, channels_last

# The shifted-view inputs compute the output over the padded width; they are used while that wastes at most this
# factor of positions (e.g. 18/16 at 16x16, 10/8 at 8x8, 6/4 at 4x4 with padding 1).
SHIFTED_WASTE = 1.3


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


class _SharedCells:
    """Every step mixes the same n cells (KernelWarehouse, the dynamic convolutions): alpha (B, m, n), cells (n, c_out
    x c_in'); the attentions in step order, a = (R*g_o*B, n), one matmul assembles a block of every kernel."""

    def __init__(self, alpha: torch.Tensor, cells: torch.Tensor, geometry: Geometry) -> None:
        self.geometry, self.batch = geometry, alpha.shape[0]
        self.a = _alpha_by_step(alpha, geometry)  # (R*g_o*B, n)
        self.cells3 = cells.view(cells.shape[0], geometry.cell[0], geometry.columns)  # (n, c_out, c_in')

    def block(self, c0: int, c1: int, dtype: torch.dtype) -> torch.Tensor:
        """Output channels c0:c1 of every cell, (n, q*c_in'), cast a block at a time."""
        return self.cells3[:, c0:c1].flatten(1).to(dtype)

    def assemble(self, block: torch.Tensor) -> torch.Tensor:
        """(R*g_o*B, n) @ (n, q*c_in') -> this block of every per-sample kernel, (R*g_o*B, q*c_in')."""
        return self.a @ block

    def add_grads(self, dk: torch.Tensor, block: torch.Tensor, da: torch.Tensor | None, dcells: torch.Tensor | None,
                  c0: int, c1: int) -> None:
        """The block's share of the gradients of a (da, added) and of the cells (dcells, written) from dk, the
        kernels' gradient (R*g_o*B, q*c_in')."""
        if da is not None:
            da.addmm_(dk, block.t())
        if dcells is not None:
            _into(dcells.view(self.cells3.shape)[:, c0:c1].flatten(1), torch.mm, self.a.t(), dk)

    def grad_alpha(self, da: torch.Tensor) -> torch.Tensor:
        return _alpha_from_steps(da, self.geometry, self.batch)


class _StepCells:
    """Each step mixes cells of its own (ODConv's K kernels at one tap): alpha (B, R, n_r), cells (R, n_r, C_out x
    c_in'), one output block (g_o = 1). Assembling costs n_r multiply-adds per weight, not R x n_r as the same
    mixture written over all R x n_r cells with a block-diagonal alpha; one batched matmul over the steps."""

    def __init__(self, alpha: torch.Tensor, cells: torch.Tensor, geometry: Geometry) -> None:
        self.batch = alpha.shape[0]
        self.a = alpha.transpose(0, 1)  # (R, B, n_r)
        self.cells4 = cells.view(*cells.shape[:2], geometry.cell[0], geometry.columns)  # (R, n_r, c_out, c_in')

    def block(self, c0: int, c1: int, dtype: torch.dtype) -> torch.Tensor:
        """Output channels c0:c1 of every step's cells, (R, n_r, q*c_in')."""
        return self.cells4[:, :, c0:c1].flatten(2).to(dtype)

    def assemble(self, block: torch.Tensor) -> torch.Tensor:
        """(R, B, n_r) @ (R, n_r, q*c_in') -> this block of every per-sample kernel, (R*B, q*c_in')."""
        return torch.bmm(self.a, block).flatten(0, 1)

    def add_grads(self, dk: torch.Tensor, block: torch.Tensor, da: torch.Tensor | None, dcells: torch.Tensor | None,
                  c0: int, c1: int) -> None:
        steps, cells = self.cells4.shape[:2]
        dk = dk.view(steps, self.batch, -1)  # (R, B, q*c_in')
        if da is not None:  # (R, B, n_r) += (R, B, q*c_in') @ (R, q*c_in', n_r)
            da.baddbmm_(dk, block.transpose(1, 2))
        if dcells is not None:  # (R, n_r, q*c_in') = (R, n_r, B) @ (R, B, q*c_in')
            grad = torch.bmm(self.a.transpose(1, 2), dk)
            dcells.view(self.cells4.shape)[:, :, c0:c1].copy_(grad.view(steps, cells, c1 - c0, -1))

    def grad_alpha(self, da: torch.Tensor) -> torch.Tensor:
        return da.transpose(0, 1)  # (R, B, n_r) -> (B, R, n_r)


def _mixing(alpha: torch.Tensor, cells: torch.Tensor, geometry: Geometry) -> _SharedCells | _StepCells:
    """The assembly for cells shared by every step, (n, cell_numel), or of each step's own, (R, n_r, cell_numel)."""
    return _StepCells(alpha, cells, geometry) if cells.dim() == 3 else _SharedCells(alpha, cells, geometry)


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
        go, c_out = geometry.blocks_out, geometry.cell[0]
        columns, steps = geometry.columns, geometry.steps
        mixing = _mixing(alpha, cells, geometry)
        source = _steps(x, geometry, out_size, last)
        positions = source.positions
        # output (B, g_o, c_out, *L') | (B, *L', g_o, c_out)
        y = x.new_empty((batch, *out_size, go, c_out) if last else (batch, go, c_out, *out_size))
        kept = []
        rows = steps * go * batch
        for c0, c1 in _spans(c_out, rows * columns * x.element_size(), _chunk_bytes(x.device)):
            # -> (R, g_o, B, q, c_in'): this block of every per-sample kernel
            kernels = mixing.assemble(mixing.block(c0, c1, x.dtype)).view(steps, go, batch, c1 - c0, columns)
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
        ctx.save_for_backward(x, alpha, cells, *kept)
        ctx.geometry, ctx.last = geometry, last
        y = y.flatten(-2) if last else y.flatten(1, 2)
        return y.movedim(-1, 1) if last else y

    @staticmethod
    @once_differentiable  # the backward writes into buffers in place: no double backward
    def backward(ctx, dy):  # noqa: D102
        geometry, last = ctx.geometry, ctx.last
        x, alpha, cells, *kept = ctx.saved_tensors
        batch = x.shape[0]
        out_size = geometry.out_size(tuple(x.shape[2:]))
        go, c_out, columns, steps = geometry.blocks_out, geometry.cell[0], geometry.columns, geometry.steps
        need_x, need_alpha, need_cells = ctx.needs_input_grad[:3]
        source = _steps(x, geometry, out_size, last)
        source.set_grad(dy, go)
        mixing = _mixing(alpha, cells, geometry)
        da = mixing.a.new_zeros(mixing.a.shape) if need_alpha else None
        # autograd casts it back
        dcells = torch.empty(cells.shape, dtype=x.dtype, device=x.device) if need_cells else None
        rows = steps * go * batch
        for index, (c0, c1) in enumerate(_spans(c_out, rows * columns * x.element_size(), _chunk_bytes(x.device))):
            block = mixing.block(c0, c1, x.dtype)
            if kept:
                kernels = kept[index]
            else:  # lean: assemble again instead of keeping B kernels per layer
                kernels = mixing.assemble(block).view(steps, go, batch, c1 - c0, columns)
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
            if dkernels is not None:  # (R*g_o*B, q*c_in')
                mixing.add_grads(dkernels.view(rows, -1), block, da, dcells, c0, c1)
        dx = source.grad_input() if need_x else None
        dalpha = mixing.grad_alpha(da) if need_alpha else None
        return dx, dalpha, dcells, None, None
