"""`kwlab bench` with the dynamic-convolution variants next to static and KW: the variant tokens, the floor from
each method's Price and the paths the layers take."""

from __future__ import annotations

import argparse
import json

import pytest

from kwlab import bench
from kwlab.errors import KWLabError
from kwlab.methods import price_model


def test_parse_variants() -> None:
    variants = bench._parse_variants("static,1x,1/4x,condconv8,dyconv4,odconv1x,odconv4x,dyconv")
    assert [(v.name, v.method, v.settings) for v in variants] == [
        ("static", "static", {}), ("1x", "kw", {"budget": "1"}),
        ("1/4x", "kw", {"budget": "1/4", "cell_in_ratio": 0.5, "cell_out_ratio": 0.5}),
        ("condconv8", "condconv", {"experts": 8}), ("dyconv4", "dyconv", {"kernels": 4}),
        ("odconv1x", "odconv", {"kernels": 1}), ("odconv4x", "odconv", {"kernels": 4}), ("dyconv", "dyconv", {}),
    ]
    for bad in ("odconv0x", "fastconv4", "0x", "x"):
        with pytest.raises(KWLabError, match="--variants"):
            bench._parse_variants(bad)


def test_a_plugin_method_is_benched_by_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """A method registered by a user is a `kwlab bench` variant without any edit of kwlab: by default its name."""
    from kwlab.methods import METHODS
    from kwlab.methods.static import Static

    class Mine(Static):
        """A plugin method (the static model under another name)."""

        name = "mine"

    monkeypatch.setitem(METHODS._entries, "mine", Mine())
    assert [(v.name, v.method, v.settings) for v in bench._parse_variants("mine")] == [("mine", "mine", {})]


def test_bench_json_with_every_method(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    variants = ["1x", "condconv8", "dyconv4", "odconv1x", "odconv4x"]
    args = parser.parse_args([
        "--model", "cifar_resnet8", "--size", "8", "--batch", "2", "--variants", ",".join(["static", *variants]),
        "--memory", "fast,reference", "--choice", "auto,measured", "--repeats", "1", "--warmup", "0",
        "--device", "cpu", "--json",
    ])
    assert bench.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {(r["variant"], r["memory"], r["choice"]): r for r in report["results"]}
    assert set(rows) == {("static", "-", "-")} | {(v, "reference", "-") for v in variants} | {
        (v, "fast", c) for v in variants for c in ("auto", "measured")}
    layers = {"1x": 8, "condconv8": 8, "dyconv4": 8, "odconv1x": 6, "odconv4x": 6}  # ODConv: projections static
    settings = {"condconv8": ("condconv", {"experts": 8}), "dyconv4": ("dyconv", {"kernels": 4}),
                "odconv1x": ("odconv", {"kernels": 1}), "odconv4x": ("odconv", {"kernels": 4})}
    for (variant, memory, _), row in rows.items():
        assert row["fwd_ms"] > 0 and row["fwd_bwd_ms"] > 0 and row["params"] > 0
        if variant == "static":
            continue
        assert sum(row["paths"].values()) == layers[variant]
        assert ("reference" in row["paths"]) == (memory == "reference")
        if variant in settings:
            price = price_model("cifar_resnet8", *settings[variant], (3, 8, 8))
            assert row["floor"] == pytest.approx(price.floor_macs / price.macs_parts["conv"])
            assert row["params"] == price.params
    assert rows[("odconv4x", "fast", "auto")]["floor"] > rows[("odconv1x", "fast", "auto")]["floor"] > 1


def test_bench_refuses_an_unknown_path_choice() -> None:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    with pytest.raises(KWLabError, match="--choice: 'fastest' is not one of auto, measured"):
        bench.main(parser.parse_args(["--model", "cifar_resnet8", "--size", "8", "--choice", "auto,fastest"]))
