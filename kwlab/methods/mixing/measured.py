"""The measured path choice (a layer's path 'measured'): the paths the cost model keeps in the running are timed on
the layer's own input, forward and, where autograd records, backward, once per layer shape; the fastest is kept for
the rest of the process, as cudnn.benchmark does for convolution algorithms.

It serves machines the cost model was not fitted to (its constants were fitted on a 2-core Intel Xeon; on the AMD
EPYC fit, that Xeon ran the grouped path of ResNet18's 256- and 512-channel layers at 224 px 1.1 to 2.9 times slower
than the batched path ranked below it). The cost model ('auto') stays the default, because its choice depends on
shapes alone and a run repeats bit for bit; a measured choice can differ between two runs where two paths time
alike, and their results then differ at float tolerance (every path computes the same function).

The choices carry to another process: `export_measurements()` gives them as JSON-ready strings (`stable_key`: the
layer's class and geometry, the input's shape, dtype, device type and memory format, and whether autograd records)
mapped to path names, and `load_measurements(choices)` makes a layer whose key is among them take that path without
timing. A sweep can record them with a trial and replay them in the variant's other trials.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping

import torch

from kwlab.methods.mixing.geometry import channels_last, compute_dtype
from kwlab.methods.mixing.names import RUNNABLE

# Paths modelled at most this many times the cheapest one are timed; the rest are taken to lose.
WITHIN = 8.0
# Timed calls per path after one untimed call; the fastest counts.
REPEATS = 2

_FASTEST: dict[Hashable, str] = {}  # by `shape_key`
_LOADED: dict[str, str] = {}  # by `stable_key`, from `load_measurements`


def cheapest(modelled: dict[str, float]) -> str:
    """The path of least modelled cost."""
    return min(modelled, key=modelled.__getitem__)


def fastest_path(key: Hashable, modelled: dict[str, float], trial: Callable[[str], None],
                 device: torch.device) -> str:
    """The fastest of the paths modelled within WITHIN of the cheapest, timed once per `key` by `trial(path)` (one
    call of the layer's engine on its input) and remembered; the cost model's choice under torch.compile."""
    if len(modelled) == 1 or torch.compiler.is_compiling():
        return cheapest(modelled)
    if key in _FASTEST:
        return _FASTEST[key]
    loaded = _LOADED.get(stable_key(key)) if _LOADED else None
    if loaded in modelled:  # replayed from another process: no timing
        _FASTEST[key] = loaded
        return loaded
    best = min(modelled.values())
    times = {}
    for path in (p for p, cost in sorted(modelled.items(), key=lambda item: item[1]) if cost <= WITHIN * best):
        trial(path)  # untimed: caches, buffers, oneDNN's primitives
        times[path] = min(timed(device, lambda path=path: trial(path)) for _ in range(REPEATS))
    _FASTEST[key] = choice = min(times, key=times.__getitem__)
    return choice


def input_key(x: torch.Tensor) -> tuple:
    """What a path choice depends on in a layer's input: x's shape, compute dtype, device type and memory format,
    and whether autograd records (forward alone, or forward and backward)."""
    return (tuple(x.shape), compute_dtype(x), x.device.type, channels_last(x), torch.is_grad_enabled())


def shape_key(x: torch.Tensor, *layer: Hashable) -> tuple:
    """What a measured choice depends on: the layer's own description (`layer`), then `input_key(x)`."""
    return (*layer, *input_key(x))


def stable_key(key: tuple) -> str:
    """A `shape_key` as a string that another process builds alike: classes by module and name, dataclasses (a
    layer's Geometry) by their repr, the memory format and the autograd flag by name.

    e.g. 'kwlab.methods.dyconv.DyConv2d|Geometry(in_channels=8, ...)|4|fast|False|(64, 8, 14, 14)|torch.float32|cpu|
    contiguous|grad'.
    """
    *parts, last, grad = key

    def text(part: object) -> str:
        return f"{part.__module__}.{part.__qualname__}" if isinstance(part, type) else str(part)

    return "|".join([*map(text, parts), "channels_last" if last else "contiguous", "grad" if grad else "no_grad"])


def measured_choices() -> dict[Hashable, str]:
    """The paths measured so far in this process, by layer key (a copy)."""
    return dict(_FASTEST)


def export_measurements() -> dict[str, str]:
    """The measured choices of this process (and those loaded into it), JSON-ready: `stable_key` -> path. A sweep
    records them with a trial; `load_measurements` replays them in another process."""
    return _LOADED | {stable_key(key): path for key, path in _FASTEST.items()}


def load_measurements(choices: Mapping[str, str]) -> None:
    """Take the choices of `export_measurements` (from this or another process on the same kind of machine): a layer
    whose key is among them takes its path without timing, where the cost model keeps that path in the running;
    other layers measure as usual."""
    unknown = sorted({path for path in choices.values() if path not in RUNNABLE})
    if unknown:
        raise ValueError(f"load_measurements: {', '.join(unknown)} is not a path of the engine ({RUNNABLE})")
    _LOADED.update(choices)


def forget_measurements() -> None:
    """Drop every measured and loaded choice (the next call of each layer shape times its paths again)."""
    _FASTEST.clear()
    _LOADED.clear()


def engine_trial(forward: Callable[[], torch.Tensor], inputs: list[torch.Tensor | None]) -> None:
    """Run `forward()` and, where it records a graph, its backward into the `inputs` that need a gradient (through
    torch.autograd.grad: no parameter's .grad is touched)."""
    out = forward()
    wanted = [t for t in inputs if t is not None and t.requires_grad]
    if out.requires_grad and wanted:
        torch.autograd.grad(out, wanted, torch.ones_like(out), allow_unused=True)


def timed(device: torch.device, fn: Callable[[], object]) -> float:
    """Seconds `fn()` takes on `device` (a CUDA device is synchronised before and after)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start
