"""torch.compile for a trial (`runtime.compile: true`) and `kwlab bench --compile`: one place for Inductor's options.
The trials of a machine share Inductor's on-disk cache (TORCHINDUCTOR_CACHE_DIR, by default in the temporary folder):
a seed whose graphs another trial compiled loads them.

Measured on the Fashion study's regime (ResNet-8 at half width, 14 px, batch 64, one thread, a 2-core Intel Xeon,
2026-12-07; eager, default compile and the options here interleaved in one process): Inductor's layout optimisation,
which turns convolutions channels-last, made the static model 17% faster but KW 1x 23% and DY-Conv 4 18% slower than
eager (the issue's 18% and 32% on an AMD EPYC); without it they ran at 1.01x and 1.03x eager and compiled in about
two thirds of the time.
"""

from __future__ import annotations

import torch
from torch import nn


def compile_options(model: nn.Module) -> dict[str, object]:
    """Inductor's options for `model`: layout optimisation off where the mixing engine runs (see the module doc)."""
    from kwlab.methods import path_layers

    # NOTE: Inductor's default converts convolutions to channels-last; kwlab keeps it for static models only
    return {"layout_optimization": False} if path_layers(model) else {}


def compile_model(model: nn.Module, mode: str | None = None) -> nn.Module:
    """`model` compiled by torch.compile (Inductor) with `compile_options`; `mode` as torch.compile's (None: its
    default; 'reduce-overhead': CUDA graphs on a GPU).

    Shapes are static: a trial meets two batch sizes per pass at most (its batch and the last, partial one), and a
    graph per size keeps the layers' path choice (made while tracing, from the shapes) free of symbolic sizes.
    """
    return torch.compile(model, mode=mode, dynamic=False, options=compile_options(model))

