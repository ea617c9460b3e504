"""The floor of a dynamic convolution: the fewest multiply-adds per sample that an exact algorithm of this engine needs.

Every per-sample path computes y_b = W_b * x_b exactly, by one of two orders of work:
- assembly then convolution (reference, grouped, batched): assemble the kernel, K_whole x K multiply-adds (K the
  kernel's weights; K_whole the mixed kernels: KernelWarehouse's n cells per weight, a dynamic convolution's K
  kernels), then convolve, P x K;
- mixing then convolution (mixed): mix the input for every cell, n x R x P x g_o x c_in', then apply every cell to
  its mixed input, n x P x C_out x c_in' (for KW: mixing the input instead of assembling the kernels);
- convolution then combination (combined; only where the cells are whole kernels, m = 1): convolve with each of the
  n kernels, n x P x K, then sum the n outputs weighted, n x P x C_out.
The floor is the cheapest of them (grouped convolutions have no mixed order). A layer whose kernel is not per sample
(`kernels` 0) costs its convolution alone.
"""

from __future__ import annotations

from kwlab.methods.mixing.geometry import Geometry


def assembly_then_conv(geometry: Geometry, positions: int, kernels: int) -> int:
    """Multiply-adds per sample of assembling the kernel from `kernels` mixed kernels, then convolving."""
    return (kernels + positions) * geometry.kernel_numel


def mixing_then_conv(geometry: Geometry, positions: int, cells: int) -> int:
    """Multiply-adds per sample of the mixed path: mix the input for each of the n = `cells` cells (over the R
    steps of each output block), then apply every cell to its mixed input."""
    per_cell_inputs = cells * positions * geometry.blocks_out * geometry.columns
    return per_cell_inputs * geometry.steps + cells * positions * geometry.out_channels * geometry.columns


def convolution_then_combine(geometry: Geometry, positions: int, cells: int) -> int:
    """Multiply-adds per sample of the combined path: n = `cells` whole-kernel convolutions, then their weighted sum."""
    return cells * positions * (geometry.kernel_numel + geometry.out_channels)


def exact_algorithms(geometry: Geometry, positions: int, cells: int, kernels: int | None = None) -> dict[str, int]:
    """Multiply-adds per sample of each exact order of work the engine has for a layer with P = `positions` output
    positions, n = `cells` cells and `kernels` kernels mixed per weight (default n; 0: not per sample), by name:
    'assembly' (batched, grouped, reference), 'mixing' (mixed), 'combined', or 'static' alone."""
    kernels = cells if kernels is None else kernels
    if kernels == 0:
        return {"static": positions * geometry.kernel_numel}
    work = {"assembly": assembly_then_conv(geometry, positions, kernels)}
    if geometry.groups == 1:
        work["mixing"] = mixing_then_conv(geometry, positions, cells)
    if geometry.mixtures == 1:
        work["combined"] = convolution_then_combine(geometry, positions, cells)
    return work


def floor_macs(geometry: Geometry, positions: int, cells: int, kernels: int | None = None) -> int:
    """The fewest multiply-adds per sample of any exact algorithm here for a layer with P = `positions` output
    positions, n = `cells` cells and `kernels` kernels mixed per weight (default n; 0: not per sample)."""
    return min(exact_algorithms(geometry, positions, cells, kernels).values())
