"""Choosing a path and running it: one cost model for every method (`path_costs`, its constants in `PathCosts`,
each method fits its own), a layer's choice ('auto': the model's; 'measured': timed, see measured.py) and one
dispatch (`convolve`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import torch

from kwlab.methods.mixing.batched import _BatchedConv
from kwlab.methods.mixing.combined import combined_conv
from kwlab.methods.mixing.geometry import Geometry, compute_dtype
from kwlab.methods.mixing.grouped import _GroupedLean, _GroupedRebuilt, grouped_apply, grouped_conv
from kwlab.methods.mixing.measured import cheapest, fastest_path, input_key, shape_key
from kwlab.methods.mixing.mixed import _MixedConv
from kwlab.methods.mixing.names import PATHS, RUNNABLE
from kwlab.methods.mixing.assembly import assembled_kernels, step_cells_as_shared
from kwlab.methods.mixing.reference import reference_conv, shared_conv



@dataclass(frozen=True)
class PathCosts:
    """A method's constants of the cost model (`path_costs`): the time of one unit of each path's work, in a unit of
    the method's choosing (only their ratios matter), forward and backward.

    - `batched`: a multiply-add of the batched matmuls that apply the kernels (P x K per sample);
    - `assembly`, `assembly_lean`: a multiply-add of assembling the kernels (n x K per sample), in memory mode fast
      and lean (lean assembles again in backward);
    - `batched_traffic`, `grouped_traffic`: moving one per-sample kernel element through memory while all B kernels
      of a layer fit in `cache_bytes` and once they do not; `grouped_passes` such moves in `grouped`;
    - `mixed`, `mixed_pointwise`: a multiply-add of the mixed path's dense products (n P C_out c_in' per sample) for
      kernels of several taps and of one; `small_cells`: when set, cells narrower than this many channels run
      slower (a factor max(1, s / c_in') x max(1, s / c_out)^0.5);
    - `mixing`: a multiply-add of mixing the input (n R P g_o c_in'); `mixed_traffic`: one element of the mixed
      inputs (n P g_o c_in'); `output_traffic`: one element of the per-cell partial outputs (n P C_out);
    - `grouped`, `grouped_pointwise`: a multiply-add of the per-sample grouped convolution (P x K) for kernels of
      several taps and of one (in memory mode lean times the input blocks g_i, one convolution each), None where a
      method does not consider it for dense convolutions; `grouped_assembly`: a multiply-add of its assembly of
      the K_whole mixed kernels (K_whole x K);
    - `combined`: a multiply-add of its n dense convolutions of the whole batch (n P K per sample; only for layers
      of one mixture over whole-kernel cells), None where a method does not consider it; `combined_traffic`: one
      element of its n stacked outputs (n P C_out per sample), written, combined, and again in backward.
    """

    batched: float
    assembly: float
    assembly_lean: float
    batched_traffic: tuple[float, float]
    mixed: float
    mixed_pointwise: float
    mixing: float
    mixed_traffic: float
    output_traffic: float = 0.0
    small_cells: int = 0
    grouped: float | None = None
    grouped_pointwise: float | None = None
    grouped_assembly: float = 1.0
    grouped_traffic: tuple[float, float] = (0.0, 0.0)
    grouped_passes: int = 1
    cache_bytes: int = 1 << 24
    combined: float | None = None
    combined_traffic: float = 0.0


def path_costs(geometry: Geometry, positions: int, cells: int, costs: PathCosts, *, kernels: int | None = None,
               batch: int = 1, itemsize: int = 4, memory: str = "fast", shared: bool = False) -> dict[str, float]:
    """The modelled cost of every path a layer can take, for P = `positions` output positions per sample,
    n = `cells` and, for the grouped path, K = `kernels` whole kernels to mix per sample (default n).

    Shared alpha has `shared` alone; grouped and depthwise convolutions `grouped` alone (the only path for them).
    Otherwise (see PathCosts for the units):
    - batched: P K + (assembly K_whole + traffic) K (K_whole: each step mixes its own K_whole cells, e.g. ODConv's);
    - mixed: n P C_out c_in' dense products + mixing the input + its intermediates;
    - grouped (where the method prices it): P K + (assembly K_whole + passes x traffic) K (lean: g_i P K, and
      K_whole assembled again);
    - combined (where the method prices it, for one mixture over whole-kernel cells): n P K + traffic n P C_out.
    """
    if shared:
        return {"shared": 0.0}
    if geometry.groups > 1:
        return {"grouped": 0.0}
    size = geometry.kernel_numel  # K
    spilled = batch * size * itemsize > costs.cache_bytes
    pointwise = math.prod(geometry.kernel) == 1
    columns, c_out = geometry.columns, geometry.cell[0]
    small = 1.0
    if costs.small_cells:
        small = max(1.0, costs.small_cells / columns) * max(1.0, costs.small_cells / c_out) ** 0.5
    per_cell_inputs = cells * positions * geometry.blocks_out * columns
    candidates = {}
    assembly = costs.assembly_lean if memory == "lean" else costs.assembly
    rate = costs.grouped_pointwise if pointwise else costs.grouped
    if rate is not None:  # lean: one grouped convolution per input block g_i, assembled again in backward
        blocks = geometry.blocks_in if memory == "lean" else 1
        whole = (cells if kernels is None else kernels) * costs.grouped_assembly * assembly / costs.assembly
        candidates["grouped"] = positions * size * rate * blocks + (
            whole + costs.grouped_passes * costs.grouped_traffic[spilled]) * size
    if costs.combined is not None and geometry.mixtures == 1:
        candidates["combined"] = cells * positions * (size * costs.combined
                                                      + geometry.out_channels * costs.combined_traffic)
    candidates["batched"] = positions * size * costs.batched + (
        assembly * (cells if kernels is None else kernels) + costs.batched_traffic[spilled]) * size
    candidates["mixed"] = (
        cells * positions * geometry.out_channels * columns
        * (costs.mixed_pointwise if pointwise else costs.mixed) * small
        + (costs.mixing * geometry.steps + costs.mixed_traffic) * per_cell_inputs
        + costs.output_traffic * cells * positions * geometry.out_channels
    )
    return candidates


def resolve_path(path: str, modelled: Callable[[], dict[str, float]],
                 trial: Callable[[str], None] | None = None, x: torch.Tensor | None = None,
                 layer: tuple[Hashable, ...] = (), memo: dict[Hashable, str] | None = None,
                 state: Hashable = ()) -> str:
    """`path` checked against PATHS: 'auto' becomes the cheapest of `modelled()`; 'measured' the fastest of them
    as `trial(path)` times them on input x, once per layer description `layer` and x's shape (`shape_key`); the
    model's choice where there is no trial or input.

    `memo`, a dict the layer owns, keeps the model's choice per `state` (what else the layer's costs depend on, e.g.
    its memory mode) and input (`input_key`), so that a forward prices its paths once per input shape, not every
    time.
    """
    if path not in PATHS:
        raise ValueError(f"path {path!r} is not one of {PATHS}")
    if path == "measured" and trial is not None and x is not None:
        return fastest_path(shape_key(x, *layer), modelled(), trial, x.device)
    if path not in ("auto", "measured"):
        return path
    if memo is None or x is None or torch.compiler.is_compiling():  # a traced graph keeps its choice already
        return cheapest(modelled())
    key = (state, *input_key(x))
    choice = memo.get(key)
    if choice is None:
        choice = memo[key] = cheapest(modelled())
    return choice


def convolve(x: torch.Tensor, alpha: torch.Tensor, cells: torch.Tensor, geometry: Geometry, path: str,
             memory: str = "fast", sample_kernels: Callable[..., torch.Tensor] | None = None,
             kernel_inputs: tuple[torch.Tensor | None, ...] = ()) -> torch.Tensor:
    """y_b = W_b * x_b (no bias), W_b,i = sum_j alpha_b,ij E_j, along `path` (one of RUNNABLE), in x's compute dtype.

    x (B, C_in, *L) in either memory format, alpha (B, m, n) in the reference mixture order, cells (n, cell_numel);
    or, where each step (mixture, with one output block) mixes cells of its own, alpha (B, R, n_r) and cells (R, n_r,
    cell_numel): `batched` assembles them at n_r multiply-adds per weight, the other paths take them as the
    block-diagonal mixture of all R x n_r cells (`step_cells_as_shared`).
    memory='fast' lets backward keep per-sample kernels. `sample_kernels(*kernel_inputs)`, where a method assembles
    its kernels more cheaply than as a mixture of cells (ODConv's per-tap scaling), gives them in conv layout
    (B, C_out, C_in/g, *k) and x's compute dtype for the grouped and reference paths; a pure function of its inputs,
    so that memory='lean' can build them again in backward.
    """
    dtype = compute_dtype(x)
    x, alpha = x.to(dtype), alpha.to(dtype)
    keep = memory == "fast"
    if path == "batched":  # batched and mixed cast the cells a block at a time
        return _BatchedConv.apply(x, alpha, cells, geometry, keep)
    if cells.dim() == 3:
        alpha, cells = step_cells_as_shared(alpha, cells)
    if path == "mixed":
        return _MixedConv.apply(x, alpha, cells, geometry)
    if path == "grouped":
        if sample_kernels is not None:
            if keep:
                return grouped_apply(x, sample_kernels(*kernel_inputs), geometry)
            return _GroupedRebuilt.apply(x, geometry, sample_kernels, *kernel_inputs)
        cells = cells.to(dtype)
        return grouped_conv(x, alpha, cells, geometry) if keep else _GroupedLean.apply(x, alpha, cells, geometry)
    if path == "combined":  # no per-sample kernel: the same in both memory modes
        return combined_conv(x, alpha, cells.to(dtype), geometry)
    if path == "shared":
        return shared_conv(x, alpha, cells.to(dtype), geometry)
    if path == "reference":
        kernels = (sample_kernels(*kernel_inputs) if sample_kernels is not None
                   else assembled_kernels(alpha, cells.to(dtype), geometry))
        return reference_conv(x, kernels, geometry)
    raise ValueError(f"path {path!r} is not one of {RUNNABLE}")
