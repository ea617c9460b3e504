"""Every path of the mixing engine through the dynamic convolutions (kwlab.methods.dynamic, CondConv, DY-Conv, ODConv)
against the reference path: outputs and the gradients of the input, the kernels, the biases and every attention
parameter, in float64, in both memory modes and both memory formats; and the path choice."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from kwlab.methods.condconv import CondConv2d
from kwlab.methods.dynamic import DYNAMIC_PATH_COSTS, DynamicConv
from kwlab.methods.dyconv import DyConv2d
from kwlab.methods.mixing import Geometry, cheapest, path_costs
from kwlab.methods.odconv import ODConv2d


@dataclass(frozen=True)
class Case:
    """A conv geometry and the input it runs on."""

    in_channels: int
    out_channels: int
    input: tuple[int, int, int, int]
    kernel: int | tuple[int, int] = 3
    stride: int | tuple[int, int] = 1
    padding: int | str | tuple[int, int] = 0
    dilation: int | tuple[int, int] = 1
    groups: int = 1

    def args(self) -> tuple:
        return (self.in_channels, self.out_channels, self.kernel, self.stride, self.padding, self.dilation,
                self.groups)


CASES = {
    "3x3": Case(6, 5, (3, 6, 7, 6), padding=1),
    "3x3-stride": Case(6, 5, (3, 6, 9, 8), stride=2, padding=1),
    "rect-dilated": Case(6, 5, (3, 6, 9, 8), kernel=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
    "same-even": Case(4, 6, (2, 4, 6, 5), kernel=4, padding="same"),
    "1x1": Case(6, 5, (3, 6, 4, 5), kernel=1),
    "1x1-stride": Case(6, 5, (3, 6, 5, 5), kernel=1, stride=2),
    "grouped": Case(6, 4, (3, 6, 5, 5), padding=1, groups=2),
    "depthwise": Case(6, 6, (3, 6, 6, 6), stride=2, padding=1, groups=6),
    "depthwise-1x1": Case(6, 6, (3, 6, 4, 4), kernel=1, groups=6),
}


def make(kind: str, case: Case, bias: bool) -> DynamicConv:
    """A float64 layer of `kind` with sample-dependent attention (T = 1, biases and BN shifted off zero)."""
    if kind == "condconv":
        layer = CondConv2d(*case.args(), bias=bias, experts=3)
    elif kind == "dyconv":
        layer = DyConv2d(*case.args(), bias=bias, kernels=3)
    else:
        layer = ODConv2d(*case.args(), bias=bias, kernels=int(kind.removeprefix("odconv")))
    with torch.no_grad():
        for name, param in layer.named_parameters():
            if name.endswith("bias") or "norm" in name:
                param.normal_(0.0, 0.5)
    return layer.double()


def paths_of(layer: DynamicConv) -> list[str]:
    paths = ["grouped"] if layer.groups > 1 else ["grouped", "batched", "mixed"]
    if layer.geometry.mixtures == 1 and layer.kernels > 1:  # whole-kernel cells: convolve, then combine
        paths.append("combined")
    if isinstance(layer, ODConv2d) and layer.kernels == 1 and layer.taps == 1:
        paths.append("shared")
    return [*paths, "measured"]  # whichever of them the timing picks


def run(layer: DynamicConv, x: torch.Tensor, path: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Output and gradients of a fixed random projection of it (input and every parameter)."""
    layer.path = path
    layer.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    out = layer(x)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape)
    (out * weights).sum().backward()
    grads = {"input": x.grad, **{name: p.grad for name, p in layer.named_parameters()}}
    return out.detach(), grads


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@pytest.mark.parametrize("memory", ["fast", "lean"])
@pytest.mark.parametrize("kind", ["condconv", "dyconv", "odconv1", "odconv3"])
@pytest.mark.parametrize("case", list(CASES))
def test_every_path_matches_the_per_sample_reference(kind: str, case: str, memory: str,
                                                     generator: torch.Generator) -> None:
    geometry = CASES[case]
    layer = make(kind, geometry, bias=case in ("3x3", "1x1", "grouped"))
    x = torch.randn(geometry.input, generator=generator, dtype=torch.float64)
    expected, expected_grads = run(layer, x, "reference")
    layer.memory = memory
    for path in paths_of(layer):
        out, grads = run(layer, x, path)
        torch.testing.assert_close(out, expected, msg=f"{path}: output")
        for name, grad in expected_grads.items():
            assert grads[name] is not None, f"{path}: no gradient for {name}"
            torch.testing.assert_close(grads[name], grad, msg=f"{path}: gradient of {name}")


