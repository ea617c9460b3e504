"""`kwlab bench`: time and measure a static model against its KernelWarehouse and dynamic-convolution variants, in
one process.

Every variant is built once, warmed up, then timed in interleaved rounds (static, 1/4x, 1x, 4x, static, ...) so that
a shared, noisy machine slows them alike; the table reports medians. Per variant and memory mode: forward and
forward+backward time, their ratio to the static model, the floor (the fewest MACs per image any exact algorithm of
the mixing engine needs, per layer the cheaper of assembling kernels then convolving and mixing the input then
convolving, plus the attention, over the static model's: `Price.floor`), the roofline (per layer the least
max(MACs / rate, bytes / bandwidth) of any exact algorithm, at the static model's measured MAC rate and the copy
bandwidth measured here: kwlab.methods.mixing.roofline) and the fused limit, the bytes autograd keeps for backward, the
peak memory where the device reports it, and the paths the layers take. `--compile` compiles every model as a trial
does (kwlab.train.compiling) and reports each one's compile time.
`--memory reference` adds the straightforward reference computation, the "before" (KW: every kernel assembled, one
grouped convolution; CondConv, DY-Conv, ODConv: one convolution per sample).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from kwlab.allocator import keep_freed_memory
from kwlab.errors import KWLabError
from kwlab.overrides import parse_assignment

if TYPE_CHECKING:
    from kwlab.methods.mixing.roofline import Machine
    from kwlab.methods.protocol import Price

MEMORY_CHOICES = ("fast", "lean", "reference")
BANDWIDTH_BYTES = 1 << 28  # the copy that measures the memory bandwidth: far beyond any cache
PATH_CHOICES = ("auto", "measured")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `kwlab bench`."""
    parser.add_argument("--model", default="resnet18", help="timm model name (kwlab's cifar_* included)")
    parser.add_argument("--batch", type=int, default=16, help="batch size")
    parser.add_argument("--size", type=int, default=64, help="input height and width")
    parser.add_argument("--in-chans", type=int, default=3, help="input channels (1 for the 'digits' data)")
    parser.add_argument("--model-kwarg", action="append", default=[], metavar="KEY=VALUE",
                        help="a keyword argument of the model, repeatable, e.g. width=0.5 (model.kwargs of a trial)")
    parser.add_argument("--variants", default="static,1/4x,1x,4x",
                        help="comma list: static; KW budgets such as 1/4x, 1x, 4x (KWConfig defaults, sharing stage; "
                             "budgets below 1 use cell ratios 1/2, as the reference's 1/4x); condconvN (N experts), "
                             "dyconvN (N kernels), odconvNx (N kernels), e.g. condconv8,dyconv4,odconv1x,odconv4x")
    parser.add_argument("--memory", default="fast,lean",
                        help="comma list of memory modes for the KW and dynamic-convolution variants: fast, lean, "
                             "reference (the plain path)")
    parser.add_argument("--choice", default="auto",
                        help="comma list of how the layers pick their paths: auto (the cost model), measured (the "
                             "modelled candidates timed once per layer shape, before the timed rounds)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (medians are reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                        help="bfloat16 runs under autocast")
    parser.add_argument("--channels-last", action="store_true", help="model and input in channels-last format")
    parser.add_argument("--compile", action="store_true", help="torch.compile every model (slow to build on CPU)")
    parser.add_argument("--compile-mode", default="default", choices=("default", "reduce-overhead", "max-autotune"),
                        help="torch.compile's mode with --compile (reduce-overhead: CUDA graphs on a GPU)")
    parser.add_argument("--train-step", action="store_true",
                        help="also time a full training step (forward, backward, SGD with momentum)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


@dataclass
class Row:
    """One measured variant x memory mode x path choice."""

    variant: str
    memory: str
    choice: str = "-"
    fwd_ms: float = math.nan
    fwd_bwd_ms: float = math.nan
    step_ms: float | None = None
    ratio_fwd: float = math.nan
    ratio_fwd_bwd: float = math.nan
    ratio_step: float | None = None
    macs: float = 1.0
    floor: float = 1.0
    vs_floor: float = math.nan
    roofline: float = 1.0
    vs_roofline: float = math.nan
    fused_limit: float = 1.0
    saved_mib: float = math.nan
    saved_ratio: float = math.nan
    peak_mib: float | None = None
    params: int = 0
    paths: dict[str, int] = field(default_factory=dict)
    compile_s: float | None = None
    price: Price | None = field(default=None, repr=False)  # the variant's price (its layers' work for the roofline)


@dataclass(frozen=True)
class Variant:
    """One model to measure: its name in the table, the method and the method's settings."""

    name: str
    method: str
    settings: dict[str, Any] | None = None


@dataclass
class Entry:
    """A model under test and its timings."""

    row: Row
    model: nn.Module
    optimizer: torch.optim.Optimizer | None = None
    times: dict[str, list[float]] = field(default_factory=lambda: {"fwd": [], "fwd_bwd": [], "step": []})


def main(args: argparse.Namespace) -> int:
    """Build, measure and report."""
    from kwlab.methods import build_model, path_layers, price_model
    from kwlab.methods.mixing.measured import timed
    from kwlab.methods.mixing.roofline import model_roofline
    from kwlab.train.compiling import compile_model

    device = _device(args.device)
    keep_freed_memory()  # as `kwlab train` does: both the static model and the KW variants reuse their buffers
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    variants = _parse_variants(args.variants)
    modes = [m.strip() for m in args.memory.split(",") if m.strip()]
    for mode in modes:
        if mode not in MEMORY_CHOICES:
            raise KWLabError(f"--memory: {mode!r} is not one of {', '.join(MEMORY_CHOICES)}")
    choices = [c.strip() for c in args.choice.split(",") if c.strip()]
    for choice in choices:
        if choice not in PATH_CHOICES:
            raise KWLabError(f"--choice: {choice!r} is not one of {', '.join(PATH_CHOICES)}")
    if args.batch < 1 or args.size < 1 or args.repeats < 1:
        raise KWLabError("--batch, --size and --repeats must be positive")
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    x = torch.randn(args.batch, args.in_chans, args.size, args.size, device=device).to(memory_format=memory_format)
    timm_args = {"in_chans": args.in_chans} if args.in_chans != 3 else {}
    timm_args.update(parse_assignment(text) for text in args.model_kwarg)

    def build(variant: Variant) -> nn.Module:
        model = build_model(args.model, variant.method, variant.settings, **timm_args).to(device).train()
        return model.to(memory_format=memory_format)

    static_model = build(Variant("static", "static"))
    static_flops = _forward_flops(static_model, x)
    static_macs = price_model(args.model, "static", None, (args.in_chans, args.size, args.size), **timm_args).macs
    entries = [Entry(Row("static", "-"), static_model)]  # always measured: every ratio is to it
    for variant in variants:
        if variant.method == "static":
            continue
        price = price_model(args.model, variant.method, variant.settings, (args.in_chans, args.size, args.size),
                            **timm_args)
        for mode, choice in [(m, c) for m in modes for c in (["-"] if m == "reference" else choices)]:
            model = build(variant)
            for layer in path_layers(model):
                layer.path, layer.memory = ("reference", "fast") if mode == "reference" else (choice, mode)
            conv = price.macs_parts["conv"]
            row = Row(variant.name, mode, choice, macs=price.macs / conv, floor=price.floor_macs / conv, price=price)
            entries.append(Entry(row, model))

    autocast = _autocast(device, args.dtype)
    if args.compile:  # every model compiles the same frames (its class's forward): one cache entry each
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 2 * len(entries))
    for entry in entries:
        entry.row.params = sum(p.numel() for p in entry.model.parameters())
        entry.row.paths = _paths(entry.model, x, autocast)
        entry.row.saved_mib = _saved_bytes(entry.model, x, autocast) / 2**20
        if args.compile:  # the first call builds the graphs: its time is the compile time
            entry.model = compile_model(entry.model, None if args.compile_mode == "default" else args.compile_mode)
            entry.row.compile_s = timed(device, lambda e=entry: _forward_backward(e.model, x, autocast))
        if args.train_step:
            entry.optimizer = torch.optim.SGD(entry.model.parameters(), lr=1e-3, momentum=0.9)
        entry.row.peak_mib = _peak_mib(device, lambda e=entry: _forward_backward(e.model, x, autocast))

    target = torch.randint(0, 10, (args.batch,), device=device)
    for round_index in range(args.warmup + args.repeats):
        for entry in entries:
            fwd = timed(device, lambda e=entry: _forward(e.model, x, autocast))
            fwd_bwd = timed(device, lambda e=entry: _forward_backward(e.model, x, autocast))
            step = timed(device, lambda e=entry: _train_step(e, x, target, autocast)) if args.train_step else None
            if round_index >= args.warmup:
                entry.times["fwd"].append(fwd)
                entry.times["fwd_bwd"].append(fwd_bwd)
                if step is not None:
                    entry.times["step"].append(step)
            entry.model.zero_grad(set_to_none=True)

    static = entries[0]
    rates = _machine_rates(device, static_macs * args.batch / statistics.median(static.times["fwd_bwd"]))
    itemsize = 2 if args.dtype == "bfloat16" else 4
    for entry in entries:
        row = entry.row
        row.fwd_ms = statistics.median(entry.times["fwd"]) * 1e3
        row.fwd_bwd_ms = statistics.median(entry.times["fwd_bwd"]) * 1e3
        if entry.times["step"]:
            row.step_ms = statistics.median(entry.times["step"]) * 1e3
        row.ratio_fwd = row.fwd_ms / static.row.fwd_ms
        row.ratio_fwd_bwd = row.fwd_bwd_ms / static.row.fwd_bwd_ms
        row.ratio_step = row.step_ms / static.row.step_ms if row.step_ms and static.row.step_ms else None
        row.vs_floor = row.ratio_fwd_bwd / row.floor
        if row.price is not None:
            row.roofline, row.fused_limit = model_roofline(row.price.layers, static_macs, args.batch, itemsize, rates)
        row.vs_roofline = row.ratio_fwd_bwd / row.roofline
        row.saved_ratio = row.saved_mib / static.row.saved_mib

    machine = _machine(device)
    settings = {
        "model": args.model, "model_kwargs": timm_args, "batch": args.batch,
        "input": [args.in_chans, args.size, args.size],
        "dtype": args.dtype, "channels_last": args.channels_last,
        "compile": args.compile, "compile_mode": args.compile_mode,
        "repeats": args.repeats, "warmup": args.warmup, "static_gflops_forward": static_flops / 1e9,
        "mac_rate_gmacs": rates.mac_rate / 1e9, "bandwidth_gbs": rates.bandwidth / 1e9,
    }
    rows = [e.row for e in entries]
    if args.json:
        results = [{k: v for k, v in asdict(r).items() if k != "price"} for r in rows]
        print(json.dumps({"machine": machine, "settings": settings, "results": results}))
    else:
        _print_table(machine, settings, rows, args.train_step)
    return 0


# ------------------------------------------------------------------------------------------------ building


def _parse_variants(text: str) -> list[Variant]:
    """'static,1/4x,1x,condconv8,dyconv4,odconv1x' -> Variants: each token read by the method that declares it
    (`Method.bench_settings`: KW budgets, the dynamic methods' names with their K, a plugin's name)."""
    from kwlab.methods import METHODS

    variants = []
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        found = [(name, settings) for name in METHODS.names()
                 if (settings := METHODS.get(name).bench_settings(token)) is not None]
        if not found:
            raise KWLabError(f"--variants: {token!r} names no method's variant: 'static', a KW budget such as 1/4x, "
                             f"1x, 4x, a dynamic convolution such as condconv8, dyconv4, odconv1x, or a method's name "
                             f"({', '.join(METHODS.names())})")
        name, settings = found[0]
        variants.append(Variant(token, name, settings))
    return variants


def _device(text: str) -> torch.device:
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(text)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise KWLabError("--device: CUDA is not available on this machine")
    return device


def _autocast(device: torch.device, dtype: str) -> Callable[[], contextlib.AbstractContextManager]:
    if dtype == "float32":
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


# ------------------------------------------------------------------------------------------------ measuring


def _forward(model: nn.Module, x: torch.Tensor, autocast) -> None:
    with autocast():
        model(x)


def _forward_backward(model: nn.Module, x: torch.Tensor, autocast) -> None:
    with autocast():
        out = model(x)
    out.float().sum().backward()


def _train_step(entry: Entry, x: torch.Tensor, target: torch.Tensor, autocast) -> None:
    with autocast():
        out = entry.model(x)
    loss = nn.functional.cross_entropy(out.float(), target % out.shape[-1])
    entry.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    entry.optimizer.step()


def _peak_mib(device: torch.device, fn: Callable[[], None]) -> float | None:
    """Peak allocated memory of one forward+backward (CUDA only: the CPU allocator keeps no statistics)."""
    if device.type != "cuda":
        return None
    fn()  # warm: the first call compiles or autotunes
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def _saved_bytes(model: nn.Module, x: torch.Tensor, autocast) -> int:
    """Bytes of the tensors autograd keeps for backward in one forward, each storage counted once.

    Parameters that autograd keeps (conv weights, warehouse cells) count too, as in the issue's accounting.
    """
    storages: dict[tuple[str, int], int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[(str(tensor.device), storage.data_ptr())] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), autocast():
        out = model(x)
    out.float().sum().backward()
    model.zero_grad(set_to_none=True)
    return sum(storages.values())


def _paths(model: nn.Module, x: torch.Tensor, autocast) -> dict[str, int]:
    """How many KW layers and dynamic convolutions take each path for this input."""
    from kwlab.methods import path_layers

    counts: Counter[str] = Counter()

    def record(layer: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        counts[layer.path_for(inputs[0])] += 1

    handles = [m.register_forward_pre_hook(record) for m in path_layers(model)]
    try:  # autograd on, as in the timed forward+backward: a measured choice is made (and timed) here
        with torch.enable_grad(), autocast():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return dict(sorted(counts.items()))


def _machine_rates(device: torch.device, static_macs_per_s: float) -> Machine:
    """The roofline's rates: the static model's MACs per second, forward and backward (3 x its forward MACs per
    image x images / its median forward+backward time), and the memory bandwidth of one large copy (bytes read and
    written, the best of a few)."""
    from kwlab.methods.mixing.measured import timed
    from kwlab.methods.mixing.roofline import PASSES, Machine

    source = torch.empty(BANDWIDTH_BYTES // 4, device=device)
    target = torch.empty_like(source)
    seconds = min(timed(device, lambda: target.copy_(source)) for _ in range(4))
    return Machine(PASSES * static_macs_per_s, 2 * BANDWIDTH_BYTES / seconds)


def _forward_flops(model: nn.Module, x: torch.Tensor) -> float:
    """FLOPs of one forward of the static model (torch's FlopCounterMode: convolutions and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(x)
    model.train()
    return float(counter.get_total_flops())


# ------------------------------------------------------------------------------------------------ reporting


def _machine(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    machine = {"cpu": cpu, "cores": cores, "threads": torch.get_num_threads(), "torch": torch.__version__,
               "device": str(device)}
    if device.type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        machine["load_average"] = [round(v, 2) for v in os.getloadavg()]
    return machine


def _print_table(machine: dict[str, Any], settings: dict[str, Any], rows: list[Row], train_step: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    title = (f"{settings['model']}: batch {settings['batch']}, input {'x'.join(map(str, settings['input']))}, "
             f"{settings['dtype']}{', channels-last' if settings['channels_last'] else ''}"
             f"{', compiled (' + settings['compile_mode'] + ')' if settings['compile'] else ''}; "
             f"median of {settings['repeats']} interleaved rounds")
    table = Table(title=title, title_justify="left")
    columns = ["variant", "memory", "choice", "fwd ms", "fwd+bwd ms", "x static", "MACs", "floor", "x floor",
               "roofline", "x roofline", "fused limit"]
    if train_step:
        columns += ["step ms", "step x"]
    if settings["compile"]:
        columns += ["compile s"]
    columns += ["saved MiB", "saved x", "peak MiB", "paths"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("variant", "memory", "choice", "paths") else "right",
                         no_wrap=True)
    for row in rows:
        cells = [row.variant, row.memory, row.choice, f"{row.fwd_ms:.1f}", f"{row.fwd_bwd_ms:.1f}",
                 f"{row.ratio_fwd_bwd:.2f}", f"{row.macs:.2f}", f"{row.floor:.2f}", f"{row.vs_floor:.2f}",
                 f"{row.roofline:.2f}", f"{row.vs_roofline:.2f}", f"{row.fused_limit:.2f}"]
        if train_step:
            cells += [f"{row.step_ms:.1f}", f"{row.ratio_step:.2f}"]
        if settings["compile"]:
            cells += ["-" if row.compile_s is None else f"{row.compile_s:.1f}"]
        cells += [f"{row.saved_mib:.1f}", f"{row.saved_ratio:.2f}",
                  "n/a" if row.peak_mib is None else f"{row.peak_mib:.1f}",
                  " ".join(f"{k}:{v}" for k, v in row.paths.items()) or "-"]
        table.add_row(*cells)
    console = Console()
    console.width = max(console.width, 200)  # a table squeezed into a pipe's 80 columns reads badly
    console.print(f"roofline rates: the static model's {settings['mac_rate_gmacs']:.3g} GMAC/s (forward and "
                  f"backward), memory bandwidth {settings['bandwidth_gbs']:.3g} GB/s (one large copy)")
    console.print(table)
    load = machine.get("load_average")
    gpu = f" ({machine['gpu']})" if "gpu" in machine else ""
    console.print(f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['threads']} threads, torch "
                  f"{machine['torch']}, device {machine['device']}{gpu}{f', load average {load[0]}' if load else ''}")
    if load and load[0] > machine["cores"] and machine["threads"] > 1:
        console.print(f"note: the load average ({load[0]}) exceeds the {machine['cores']} cores: multi-threaded "
                      "kernels wait for descheduled threads, which hurts models made of many small operations "
                      "(the KW paths) far more than the static model; compare with --threads 1", style="yellow")
    console.print("x static: forward+backward time over the static model's; MACs: the variant's priced MACs over "
                  "the static model's; floor: the fewest MACs per image of any exact algorithm the mixing engine has "
                  "(per layer: assembly then convolution, mixing the input then convolution, or convolution then "
                  "combination) plus the attention, over the static model's; x floor: x static over floor; roofline: "
                  "per layer the least max(MACs / rate, bytes / bandwidth) of any exact algorithm, over the static "
                  "model's time (kwlab/methods/mixing/roofline.py); x roofline: x static over roofline; fused limit: "
                  "the roofline with no per-sample kernel or intermediate in memory; compile s: the first compiled "
                  "forward+backward; step: "
                  "forward, backward and SGD step; saved: bytes autograd keeps for backward (parameters included, "
                  "each storage once); choice: how the layers pick a path (auto: the cost model; measured: timed once per "
                  "layer shape); paths: KW layers and dynamic convs per path")

