"""Analytic MACs per image: static conv/linear MACs + attention MACs + assembly MACs (n x K per KW layer), equal to a
FLOP counter run on the straightforward (reference) computation, whatever fast path a layer would take."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import kwlab
from kwlab.cli import main
from kwlab.methods.kw.layers import KWLayer

CASES = [
    ("cifar_resnet20", (3, 32, 32), {}),
    ("cifar_resnet8", (1, 8, 8), {"budget": 4}),
    ("cifar_resnet8", (1, 8, 8), {"budget": 0.25, "cell_in_ratio": 0.5, "cell_out_ratio": 0.5}),
    ("resnet18", (3, 64, 64), {"budget": 0.5, "cell_in_ratio": 0.5, "cell_out_ratio": 0.5,
                               "nonlocal_basis_ratio": 0.0625}),
    ("mobilenetv2_100", (3, 64, 64), {"budget": 4, "sharing": "role"}),
    ("convnext_atto", (3, 64, 64), {}),
]


def counted_macs(model: torch.nn.Module, shape: tuple[int, ...]) -> float:
    """MACs per image a FLOP counter sees on a batch of two (FLOPs / 2 / 2)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.zeros(2, *shape))
    return counter.get_total_flops() / 4


@pytest.mark.parametrize(("name", "shape", "kw"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_kw_macs_equal_a_flop_counter_on_the_reference_path(name: str, shape: tuple, kw: dict) -> None:
    model = kwlab.create_model(name, kw=kw, in_chans=shape[0])
    for layer in model.modules():
        if isinstance(layer, KWLayer):
            layer.path = "reference"
    price = kwlab.price_model(name, "kw", kw, shape, in_chans=shape[0])
    assert price.macs == pytest.approx(counted_macs(model, shape), rel=0.01)
    assert price.macs == sum(price.macs_parts.values()) and price.params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("name", "shape"), [("cifar_resnet20", (3, 32, 32)), ("resnet18", (3, 64, 64))])
def test_static_macs_equal_a_flop_counter(name: str, shape: tuple) -> None:
    model = kwlab.create_model(name, in_chans=shape[0])
    assert kwlab.price_model(name, "static", None, shape, in_chans=shape[0]).macs == counted_macs(model, shape)


def test_kw_1x_costs_its_convolutions_plus_attention_and_assembly() -> None:
    """The static model's convolutions are a part of KW 1x's MACs, never more than the whole (before: a FLOP counter
    over the fast paths priced KW 1x cifar_resnet20 at 20.0M MACs, under the static model's 40.8M)."""
    static = kwlab.price_model("cifar_resnet20", "static", None, (3, 32, 32))
    kw = kwlab.price_model("cifar_resnet20", "kw", {}, (3, 32, 32))
    assert static.macs == kw.macs_parts["conv"] == 40_813_184
    assert kw.macs == 55_037_152 > static.macs


@pytest.mark.parametrize(("sets", "method"), [(["kw=null"], "static"), ([], "static"), (["kw.budget=1"], "kw"),
                                               (["method=odconv", "odconv.kernels=4"], "odconv")])
def test_kwlab_info_prints_macs_per_image_for_any_method(capsys: pytest.CaptureFixture, sets: list[str],
                                                        method: str) -> None:
    argv = ["info", "cifar_resnet20", "--size", "32", "--in-chans", "3", "--json"]
    assert main([*argv, *(a for s in sets for a in ("--set", s))]) == 0
    result = json.loads(capsys.readouterr().out)
    settings = {"kw": {}, "odconv": {"kernels": 4}}.get(method)
    price = kwlab.price_model("cifar_resnet20", method, settings, (3, 32, 32))
    assert (result["method"], result["macs"], result["params"]) == (method, price.macs, price.params)
    assert result["input"] == [3, 32, 32] and result["macs"] > 0


def test_a_sweep_trial_keeps_the_price_its_sweep_computed(tmp_path, monkeypatch) -> None:
    """A trial written by a sweep (sweep.json holds its variant's price) records that price in summary.json without
    planning its model again; a trial of its own (`kwlab train`) prices itself once, at its end."""
    from kwlab import store
    from kwlab.sweep.expand import price_config
    from kwlab.train import TrainConfig, run
    from kwlab.train import recipe

    cfg = TrainConfig.from_dict({
        "method": "kw", "model": {"name": "cifar_resnet8", "kwargs": {"width": 0.5}},
        "data": {"name": "synthetic", "shape": [1, 8, 8], "length": 48, "num_classes": 4},
        "runtime": {"device": "cpu", "threads": 1}, "epochs": 1, "batch_size": 16, "eval_batch_size": 16,
    })
    threads = torch.get_num_threads()
    swept = store.TrialDir(tmp_path / "swept")
    swept.path.mkdir()
    swept.write_sweep_meta({"trial_id": "t", "price": price_config(cfg)})
    priced = []
    monkeypatch.setattr(recipe, "price", lambda *args: priced.append(args) or pytest.fail("priced again"))
    list(run(cfg, swept.path))
    assert swept.summary()["macs_per_image"] == price_config(cfg)["macs_per_image"] > 0 and not priced
    monkeypatch.undo()
    alone = store.TrialDir(tmp_path / "alone")
    list(run(cfg, alone.path))
    torch.set_num_threads(threads)
    assert {k: alone.summary()[k] for k in ("params_total", "macs_per_image")} == \
        {k: swept.summary()[k] for k in ("params_total", "macs_per_image")}