@pytest.mark.parametrize("kind", ["dyconv", "odconv3"])
def test_lean_memory_and_channels_last_match(kind: str, generator: torch.Generator) -> None:
    geometry = CASES["3x3-stride"]
    layer = make(kind, geometry, bias=False)
    x = torch.randn(geometry.input, generator=generator, dtype=torch.float64)
    expected, expected_grads = run(layer, x, "reference")
    layer.memory = "lean"
    last = x.to(memory_format=torch.channels_last)
    for path in paths_of(layer):
        out, grads = run(layer, last, path)
        torch.testing.assert_close(out, expected, msg=path)
        for name, grad in expected_grads.items():
            torch.testing.assert_close(grads[name], grad, msg=f"{path}: gradient of {name}")


def test_auto_path_follows_the_shape() -> None:
    """Large feature maps take the per-sample grouped convolution, 1x1 feature maps the mixed products, and grouped
    convs always the grouped one."""
    layer = DyConv2d(64, 64, 3, padding=1, kernels=4)
    assert layer.path_for(torch.zeros(16, 64, 32, 32, device="meta")) == "grouped"
    geometry = Geometry(512, 512, 1, (3, 3), (1, 1), (1, 1), ((1, 1), (1, 1)), (512, 512, 3, 3))
    assert cheapest(path_costs(geometry, 1, 4, DYNAMIC_PATH_COSTS, batch=16)) == "mixed"
    depthwise = Geometry(64, 64, 64, (3, 3), (1, 1), (1, 1), ((1, 1), (1, 1)), (64, 1, 3, 3))
    assert cheapest(path_costs(depthwise, 1, 4, DYNAMIC_PATH_COSTS)) == "grouped"
    pointwise = ODConv2d(8, 8, 1, kernels=1)
    assert pointwise.path_for(torch.zeros(2, 8, 4, 4)) == "shared"


def test_unknown_path_is_an_error() -> None:
    layer = CondConv2d(4, 4, 3, experts=2)
    layer.path = "fastest"
    with pytest.raises(ValueError, match="fastest"):
        layer(torch.zeros(1, 4, 5, 5))


def test_autocast_runs_in_bfloat16() -> None:
    """Under CPU autocast the convolution runs in bfloat16 and stays close to the float32 result."""
    torch.manual_seed(0)
    for layer in (DyConv2d(8, 8, 3, padding=1, kernels=4), ODConv2d(8, 8, 3, padding=1, kernels=4)):
        x = torch.randn(2, 8, 6, 6)
        expected = layer(x)
        for path in ("grouped", "batched", "mixed"):
            layer.path = path
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = layer(x)
            assert out.dtype == torch.bfloat16
            assert (out.float() - expected).abs().max() < 0.05 * expected.abs().max() + 1e-3


def kept_for_backward(layer: DynamicConv, x: torch.Tensor) -> int:
    """Elements of the tensors autograd keeps for backward that are no parameter (each storage once)."""
    params = {p.untyped_storage().data_ptr() for p in layer.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        pointer = tensor.untyped_storage().data_ptr()
        if pointer not in params:
            storages[pointer] = tensor.untyped_storage().nbytes() // tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = layer(x)  # what the forward keeps (a lean backward's own recomputation is transient)
    out.sum().backward()
    return sum(storages.values())


@pytest.mark.parametrize("kind", ["condconv", "odconv3"])
def test_lean_grouped_keeps_no_per_sample_kernel(kind: str) -> None:
    """memory='lean' on the grouped path assembles the kernels again in backward, ODConv's own per-tap assembly
    included: what autograd keeps is smaller than one kernel per sample."""
    layer = make(kind, Case(32, 32, (8, 32, 4, 4), padding=1), bias=False).float()
    x = torch.randn(8, 32, 4, 4)
    layer.path = "grouped"
    kernels = x.shape[0] * math.prod(layer.weight_shape)
    layer.memory = "fast"
    assert kept_for_backward(layer, x) >= kernels
    layer.memory = "lean"
    assert kept_for_backward(layer, x) < kernels / 4


@pytest.mark.parametrize("memory", ["fast", "lean"])
def test_odconv_tap_cells_assembled_in_blocks_match(memory: str, generator: torch.Generator,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """ODConv's batched path assembles each tap's kernel from that tap's K cells (n_r = K multiply-adds per weight):
    in many blocks of output channels and in both memory formats it gives the reference's output and gradients."""
    import kwlab.methods.mixing.columns as columns

    monkeypatch.setattr(columns, "CHUNK_BYTES", 64)
    geometry = CASES["3x3"]
    layer = make("odconv3", geometry, bias=True)
    layer.memory = memory
    x = torch.randn(geometry.input, generator=generator, dtype=torch.float64)
    expected, expected_grads = run(layer, x, "reference")
    for data in (x, x.to(memory_format=torch.channels_last)):
        out, grads = run(layer, data, "batched")
        torch.testing.assert_close(out, expected)
        for name, grad in expected_grads.items():
            torch.testing.assert_close(grads[name], grad, msg=name)
