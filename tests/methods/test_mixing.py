"""Tests for kwlab.methods.mixing, the mixing engine, through the KW layers: every path against the straightforward
reference computation.

The reference (path 'reference', kwlab.methods.mixing.reference) assembles every sample's kernel, permutes it into
conv layout and runs one grouped convolution over the batch. Each path must give its outputs and its gradients
(input, warehouse, attention parameters) to float tolerance, in both memory modes and both memory formats. Timings
live in `kwlab bench`.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import kwlab.methods.mixing.batched as batched
import kwlab.methods.mixing.columns as columns
from kwlab.methods import mixing
from kwlab.methods.kw.config import KWConfig
from kwlab.methods.kw.layers import KW_PATH_COSTS, KWConv2d, KWLayer
from kwlab.methods.temperature import set_temperature
from kwlab.methods.kw.warehouse import Warehouse
from layer_cases import LayerCase

@dataclass(frozen=True)
class Case(LayerCase):
    """A layer geometry with n = `cells` in its warehouse."""

    cells: int = 11  # n

    def build(self, kw: KWConfig | None = None) -> tuple[KWLayer, Warehouse]:
        """The layer in float64 with a mid-range temperature (alpha depends on the sample)."""
        warehouse = Warehouse(self.cells, self.cell)
        layer = self.make(warehouse, kw)
        layer.attention.tau.fill_(0.3)
        if layer.bias is not None:
            torch.nn.init.normal_(layer.bias)
        return layer.double(), warehouse.double()


# Shapes chosen to cover: g_o > 1 and g_i > 1 blocks, stride, dilation, asymmetric padding ('same' with an even
# kernel), rectangular kernels, whole-kernel cells, 1x1 convolutions, 1d/3d, grouped and depthwise, linear layers.
CASES = {
    "conv2d-3x3": Case(2, 8, 6, (3, 4, 1, 1), (3, 8, 7, 7), kernel=3, padding=1),
    "conv2d-stride-blocks": Case(2, 8, 6, (3, 2, 1, 1), (3, 8, 9, 8), kernel=3, stride=2, padding=1),
    "conv2d-rect-dilated": Case(2, 8, 6, (2, 2, 1, 1), (2, 8, 9, 8), kernel=(3, 2), stride=(2, 1), padding=(1, 0),
                                dilation=(1, 2), bias=False),
    "conv2d-same-even": Case(2, 8, 8, (4, 4, 1, 1), (2, 8, 6, 5), kernel=4, padding="same"),
    "conv2d-same-dilated": Case(2, 8, 6, (6, 8, 1, 1), (2, 8, 6, 5), kernel=3, padding="same", dilation=2),
    "conv2d-whole-cells": Case(2, 8, 6, (3, 4, 3, 3), (2, 8, 6, 6), kernel=3, stride=2, padding=1),
    "conv2d-one-mixture": Case(2, 8, 6, (6, 8, 3, 3), (2, 8, 6, 5), kernel=3, padding=1),
    "conv2d-grouped-one-mixture": Case(2, 8, 6, (6, 4, 3, 3), (2, 8, 5, 5), kernel=3, stride=2, padding=1, groups=2),
    "conv2d-1x1": Case(2, 8, 6, (3, 4, 1, 1), (2, 8, 4, 5)),
    "conv2d-1x1-stride": Case(2, 8, 6, (6, 2, 1, 1), (2, 8, 5, 5), stride=2),
    "conv2d-1x1-output": Case(2, 8, 6, (3, 4, 1, 1), (3, 8, 3, 3), kernel=3),
    "conv2d-grouped": Case(2, 8, 12, (3, 2, 1, 1), (2, 8, 5, 5), kernel=3, padding=1, groups=2),
    "conv2d-grouped-blocks-in": Case(2, 8, 4, (2, 2, 1, 1), (2, 8, 5, 5), kernel=3, padding="same", groups=2),
    "conv2d-grouped-whole": Case(2, 8, 8, (2, 2, 3, 3), (2, 8, 5, 5), kernel=3, stride=2, padding=1, groups=2),
    "conv2d-depthwise": Case(2, 8, 8, (4, 1, 1, 1), (2, 8, 6, 6), kernel=3, stride=2, padding=1, groups=8),
    "conv2d-depthwise-even": Case(2, 6, 6, (3, 1, 1, 1), (2, 6, 5, 5), kernel=2, padding="same", groups=6),
    "conv1d-dilated": Case(1, 6, 4, (2, 3, 1), (2, 6, 11), kernel=3, padding=2, dilation=2),
    "conv1d-grouped": Case(1, 6, 6, (2, 1, 1), (3, 6, 9), kernel=5, padding="same", dilation=2, groups=3),
    "conv3d": Case(3, 4, 6, (3, 2, 1, 1, 1), (2, 4, 5, 6, 4), kernel=3, stride=(1, 2, 1), padding=1),
    "linear-tokens": Case(0, 8, 6, (3, 4), (3, 5, 8)),
    "linear-vector": Case(0, 8, 6, (3, 4), (3, 8), bias=False),
    "linear-4d": Case(0, 6, 4, (2, 3, 1, 1), (2, 2, 3, 6)),
}
DENSE_PATHS = ("batched", "mixed", "grouped")


def run(layer: KWLayer, warehouse: Warehouse, x: torch.Tensor, grad: torch.Tensor | None = None):
    """Output and gradients (input, cells, attention parameters, bias) of one forward + backward."""
    x = x.detach().clone().requires_grad_()
    out = layer(x)
    grad = torch.randn_like(out) if grad is None else grad
    inputs = [x, warehouse.cells, *layer.attention.parameters(), *([layer.bias] if layer.bias is not None else [])]
    grads = torch.autograd.grad(out, inputs, grad, allow_unused=True)
    return out, grads, grad


def assert_matches_reference(layer: KWLayer, warehouse: Warehouse, x: torch.Tensor, path: str, **tolerance) -> None:
    """`path` gives the reference's output and gradients on x."""
    layer.path = "reference"
    expected, expected_grads, grad = run(layer, warehouse, x)
    layer.path = path
    out, grads, _ = run(layer, warehouse, x, grad)
    torch.testing.assert_close(out, expected, **tolerance)
    for got, want in zip(grads, expected_grads, strict=True):
        if want is None:
            assert got is None or not got.any()
        else:
            torch.testing.assert_close(got, want, **tolerance)


