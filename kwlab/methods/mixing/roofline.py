"""The roofline of a dynamic convolution: the least time any exact algorithm of this engine could take on a machine,
given its multiply-add rate and memory bandwidth.

Per layer and algorithm, for a forward and backward pass over a batch of B: t = max(3 B MACs / rate, bytes / bandwidth)
(backward costs twice the forward's multiply-adds). The MACs per sample are `floor.exact_algorithms`' (plus the
attention); the bytes (`algorithm_bytes`) count what each algorithm must move, in elements of `itemsize` bytes:

- always: the input x and the output y, once each way in forward and again in backward; the attention alpha and the
  cells (warehouse or expert kernels) likewise;
- `batched` materialises the B per-sample kernels (K weights each): written and read in forward, and again in
  backward, 4 B K; `grouped` also copies them into conv layout when a kernel has several taps of spatial cells, 2 B K;
- `mixed` materialises the mixed inputs (n P g_o c_in' per sample): 4 B of them;
- `combined` materialises the n stacked outputs (n P C_out per sample): 4 B of them.

A layer's roofline is its cheapest algorithm's t; its fused limit the same with no per-sample intermediate in memory
(only x, y, alpha and the cells move), which only a kernel that assembles each tile in cache reaches. A model's
roofline adds every layer's, the layers the method leaves static at their MACs over the rate, and divides by the
static model's time; taking the rate as the static model's measured MACs per second puts the static model at 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from kwlab.methods.mixing.floor import exact_algorithms
from kwlab.methods.mixing.geometry import Geometry

PASSES = 3  # forward and backward multiply-adds of a convolution: forward, input gradient, weight gradient


@dataclass(frozen=True)
class LayerWork:
    """What the roofline needs of one dynamic layer, per sample (a method's `price` lists them)."""

    geometry: Geometry
    positions: int  # P: output positions
    input_elements: int  # C_in x input positions
    cells: int  # n: the cells the engine mixes (KW's warehouse, K kernels, ODConv's K x k x k tap cells)
    kernels: int  # whole kernels mixed per weight; 0: the kernel is not per sample
    weights: int  # elements of the cells the layer reads
    attention_macs: int  # the attention's (routing's) multiply-adds


@dataclass(frozen=True)
class Machine:
    """A machine's rates: multiply-adds per second (the static model's, forward and backward) and bytes per second."""

    mac_rate: float
    bandwidth: float


def _moved_always(work: LayerWork, batch: int) -> int:
    """Elements every algorithm moves: x, y, alpha and the cells, once each way in forward and again in backward."""
    geometry = work.geometry
    per_sample = work.input_elements + geometry.out_channels * work.positions + geometry.mixtures * work.cells
    return 2 * (batch * per_sample + work.weights)


def _intermediates(work: LayerWork, batch: int) -> dict[str, int]:
    """Elements of each algorithm's per-sample intermediates, written and read in forward and again in backward, by
    path name; 'static' (none) for a layer whose kernel is not per sample."""
    geometry = work.geometry
    if work.kernels == 0:
        return {"static": 0}
    kernels = 4 * batch * geometry.kernel_numel
    copy = 2 * batch * geometry.kernel_numel if math.prod(geometry.outer) > 1 else 0  # into conv layout
    moved = {"batched": kernels, "grouped": kernels + copy}
    if geometry.groups == 1:
        moved["mixed"] = 4 * batch * work.cells * work.positions * geometry.blocks_out * geometry.columns
    if geometry.mixtures == 1:
        moved["combined"] = 4 * batch * work.cells * geometry.out_channels * work.positions
    return moved


def algorithm_bytes(work: LayerWork, batch: int, itemsize: int) -> dict[str, int]:
    """Bytes each exact algorithm moves for a forward and backward pass of a batch, by path name (see the module
    doc)."""
    always = _moved_always(work, batch)
    return {path: (always + extra) * itemsize for path, extra in _intermediates(work, batch).items()}


def algorithm_macs(work: LayerWork) -> dict[str, int]:
    """Multiply-adds per sample (forward) of each exact algorithm by path name, the attention included."""
    orders = exact_algorithms(work.geometry, work.positions, work.cells, work.kernels)
    by_path = {"static": "static", "batched": "assembly", "grouped": "assembly", "mixed": "mixing",
               "combined": "combined"}
    return {path: orders[order] + work.attention_macs for path, order in by_path.items() if order in orders}


def _seconds(macs: int, moved: int, batch: int, machine: Machine) -> float:
    """max(compute, memory) for a forward and backward pass of a batch: `macs` per sample (forward), `moved`
    bytes."""
    return max(PASSES * batch * macs / machine.mac_rate, moved / machine.bandwidth)


def layer_seconds(work: LayerWork, batch: int, itemsize: int, machine: Machine) -> dict[str, float]:
    """The roofline time of each exact algorithm for a forward and backward pass of a batch, by path name."""
    macs = algorithm_macs(work)
    return {path: _seconds(macs[path], moved, batch, machine)
            for path, moved in algorithm_bytes(work, batch, itemsize).items()}


def fused_seconds(work: LayerWork, batch: int, itemsize: int, machine: Machine) -> float:
    """The layer's fused limit: the fewest MACs of any algorithm, with only x, y, alpha and the cells moved."""
    return _seconds(min(algorithm_macs(work).values()), _moved_always(work, batch) * itemsize, batch, machine)


def model_roofline(layers: Sequence[LayerWork], static_macs: int, batch: int, itemsize: int,
                   machine: Machine) -> tuple[float, float]:
    """(roofline, fused limit) of a model over the static model's time at the rate, for its dynamic `layers` and the
    static model's MACs per sample `static_macs` (the layers it leaves static run at the rate)."""
    static = PASSES * batch * static_macs / machine.mac_rate
    others = PASSES * batch * (static_macs - sum(w.positions * w.geometry.kernel_numel for w in layers))
    rest = others / machine.mac_rate
    best = sum(min(layer_seconds(w, batch, itemsize, machine).values()) for w in layers)
    fused = sum(fused_seconds(w, batch, itemsize, machine) for w in layers)
    return (rest + best) / static, (rest + fused) / static
