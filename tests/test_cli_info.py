"""Tests for `kwlab info` (kwlab.commands.info through kwlab.cli.main)."""

from __future__ import annotations

import json

import pytest

from kwlab.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_info_json_prices_resnet18_4x(capsys):
    code, out, err = run(capsys, "info", "resnet18", "--set", "kw.budget=4", "--json")
    assert (code, err) == (0, "")
    result = json.loads(out)
    # reference implementation's count for KW 4x ResNet18 (see tests/test_kw_planner.py for provenance)
    assert result["params"] == 45_862_085
    assert result["model"] == "resnet18"
    assert result["params"] == result["params_warehouse"] + result["params_attention"] + result["params_other"]
    assert [w["n"] for w in result["warehouses"]] == [4 * 56, 4 * 47, 4 * 47, 4 * 27]
    for warehouse in result["warehouses"]:
        assert {"name", "cell_shape", "n", "layers", "m"} <= set(warehouse)
        assert len(warehouse["layers"]) == len(warehouse["m"])
    assert result["warehouses"][0]["cell_shape"] == [64, 64, 1, 1]
    assert result["static_layers"] == ["conv1", "fc"]


def test_info_sets_several_fields_and_model_arguments(capsys):
    code, out, _ = run(capsys, "info", "resnet18", "--set", "kw.budget=1/2", "--set", "kw.cell_in_ratio=0.5",
                       "--set", "kw.cell_out_ratio=0.5", "--set", "model.num_classes=1000", "--json")
    assert code == 0
    assert json.loads(out)["params"] == 7_431_044  # reference figure for 1/2x with cell ratios 1/2


def test_info_table(capsys):
    code, out, err = run(capsys, "info", "resnet18", "--set", "kw.budget=1")
    assert (code, err) == (0, "")
    assert "stage0.dense" in out and "11,932,148" in out  # 1x count, the reference's


@pytest.mark.parametrize(
    "setting,needle",
    [
        ("kw.budget=abc", "kw.budget"),
        ("kw.budget=-1", "kw.budget"),
        ("kw.sharing=everything", "kw.sharing"),
        ("kw.attention=nope", "kw.attention"),
        ("kw.cell_in_ratio=0.3", "kw.cell_in_ratio"),
        ("kw.bugdet=2", "kw.bugdet: unknown key"),
        ("budget=2", "budget: unknown key; allowed: model, method, data"),
        ("kw.budget", "KEY=VALUE"),
    ],
)
def test_bad_value_exits_2_with_one_line(capsys, setting, needle):
    code, out, err = run(capsys, "info", "resnet18", "--set", setting, "--json")
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("kwlab info: error:"), err
    assert needle in err and "Traceback" not in err


def test_unknown_model_exits_2_with_one_line(capsys):
    code, _, err = run(capsys, "info", "resnet_nonexistent", "--json")
    assert code == 2
    assert err.count("\n") == 1 and "'resnet_nonexistent'" in err


def test_missing_model_is_a_one_line_error(capsys):
    code, out, err = run(capsys, "info")
    assert code == 2 and out == ""
    assert err == "kwlab info: error: give a MODEL name or --config FILE\n"


def test_info_prices_a_preset_config(capsys):
    code, out, err = run(capsys, "info", "--config", "configs/reference/kw1x_resnet18.yaml", "--json")
    assert (code, err) == (0, "")
    result = json.loads(out)
    assert result["params"] == 11_932_148 and result["model"] == "resnet18" and result["macs"] > 1.8e9
    code, out, _ = run(capsys, "info", "--config", "configs/reference/kw1d2x_mobilenetv2_100.yaml")
    assert code == 0 and "2,654,396" in out
