"""Input columns and the matmul helpers the batched and mixed paths share: padding, the unfolded (im2col) copy of the
input and its adjoint, the step order of the attentions, and block sizes."""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

from kwlab.methods.mixing.geometry import Geometry, channels_last

# Per-sample kernels (and mixed inputs) are built this many bytes at a time: on a CPU a block near the caches, which
# keeps the batched matmuls' blocks of output channels large enough to run well; on an accelerator, all at once.
# 16 MB measured on 2026-12-07 on a 2-core Intel Xeon (one thread, ResNet18's 256- and 512-channel layers at 224 px,
# batch 16, forward+backward of the batched path, best of 3, twice): 8-15% faster than 8 MB for DY-Conv 4, ODConv 4x
# and KW 1x, as fast at 2x2 outputs; 32 MB and more slower again.
CHUNK_BYTES = 1 << 24
CHUNK_BYTES_ACCELERATOR = 1 << 32


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
