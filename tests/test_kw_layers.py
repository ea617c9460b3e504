"""Tests for kwlab.methods.kw.layers: the batched KW layers against a per-sample loop written from the method text."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import kwlab
from kwlab.methods.kw.attention import ATTENTION_FUNCTIONS
from kwlab.methods.kw.config import KWConfig
from kwlab.methods.kw.layers import KWConv1d, KWConv2d, KWConv3d
from kwlab.methods.kw.planner import mixtures
from kwlab.methods.kw.warehouse import Warehouse
from layer_cases import LayerCase

TORCH_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


@dataclass(frozen=True)
class Case(LayerCase):
    """A layer geometry with how its warehouse and attention are set up."""

    own_fraction: float = 1.0  # own cells = own_fraction x m (< 1: some mixtures start on the zero cell)
    nonlocal_basis_ratio: float = 1.0
    norm: str = "batch-eval"  # batch-eval | batch-train | layer


CASES = {
    "conv1d-stride-pad": Case(1, 4, 6, (3, 2, 1), (3, 4, 11), kernel=3, stride=2, padding=1),
    "conv1d-same-dilated-grouped-basis": Case(
        1, 6, 6, (2, 1, 1), (3, 6, 9), kernel=5, padding="same", dilation=2, groups=3, bias=False,
        nonlocal_basis_ratio=0.5, norm="batch-train",
    ),
    "conv2d-plain": Case(2, 4, 8, (4, 2, 1, 1), (3, 4, 6, 6), kernel=3, padding=1),
    "conv2d-large-spatial": Case(2, 8, 8, (4, 4, 1, 1), (2, 8, 16, 16), kernel=3, padding=1, own_fraction=2.0),
    "conv2d-rect-grouped-layernorm": Case(
        2, 4, 4, (2, 1, 1, 1), (2, 4, 7, 6), kernel=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2),
        groups=2, norm="layer",
    ),
    "conv2d-depthwise-halfbudget-basis": Case(
        2, 6, 6, (3, 1, 1, 1), (3, 6, 7, 7), kernel=3, stride=2, padding=1, groups=6, bias=False,
        own_fraction=0.5, nonlocal_basis_ratio=0.25, norm="batch-train",
    ),
    "conv2d-depthwise-multiplier": Case(2, 3, 6, (3, 1, 1, 1), (2, 3, 5, 5), kernel=3, padding="same", groups=3),
    "conv2d-same-dilated": Case(2, 3, 4, (4, 3, 1, 1), (2, 3, 8, 8), kernel=3, padding="same", dilation=2),
    "conv2d-whole-kernel-cells": Case(2, 4, 4, (2, 2, 3, 3), (2, 4, 6, 6), kernel=3, padding=1, own_fraction=0.5),
    "conv3d-grouped-stride": Case(3, 4, 4, (2, 1, 1, 1, 1), (2, 4, 5, 5, 5), kernel=3, stride=2, padding=1, groups=2),
    "conv3d-depthwise-same": Case(
        3, 3, 3, (3, 1, 1, 1, 1), (2, 3, 3, 4, 4), kernel=(1, 3, 3), padding="same", groups=3, bias=False,
        nonlocal_basis_ratio=0.5,
    ),
    "linear": Case(0, 6, 4, (2, 3), (3, 6)),
    "linear-tokens-layernorm-basis": Case(
        0, 4, 8, (4, 2), (2, 5, 4), bias=False, own_fraction=0.5, nonlocal_basis_ratio=0.5, norm="layer",
    ),
    "linear-4d-input-train": Case(0, 4, 6, (2, 2), (2, 3, 3, 4), norm="batch-train"),
}

# (init, tau): the blend toward beta at tau 0 / 0.3 / 1, and no blend at all
BLENDS = {
    "tau0": ("one_to_one", 0.0), "tau0.3": ("one_to_one", 0.3), "tau1": ("one_to_one", 1.0), "noblend": ("none", 0.0),
}
EXTRA_CELLS = 5  # cells of other (imaginary) layers sharing the warehouse, before and after the own slice


def build_layer(case: Case, *, attention: str = "caf", init: str = "one_to_one", n: int | None = None,
                own: tuple[int, int] | None = None):
    """A KW layer for `case` with its own warehouse (returned too), deterministic default init."""
    m = mixtures(case.weight_shape(), case.cell)
    if own is None:
        own = (2, max(int(m * case.own_fraction), 1))
    n = n if n is not None else own[0] + own[1] + EXTRA_CELLS
    warehouse = Warehouse(n, case.cell)
    kw = KWConfig(attention=attention, init=init, nonlocal_basis_ratio=case.nonlocal_basis_ratio,
                  attention_norm="layer" if case.norm == "layer" else "batch")
    layer = case.make(warehouse, kw, own)
    layer.train(case.norm == "batch-train")
    return layer, warehouse


@torch.no_grad()
def randomize(layer: nn.Module, warehouse: Warehouse, generator: torch.Generator) -> None:
    """Give every parameter and norm statistic a random non-trivial value (zero-initialised biases included)."""
    for tensor in [*layer.parameters(), warehouse.cells]:
        tensor.copy_(torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype))
    norm = layer.attention.norm
    if isinstance(norm, nn.BatchNorm1d):
        norm.running_mean.copy_(torch.randn(norm.running_mean.shape, generator=generator))
        norm.running_var.copy_(torch.rand(norm.running_var.shape, generator=generator) + 0.5)


def reference_hidden(attention: nn.Module, pooled: torch.Tensor) -> torch.Tensor:
    """fc1 -> norm -> ReLU of the attention, written out (BatchNorm in training mode uses the batch's statistics)."""
    h = F.linear(pooled, attention.fc1.weight, attention.fc1.bias)  # (B, hidden)
    norm = attention.norm
    if isinstance(norm, nn.LayerNorm):
        mean, var = h.mean(-1, keepdim=True), h.var(-1, unbiased=False, keepdim=True)
    elif norm.training and h.shape[0] > 1:
        mean, var = h.mean(0), h.var(0, unbiased=False)
    else:
        mean, var = norm.running_mean.to(h.dtype), norm.running_var.to(h.dtype)
    return torch.relu((h - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias)


def reference_alpha(attention: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """One sample's attention (m, n) from its hidden vector, per the method: logits (m, n+1), function, blend, drop."""
    m, n = attention.mixtures, attention.cells
    if attention.basis is None:
        z = F.linear(hidden, attention.fc2.weight, attention.fc2.bias).reshape(m, n + 1)
    else:  # own cells directly, other layers' cells through the low-rank basis, then the (n+1) x m bias
        own_cells, start = attention.own_cells, attention.own_start
        direct = (attention.fc2.weight @ hidden).reshape(m, -1)  # (m, own + basis + 1)
        own, basis, zero = direct[:, :own_cells], direct[:, own_cells:-1], direct[:, -1:]
        others = basis @ attention.basis.weight.T  # (m, n - own)
        z = torch.cat([others[:, :start], own, others[:, start:], zero], dim=1) + attention.basis_bias
    alpha = ATTENTION_FUNCTIONS[attention.function](z)
    if attention.blend:
        tau = attention.tau.to(z.dtype)
        alpha = (1 - tau) * alpha + tau * attention.beta.to(z.dtype)
    return alpha[:, :-1]


def reference_kernel(alpha: torch.Tensor, cells: torch.Tensor, weight_shape, cell, tiles) -> torch.Tensor:
    """Kernel of one sample: mixture i = sum_j alpha_ij E_j, placed at tile i (plain loop over mixtures)."""
    kernel = cells.new_zeros(weight_shape)
    cell_view = kernel[tiles[0]].shape
    for i, tile in enumerate(tiles):
        kernel[tile] = (alpha[i] @ cells).reshape(cell_view)
    return kernel


def reference_forward(layer: nn.Module, case: Case, x: torch.Tensor, tiles) -> torch.Tensor:
    """Per-sample loop: pool, attention, kernel, then F.convNd / F.linear on that sample alone."""
    pooled = x.reshape(x.shape[0], -1, x.shape[-1]).mean(1) if case.dims == 0 else x.flatten(2).mean(-1)
    hidden = reference_hidden(layer.attention, pooled)
    outputs = []
    for b in range(x.shape[0]):
        alpha = reference_alpha(layer.attention, hidden[b])
        kernel = reference_kernel(alpha, layer.warehouse.cells, case.weight_shape(), case.cell, tiles)
        if case.dims == 0:
            outputs.append(F.linear(x[b], kernel, layer.bias))
        else:
            outputs.append(TORCH_CONV[case.dims](x[b : b + 1], kernel, layer.bias, layer.stride, layer.padding,
                                                 layer.dilation, layer.groups)[0])
    return torch.stack(outputs)


def output_and_grads(layer, warehouse, x, upstream, forward):
    """Output of `forward(x)` and the gradients of <output, upstream> w.r.t. x, cells and every layer parameter."""
    x = x.detach().requires_grad_(True)
    params = {"cells": warehouse.cells, **dict(layer.named_parameters())}
    out = forward(x)
    grads = torch.autograd.grad((out * upstream).sum(), [x, *params.values()], allow_unused=True)
    return out.detach(), dict(zip(["input", *params], grads, strict=True))


@pytest.mark.parametrize("blend", BLENDS.values(), ids=BLENDS.keys())
@pytest.mark.parametrize("attention", sorted(ATTENTION_FUNCTIONS))
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_batched_layer_matches_per_sample_reference(case, attention, blend, generator, mixture_tiles):
    init, tau = blend
    layer, warehouse = build_layer(case, attention=attention, init=init)
    layer.double()
    warehouse.double()
    randomize(layer, warehouse, generator)
    kwlab.set_temperature(layer, tau)
    x = torch.randn(case.input, generator=generator, dtype=torch.float64)
    tiles = mixture_tiles(case.weight_shape(), case.cell)

    with torch.no_grad():
        upstream = torch.randn(layer(x).shape, generator=generator, dtype=torch.float64)

    out, grads = output_and_grads(layer, warehouse, x, upstream, layer)
    expected, expected_grads = output_and_grads(layer, warehouse, x, upstream,
                                                lambda inp: reference_forward(layer, case, inp, tiles))

    torch.testing.assert_close(out, expected)
    assert grads.keys() == expected_grads.keys()
    alpha_is_beta = init == "one_to_one" and tau == 1.0  # the attention receives no gradient (or is skipped)
    for name, grad in grads.items():
        reference = expected_grads[name]
        assert reference is not None, f"reference left {name} without a gradient"  # else the check is vacuous
        if grad is None and alpha_is_beta and name.startswith("attention."):
            grad = torch.zeros_like(reference)
        assert grad is not None, f"no gradient for {name}"
        torch.testing.assert_close(grad, reference, msg=lambda m, name=name: f"gradient of {name}: {m}")
    if alpha_is_beta:
        assert all(expected_grads[name].abs().max() == 0 for name in grads if name.startswith("attention."))
    else:
        assert expected_grads["attention.fc1.weight"].abs().max() > 0


DEGENERATE = {
    "conv1d": (CASES["conv1d-stride-pad"], nn.Conv1d),
    "conv2d": (CASES["conv2d-rect-grouped-layernorm"], nn.Conv2d),
    "conv2d-same": (CASES["conv2d-same-dilated"], nn.Conv2d),
    "conv3d": (CASES["conv3d-grouped-stride"], nn.Conv3d),
    "linear": (CASES["linear"], nn.Linear),
}


@pytest.mark.parametrize("case,torch_type", DEGENERATE.values(), ids=DEGENERATE.keys())
def test_degenerate_warehouse_is_the_static_layer(case, torch_type, generator, mixture_tiles):
    """n = m, one own cell per mixture, tau = 1: the KW layer is the static layer whose kernel is made of the cells."""
    m = mixtures(case.weight_shape(), case.cell)
    layer, warehouse = build_layer(case, n=m, own=(0, m))
    layer.eval()
    kwlab.set_temperature(layer, 1.0)
    torch.testing.assert_close(layer.attention.beta, torch.cat([torch.eye(m), torch.zeros(m, 1)], dim=1))
    assert float(layer.attention.tau) == 1.0
    if case.bias:
        nn.init.normal_(layer.bias)

    if torch_type is nn.Linear:
        static = nn.Linear(case.in_channels, case.out_channels, case.bias)
    else:
        static = torch_type(case.in_channels, case.out_channels, case.kernel, case.stride, case.padding,
                            case.dilation, case.groups, case.bias)
    with torch.no_grad():
        cells = warehouse.cells.detach()
        static.weight.copy_(reference_kernel(torch.eye(m), cells, case.weight_shape(), case.cell,
                                             mixture_tiles(case.weight_shape(), case.cell)))
        if case.bias:
            static.bias.copy_(layer.bias)
        x = torch.randn(case.input, generator=generator)
        torch.testing.assert_close(layer(x), static(x), rtol=1e-5, atol=1e-5)


def test_layer_does_not_own_the_warehouse():
    """The warehouse is injected, not registered: a shared warehouse is owned (and saved) once, by the model."""
    layer, warehouse = build_layer(CASES["conv2d-plain"])
    assert layer.warehouse is warehouse
    assert not any(p is warehouse.cells for p in layer.parameters())
    assert not any("warehouse" in key for key in layer.state_dict())


@pytest.mark.parametrize("cls", [KWConv1d, KWConv2d, KWConv3d])
def test_channels_not_divisible_by_groups_is_rejected(cls):
    with pytest.raises(ValueError, match="groups"):
        cls(4, 6, 3, groups=4, warehouse=Warehouse(10, (1, 1, 1, 1)))


@pytest.mark.parametrize("case", [CASES["conv2d-plain"], CASES["linear"]], ids=["conv2d", "linear"])
def test_mixtures_and_attention_sizes(case):
    """m follows from the kernel and cell; the attention predicts (n+1) logits per mixture."""
    layer, warehouse = build_layer(case)
    m = mixtures(case.weight_shape(), case.cell)
    assert (layer.attention.mixtures, layer.attention.cells) == (m, warehouse.num_cells)
    assert layer.attention.fc2.out_features == (warehouse.num_cells + 1) * m
    assert layer.attention.beta.shape == (m, warehouse.num_cells + 1)
