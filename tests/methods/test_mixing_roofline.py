"""The roofline (kwlab.methods.mixing.roofline): one layer's algorithms counted by hand, a model's roofline from its
layers, and `kwlab bench` reporting it."""

from __future__ import annotations

import argparse
import json

import pytest

from kwlab import bench
from kwlab.methods import price_model
from kwlab.methods.mixing import Geometry
from kwlab.methods.mixing.roofline import LayerWork, Machine, algorithm_bytes, layer_seconds, model_roofline

# A DY-Conv-like 3x3 layer, C_in 4 -> C_out 6, its cells the K = 2 whole kernels (m = 1): one kernel has
# K_w = 6 x 4 x 9 = 216 weights. P = 4 output positions per sample from 16 input positions (64 input elements); the
# 2 kernels hold 432 weights; its attention costs 10 MACs per sample.
LAYER = LayerWork(Geometry.of(4, 6, 1, (3, 3), (6, 4, 3, 3)), positions=4, input_elements=64, cells=2, kernels=2,
                  weights=432, attention_macs=10)
# batch 2 in float32 on a machine of 6000 MAC/s and 4000 B/s: 3 x 2 x MACs / 6000 = MACs / 1000 seconds to compute,
# bytes / 4000 to move
BATCH, ITEMSIZE, MACHINE = 2, 4, Machine(mac_rate=6000.0, bandwidth=4000.0)


def test_one_layer_by_hand() -> None:
    # elements every algorithm moves, twice (forward, backward): 2 x (B x (x 64 + y 6 x 4 + alpha 1 x 2) + cells 432)
    always = 2 * (2 * (64 + 24 + 2) + 432)
    assert always == 1224
    kernels = 4 * 2 * 216  # the B per-sample kernels written and read, forward and backward
    mixed = 4 * 2 * (2 * 4 * 1 * 36)  # n P g_o c_in' mixed inputs per sample, c_in' = 4 x 9
    combined = 4 * 2 * (2 * 6 * 4)  # n P C_out stacked outputs per sample
    assert algorithm_bytes(LAYER, BATCH, ITEMSIZE) == {
        "batched": 4 * (always + kernels), "grouped": 4 * (always + kernels),  # whole-kernel cells: no layout copy
        "mixed": 4 * (always + mixed), "combined": 4 * (always + combined)}
    # MACs per sample: assembly (K + P) K_w = 6 x 216, mixing 288 x 1 step + n P C_out c_in' = 2 x 4 x 6 x 36,
    # combined n P (K_w + C_out) = 8 x 222; each plus the attention's 10
    macs = {"batched": 1296 + 10, "grouped": 1296 + 10, "mixed": 288 + 1728 + 10, "combined": 1776 + 10}
    expected = {path: max(macs[path] / 1000, algorithm_bytes(LAYER, BATCH, ITEMSIZE)[path] / 4000) for path in macs}
    assert expected == pytest.approx({"batched": 2.952, "grouped": 2.952, "mixed": 3.528, "combined": 1.786})
    assert layer_seconds(LAYER, BATCH, ITEMSIZE, MACHINE) == pytest.approx(expected)


def test_a_model_of_that_layer_and_static_ones() -> None:
    # the static model: this layer's 4 x 216 = 864 MACs and 136 in layers the method leaves static, per sample:
    # 1 s at the rate; the roofline takes the layer's cheapest algorithm (combined, 1.786 s), the fused limit its
    # fewest MACs (1.306 s) against x, y, alpha and the cells alone (1224 x 4 / 4000 = 1.224 s)
    roofline, fused = model_roofline([LAYER], 1000, BATCH, ITEMSIZE, MACHINE)
    assert roofline == pytest.approx(0.136 + 1.786)
    assert fused == pytest.approx(0.136 + 1.306)
    assert model_roofline([], 1000, BATCH, ITEMSIZE, MACHINE) == (pytest.approx(1.0), pytest.approx(1.0))


@pytest.mark.parametrize("method,settings", [("kw", {"budget": 1}), ("dyconv", None), ("odconv", {"kernels": 4})])
def test_prices_list_every_dynamic_layer(method: str, settings: dict | None) -> None:
    """The roofline sits at or above the fused limit, and both at or above the static model's 1 on a machine that
    moves bytes slowly; on one that moves them for free it is the MAC floor."""
    price = price_model("cifar_resnet8", method, settings, (3, 16, 16))
    static = price.macs_parts["conv"]
    assert len(price.layers) == (6 if method == "odconv" else 8)
    roofline, fused = model_roofline(price.layers, static, 8, 4, Machine(1e9, 1e8))
    assert roofline * (1 + 1e-9) >= fused > 1
    free = model_roofline(price.layers, static, 8, 4, Machine(1e9, 1e30))
    assert free[0] == pytest.approx(price.floor_macs / static) == pytest.approx(free[1])


def test_bench_json_has_the_roofline(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--model", "cifar_resnet8", "--model-kwarg", "width=0.5", "--in-chans", "1", "--size",
                              "8", "--batch", "2", "--variants", "static,1x,dyconv4", "--memory", "fast",
                              "--repeats", "1", "--warmup", "0", "--device", "cpu", "--json"])
    assert bench.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["mac_rate_gmacs"] > 0 and report["settings"]["bandwidth_gbs"] > 0
    assert report["settings"]["model_kwargs"] == {"in_chans": 1, "width": 0.5}
    rows = {r["variant"]: r for r in report["results"]}
    assert rows["static"]["roofline"] == rows["static"]["fused_limit"] == 1.0
    for name in ("1x", "dyconv4"):
        row = rows[name]
        assert row["roofline"] * (1 + 1e-9) >= row["fused_limit"] >= row["floor"] * (1 - 1e-9) > 1
        assert row["vs_roofline"] == pytest.approx(row["ratio_fwd_bwd"] / row["roofline"])
        assert row["macs"] >= row["floor"]