def paths_for(case: Case) -> tuple[str, ...]:
    """The paths a layer of this geometry can take (`combined` where its cell is its whole kernel)."""
    paths = ("grouped",) if case.groups > 1 else DENSE_PATHS
    return (*paths, "combined") if tuple(case.cell) == case.weight_shape() else paths


@pytest.mark.parametrize("memory", ["fast", "lean"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_every_path_matches_reference(name: str, memory: str) -> None:
    """Outputs and all gradients of every applicable path equal the reference's (float64)."""
    case = CASES[name]
    layer, warehouse = case.build()
    layer.memory = memory
    x = torch.randn(case.input, dtype=torch.float64)
    for path in (*paths_for(case), "auto"):
        assert_matches_reference(layer, warehouse, x, path)


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.dims == 2])
def test_channels_last_in_channels_last_out(name: str) -> None:
    """A channels-last input gives the reference's values, and the output comes back channels-last."""
    case = CASES[name]
    layer, warehouse = case.build()
    x = torch.randn(case.input, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    for path in paths_for(case):
        for memory in ("fast", "lean"):
            layer.memory = memory
            assert_matches_reference(layer, warehouse, x, path)
        layer.path = path
        if path != "grouped":
            assert layer(x).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("shifted", [False, True], ids=["unfolded", "shifted"])
@pytest.mark.parametrize("blocks", [False, True], ids=["one-block", "many-blocks"])
@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.groups == 1])
def test_block_and_input_strategies_match_reference(
    name: str, blocks: bool, shifted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kernels and mixed inputs built in many blocks, and step inputs as shifted views of the flattened input (where
    the convolution allows) or as an unfold copy, all give the reference's results, in both memory formats."""
    if blocks:
        monkeypatch.setattr(columns, "CHUNK_BYTES", 64)
    monkeypatch.setattr(batched, "SHIFTED_WASTE", 1e9 if shifted else 0.0)
    case = CASES[name]
    layer, warehouse = case.build()
    x = torch.randn(case.input, dtype=torch.float64)
    inputs = [x, x.contiguous(memory_format=torch.channels_last)] if x.dim() == 4 else [x]
    for memory in ("fast", "lean"):
        layer.memory = memory
        for path, data in itertools.product(("batched", "mixed"), inputs):
            assert_matches_reference(layer, warehouse, data, path)


def test_non_contiguous_input() -> None:
    """A strided view as input (e.g. a slice of a larger activation) works on every path."""
    case = CASES["conv2d-stride-blocks"]
    layer, warehouse = case.build()
    x = torch.randn(3, 16, 9, 10, dtype=torch.float64)[:, ::2, :, 1:-1]
    for path in DENSE_PATHS:
        assert_matches_reference(layer, warehouse, x, path)


@pytest.mark.parametrize("name", ["conv2d-3x3", "conv2d-grouped", "linear-tokens", "conv2d-whole-cells"])
def test_tau_one_takes_one_dense_convolution(name: str) -> None:
    """After set_temperature(1) alpha is beta for every sample: the auto path is `shared`, with the reference's
    output and gradients (the attention parameters get exact zeros, as through the blend)."""
    case = CASES[name]
    layer, warehouse = case.build()
    set_temperature(layer, 1.0)
    x = torch.randn(case.input, dtype=torch.float64)
    assert layer.select_path(4) == "shared"
    assert_matches_reference(layer, warehouse, x, "auto")


def test_tau_written_by_hand_voids_the_dense_path() -> None:
    """A tau buffer written after set_temperature (by hand, load_state_dict, an EMA) is the tau the layer uses."""
    case = CASES["conv2d-3x3"]
    layer, warehouse = case.build()
    set_temperature(layer, 1.0)
    assert layer.shares_alpha()
    with torch.no_grad():
        layer.attention.tau.copy_(torch.tensor(0.5))
    assert not layer.shares_alpha()
    x = torch.randn(case.input, dtype=torch.float64)
    assert_matches_reference(layer, warehouse, x, "auto")

    set_temperature(layer, 1.0)
    state = copy.deepcopy(layer.state_dict())
    state["attention.tau"].fill_(0.25)
    layer.load_state_dict(state)
    assert not layer.shares_alpha()
    set_temperature(layer, 0.999)
    assert not layer.shares_alpha()
    set_temperature(layer, 1.0)
    assert layer.shares_alpha() and copy.deepcopy(layer).select_path(4) in ("shared", "batched", "mixed", "grouped")


@pytest.mark.parametrize("path", ["batched", "mixed"])
def test_double_backward_is_refused(path: str) -> None:
    """The fast backward writes into buffers in place; differentiating it again raises instead of going wrong."""
    case = CASES["conv2d-3x3"]
    layer, _ = case.build()
    layer.path = path
    x = torch.randn(case.input, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(layer(x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|differentiate"):
        grad.sum().backward()


def test_no_blend_never_shares() -> None:
    """Without the one-to-one blend alpha always depends on the sample."""
    case = CASES["conv2d-3x3"]
    layer, _ = case.build(KWConfig(init="none"))
    set_temperature(layer, 1.0)
    assert not layer.shares_alpha()


def picked(geometry: mixing.Geometry, positions: int, cells: int, costs: mixing.PathCosts, **options: object) -> str:
    """The path the cost model picks: the cheapest of `path_costs`."""
    return mixing.cheapest(mixing.path_costs(geometry, positions, cells, costs, **options))


def test_the_cheapest_path() -> None:
    """Grouped convolutions take `grouped`; tiny outputs `mixed`; 3x3 convolutions `grouped` while their B kernels
    fit the cache or their outputs are many, else `batched`; 1x1 never `grouped`; shared alpha `shared`."""
    layer = KWConv2d(64, 64, 3, 1, 1, warehouse=Warehouse(30, (64, 64, 1, 1)))
    geometry, n = layer.geometry, layer.attention.cells
    assert picked(geometry, 1, n, KW_PATH_COSTS, batch=16) == "mixed"
    assert picked(geometry, 256, 10 * n, KW_PATH_COSTS, batch=16) == "grouped"  # 16 kernels in 2.4 MB
    assert picked(geometry, 256, n, KW_PATH_COSTS, batch=16) == "grouped"  # oneDNN
    deep = KWConv2d(256, 256, 3, 1, 1, warehouse=Warehouse(30, (256, 256, 1, 1))).geometry
    assert picked(deep, 196, 10 * n, KW_PATH_COSTS, batch=16) == "batched"  # 16 kernels in 38 MB
    assert picked(deep, 3136, 10 * n, KW_PATH_COSTS, batch=16) == "grouped"
    assert picked(geometry, 4096, n, KW_PATH_COSTS, batch=16, memory="lean", shared=True) == "shared"
    pointwise = KWConv2d(64, 64, 1, warehouse=Warehouse(30, (64, 64, 1, 1))).geometry
    assert picked(pointwise, 4096, n, KW_PATH_COSTS, batch=16) == "batched"
    grouped, _ = CASES["conv2d-depthwise"].build()
    assert picked(grouped.geometry, 4096, 8, KW_PATH_COSTS) == "grouped"


def test_unknown_path_is_an_error() -> None:
    layer, _ = CASES["conv2d-3x3"].build()
    layer.path = "fastest"
    with pytest.raises(ValueError, match="fastest"):
        layer(torch.randn(CASES["conv2d-3x3"].input, dtype=torch.float64))


def test_memory_mode_from_config() -> None:
    """kw.memory reaches the layers; lean is accepted, other values are refused."""
    layer, _ = CASES["conv2d-3x3"].build(KWConfig(memory="lean"))
    assert layer.memory == "lean"
    with pytest.raises(ValueError, match="memory"):
        KWConfig(memory="tiny")


def saved_bytes(layer: KWLayer, x: torch.Tensor) -> tuple[int, int]:
    """Bytes of the tensors autograd keeps for backward (distinct storages, parameters excluded), largest one."""
    params = {p.untyped_storage().data_ptr() for p in layer.parameters()}
    params |= {layer.warehouse.cells.untyped_storage().data_ptr()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = layer(x)
    out.sum().backward()
    kept = [size for ptr, size in storages.items() if ptr not in params]
    return sum(kept), max(kept, default=0)


@pytest.mark.parametrize("path", ["batched", "mixed", "grouped"])
def test_lean_keeps_no_per_sample_kernels(path: str) -> None:
    """memory=lean keeps the input and alpha, never a per-sample kernel; the reference keeps all B of them."""
    groups = 2 if path == "grouped" else 1
    layer = KWConv2d(32, 32, 3, 1, 1, groups=groups, warehouse=Warehouse(20, (32, 32 // groups, 1, 1)))
    layer.attention.tau.fill_(0.5)
    x = torch.randn(8, 32, 4, 4, requires_grad=True)
    kernels = 8 * 32 * 32 // groups * 9 * 4  # bytes of B float32 kernels
    layer.path = "reference"
    assert saved_bytes(layer, x)[1] >= kernels  # the check can fail
    layer.path, layer.memory = path, "lean"
    total, largest = saved_bytes(layer, x)
    assert largest < kernels / 8 and total < 4 * x.numel() * 4


class _CopyWatch(TorchDispatchMode):
    """Records the size of every copy-like op's output."""

    def __init__(self) -> None:
        super().__init__()
        self.copies: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = str(func.overloadpacket)
        if "copy" in name or "clone" in name:
            tensor = out if isinstance(out, torch.Tensor) else None
            if tensor is not None:
                self.copies.append((name, tensor.numel()))
        return out


@pytest.mark.parametrize("path", ["batched", "mixed"])
def test_forward_does_not_copy_per_sample_kernels(path: str) -> None:
    """No copy in the forward is as large as the per-sample kernels: they are assembled in the layout the batched
    matmuls consume (the grouped path's copy into conv layout is: its one matmul and copy beat a batched matmul
    writing conv layout directly)."""
    layer = KWConv2d(32, 32, 3, 1, 1, warehouse=Warehouse(40, (32, 32, 1, 1)))
    layer.attention.tau.fill_(0.5)
    x = torch.randn(4, 32, 2, 2)
    kernels = 4 * 32 * 32 * 9
    layer.path = "grouped"
    with torch.no_grad(), _CopyWatch() as watch:
        layer(x)
    assert max(size for _, size in watch.copies) >= kernels  # the check can fail
    layer.path = path
    with torch.no_grad(), _CopyWatch() as watch:
        layer(x)
    assert max((size for _, size in watch.copies), default=0) < kernels


@pytest.mark.parametrize("name", ["conv2d-3x3", "conv2d-grouped", "conv2d-1x1-output", "linear-tokens"])
def test_bf16_autocast_close_to_float32(name: str) -> None:
    """Under CPU bf16 autocast every path runs in bf16 and stays within bf16 tolerance of the float32 reference."""
    case = CASES[name]
    layer, warehouse = case.build()
    layer.float()
    warehouse.float()
    x = torch.randn(case.input)
    layer.path = "reference"
    expected = layer(x)
    scale = expected.abs().max()
    for path in paths_for(case):
        layer.path = path
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(x)
        assert out.dtype == torch.bfloat16
        assert (out.float() - expected).abs().max() <= 0.03 * scale
        out.float().sum().backward()  # the backward runs in bf16 too
        assert warehouse.cells.grad is not None and torch.isfinite(warehouse.cells.grad).all()
        warehouse.cells.grad = None


def test_model_paths_agree_with_reference() -> None:
    """A converted model with the automatic paths matches the reference path, in training mode, both memory modes."""
    import kwlab

    model = kwlab.create_model("cifar_resnet8", kw={"budget": 2}, in_chans=1).double()
    kwlab.set_temperature(model, 0.4)
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    layers = [m for m in model.modules() if isinstance(m, KWLayer)]
    outputs = {}
    for setting in (("reference", "fast"), ("auto", "fast"), ("auto", "lean")):
        for layer in layers:
            layer.path, layer.memory = setting
        model.zero_grad()
        out = model(x)
        out.square().sum().backward()
        outputs[setting] = (out.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None])
    expected = outputs[("reference", "fast")]
    for setting in (("auto", "fast"), ("auto", "lean")):
        torch.testing.assert_close(outputs[setting][0], expected[0])
        for got, want in zip(outputs[setting][1], expected[1], strict=True):
            torch.testing.assert_close(got, want)


@pytest.mark.slow
@pytest.mark.parametrize("memory", ["fast", "lean"])
@pytest.mark.parametrize("path", ["batched", "mixed", "grouped", "auto", "measured"])
def test_torch_compile_fullgraph(path: str, memory: str) -> None:
    """torch.compile(fullgraph=True) traces every path without a graph break and matches eager (about 10-100 s
    each on a 2-core CPU: inductor compiles the forward and backward kernels)."""
    torch._dynamo.reset()
    groups = 2 if path == "grouped" else 1
    layer = KWConv2d(8, 8, 3, 1, 1, groups=groups, warehouse=Warehouse(7, (4, 2, 1, 1)))
    layer.attention.tau.fill_(0.5)
    layer.path, layer.memory = path, memory
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    compiled = torch.compile(layer, fullgraph=True)
    out = compiled(x)
    out.square().sum().backward()
    grad = x.grad.clone()
    x.grad = None
    layer.path = "reference"
    expected = layer(x)
    expected.square().sum().backward()
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grad, x.grad, rtol=1e-3, atol=1e-3 * math.sqrt(x.grad.abs().max().item()))


def test_bench_runs_and_reports_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`kwlab bench --json` on a tiny model: one object with the machine, the settings and a row per variant x mode
    (timings are only checked for being there: they belong to the benchmark, not to tests)."""
    import argparse
    import json

    from kwlab import bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args([
        "--model", "cifar_resnet8", "--in-chans", "1", "--size", "8", "--batch", "4", "--variants", "static,1/4x,1x",
        "--memory", "fast,lean,reference", "--repeats", "1", "--warmup", "0", "--device", "cpu", "--train-step",
        "--json",
    ])
    assert bench.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"cpu", "cores", "threads", "torch"} <= set(report["machine"])
    rows = {(r["variant"], r["memory"]): r for r in report["results"]}
    assert set(rows) == {("static", "-")} | {(v, m) for v in ("1/4x", "1x") for m in ("fast", "lean", "reference")}
    assert rows[("static", "-")]["ratio_fwd_bwd"] == 1.0
    for (variant, memory), row in rows.items():
        assert row["fwd_ms"] > 0 and row["fwd_bwd_ms"] > 0 and row["step_ms"] > 0 and row["saved_mib"] > 0
        if variant != "static":
            assert row["floor"] > 1
            assert sum(row["paths"].values()) == 8 and ("reference" in row["paths"]) == (memory == "reference")
    assert rows[("1x", "lean")]["saved_mib"] < rows[("1x", "reference")]["saved_mib"]
