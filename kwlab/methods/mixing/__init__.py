"""The mixing engine: every dynamic convolution (KernelWarehouse, CondConv, DY-Conv, ODConv) computes
y_b = W_b * x_b with a per-sample kernel mixed from cells, W_b,i = sum_j alpha_b,ij E_j, through these paths.

A method describes a layer by its `Geometry` (shape, kernel grid of cells) and hands the engine alpha (B, m, n) and
its cells (n, cell_numel): KernelWarehouse's warehouse; a dynamic convolution's K whole kernels (m = 1 mixture);
ODConv's K x k x k one-by-one tap cells (m = k x k mixtures, each tap mixing its own K cells: alpha (B, k x k, K),
cells (k x k, K, cell_numel)). A kernel is regrouped by *steps*: step r = (outer tap, input block g_i) of its cell
grid; within a step the (g_o, c_out) x (c_in, inner taps) weights form one (C_out, c_in') matrix per sample. Paths,
picked per layer and input shape as the cheapest of `path_costs` from the method's own `PathCosts`:

- `batched` (batched.py): W_r = alpha_r @ cells a block of output channels at a time, then y += W_r X_r as batched
  matmuls; X_r is a shifted view of the padded input for stride-1 convolutions, else a slice of one unfolded copy.
- `mixed` (mixed.py): no per-sample kernels: Z_j = sum_r alpha_rj X_r, then y = sum_j E_j Z_j; it wins at small
  spatial sizes and for few mixtures.
- `grouped` (grouped.py): every kernel assembled in full (one matmul, one copy into conv layout), one convolution
  with groups = B x groups, as the papers' code computes; the only path for grouped and depthwise convolutions.
- `combined` (combined.py): convolve, then combine: y = sum_k alpha_k (W_k * x), one dense convolution to K x C_out
  channels and a weighted sum; no per-sample kernel, K times the convolution's work; for one mixture over
  whole-kernel cells (CondConv, DY-Conv, ODConv's 1x1 convs).
- `shared` (reference.py): alpha is the same for every sample: one dense convolution.
- `reference` (reference.py): every kernel assembled, one convolution per sample: the definition, and the ground
  truth of the tests.

A layer's `path` is 'auto' (the cost model's cheapest, `path_costs`), 'measured' (the fastest of the modelled
candidates, timed once per layer shape: measured.py; `export_measurements` / `load_measurements` carry the choices to
another process) or one path forced.

memory='lean' never keeps per-sample kernels for backward (the paths assemble again). Inputs in either memory format
(channels-last in, channels-last out); the paths compute in x's dtype (autocast's where on), and `batched` and
`mixed` cast the cells a block at a time. `floor_macs` (floor.py) is the fewest multiply-adds any of them needs;
roofline.py the least time any of them could take on a machine (its multiply-add rate and memory bandwidth).
tests/methods/test_mixing*.py check every path against the reference.
"""

from kwlab.methods.mixing.assembly import (assemble, assembled_kernels, layer_cell_shape, merge_kernel, mixtures,
                                           split_kernel)
from kwlab.methods.mixing.floor import floor_macs
from kwlab.methods.mixing.geometry import CONV_BY_DIMS, Geometry, channels_last, compute_dtype, resolve_padding
from kwlab.methods.mixing.measured import (engine_trial, export_measurements, forget_measurements,
                                           load_measurements, measured_choices)
from kwlab.methods.mixing.paths import PATHS, RUNNABLE, PathCosts, cheapest, convolve, path_costs, resolve_path
from kwlab.methods.mixing.reference import reference_conv

__all__ = ["CONV_BY_DIMS", "PATHS", "RUNNABLE", "Geometry", "PathCosts", "assemble", "assembled_kernels",
           "channels_last", "cheapest", "compute_dtype", "convolve", "engine_trial", "export_measurements",
           "floor_macs", "forget_measurements", "layer_cell_shape", "load_measurements", "measured_choices",
           "merge_kernel", "mixtures", "path_costs", "reference_conv", "resolve_padding", "resolve_path",
           "split_kernel"]
