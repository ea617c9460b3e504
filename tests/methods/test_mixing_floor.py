"""The floor (kwlab.methods.mixing.floor): the fewest multiply-adds of any exact algorithm of the mixing engine, counted
by hand on a small layer, and as the methods' prices and `kwlab bench` report it."""

from __future__ import annotations

import pytest

from kwlab.methods import price_model
from kwlab.methods.mixing import Geometry, floor_macs
from kwlab.methods.mixing.floor import assembly_then_conv, mixing_then_conv

# A 3x3 conv, C_in 4 -> C_out 6, cut into 1x1 cells of 3 x 2 channels: g_o = 2 output blocks, g_i = 2 input blocks,
# 9 taps, so R = 18 steps of c_in' = 2 columns; one kernel has K = 6 x 4 x 9 = 216 weights. n = 5 cells.
LAYER = Geometry.of(4, 6, 1, (3, 3), (3, 2, 1, 1))


def test_counts_by_hand_on_a_small_layer() -> None:
    assert (LAYER.blocks_out, LAYER.steps, LAYER.columns, LAYER.kernel_numel) == (2, 18, 2, 216)
    # P = 4 output positions: assembling the kernel costs n K = 5 x 216 = 1080, convolving P K = 4 x 216 = 864
    assert assembly_then_conv(LAYER, 4, 5) == 1080 + 864
    # mixing the input: per cell j and output block, sum the 18 steps' (P x c_in') = 8 inputs: 5 x 2 x 18 x 8 = 1440;
    # then every cell (3 x 2) meets its mixed input at each output block and position: 5 x 2 x 4 x 3 x 2 = 240
    assert mixing_then_conv(LAYER, 4, 5) == 1440 + 240
    assert floor_macs(LAYER, 4, 5) == 1680  # mixing is cheaper on few positions
    # P = 100: assembly 105 x 216 = 22680 against mixing 5 x 2 x 18 x 200 + 5 x 2 x 100 x 6 = 42000
    assert floor_macs(LAYER, 100, 5) == 22680


def test_grouped_layers_and_fixed_kernels() -> None:
    grouped = Geometry.of(4, 6, 2, (3, 3), (3, 1, 1, 1))  # 2 groups: the engine has only assembly then convolution
    assert floor_macs(grouped, 4, 5) == assembly_then_conv(grouped, 4, 5) == (5 + 4) * 6 * 2 * 9
    assert floor_macs(LAYER, 4, 1, kernels=0) == 4 * 216  # no per-sample kernel: the convolution alone


@pytest.mark.parametrize("method,settings", [("kw", {"budget": 1}), ("kw", {"budget": 4}), ("condconv", None),
                                             ("dyconv", None), ("odconv", {"kernels": 1}), ("odconv", {"kernels": 4})])
def test_price_floor_is_at_most_the_priced_macs(method: str, settings: dict | None) -> None:
    """At 8x8 inputs KW's deep layers mix the input for less than their assembly; at 64x64 the floor of the dynamic
    convolutions is their assembly; never above the priced MACs, never below the static model's."""
    small = price_model("cifar_resnet8", method, settings, (3, 8, 8))
    large = price_model("cifar_resnet8", method, settings, (3, 64, 64))
    for price in (small, large):
        assert price.macs_parts["conv"] < price.floor_macs <= price.macs
    if method == "kw":
        assert small.floor_macs < small.macs
    static = price_model("cifar_resnet8", "static", None, (3, 8, 8))
    assert static.floor is None and static.floor_macs == static.macs
