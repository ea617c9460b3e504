"""Tests for kwlab.methods.kw.config: KWConfig parsing, normalisation and its one-line errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kwlab.errors import KWLabError
from kwlab.methods.kw.attention import ATTENTION_FUNCTIONS
from kwlab.methods.kw.config import INIT_STRATEGIES, LAYOUTS, KWConfig
from kwlab.methods.kw.sharing import SHARING_RULES


def test_defaults_are_the_papers():
    """1x budget, whole-gcd cells, stage-wise sharing, CAF with the temperature blend, reduction 1/16, 16 hidden."""
    kw = KWConfig()
    assert (kw.budget, kw.cell_in_ratio, kw.cell_out_ratio) == (1.0, 1.0, 1.0)
    assert (kw.sharing, kw.attention, kw.init) == ("stage", "caf", "one_to_one")
    assert (kw.reduction, kw.min_hidden, kw.nonlocal_basis_ratio) == (1 / 16, 16, 1.0)
    assert kw.spatial_partition is True


@pytest.mark.parametrize("value,expected", [("1/4", 0.25), ("1/2", 0.5), (4, 4.0), ("3", 3.0), (0.75, 0.75),
                                            ("1.5", 1.5)])
def test_budget_accepts_numbers_and_fractions(value, expected):
    assert KWConfig(budget=value).budget == expected


@pytest.mark.parametrize("value,expected", [("2", 2), (3, 3), (" 4 ", 4), *((s, s) for s in SHARING_RULES)])
def test_sharing_accepts_ranges_and_group_sizes(value, expected):
    assert KWConfig(sharing=value).sharing == expected


@pytest.mark.parametrize("name", sorted(ATTENTION_FUNCTIONS))
def test_every_registered_attention_is_accepted(name):
    assert KWConfig(attention=name).attention == name


# (field values, text the one-line message must contain: the field, the bad value, the allowed values)
BAD = {
    "unknown-attention": ({"attention": "softmaxx"}, ["kw.attention", "'softmaxx'", "'caf'", "'softmax'"]),
    "unknown-sharing": ({"sharing": "stages"}, ["kw.sharing", "'stages'", "'none'", "'role'", "'stage'",
                                                "'network'", "positive integer"]),
    "zero-sharing": ({"sharing": 0}, ["kw.sharing", "positive integer", "0"]),
    "bool-sharing": ({"sharing": True}, ["kw.sharing", "True"]),
    "negative-budget": ({"budget": -1}, ["kw.budget", "-1", "positive"]),
    "zero-budget": ({"budget": 0}, ["kw.budget", "positive"]),
    "text-budget": ({"budget": "abc"}, ["kw.budget", "'abc'", "1/4"]),
    "nan-budget": ({"budget": float("nan")}, ["kw.budget", "nan"]),
    "bool-budget": ({"budget": True}, ["kw.budget", "True"]),
    "zero-division-budget": ({"budget": "1/0"}, ["kw.budget", "'1/0'"]),
    "ratio-above-one": ({"cell_in_ratio": 2}, ["kw.cell_in_ratio", "(0, 1]", "2"]),
    "reduction-above-one": ({"reduction": 1.5}, ["kw.reduction", "(0, 1]"]),
    "unknown-init": ({"init": "random"}, ["kw.init", "'random'", *map(repr, INIT_STRATEGIES)]),
    "unknown-layout": ({"layout": "ref"}, ["kw.layout", "'ref'", *map(repr, LAYOUTS)]),
    "unknown-norm": ({"attention_norm": "group"}, ["kw.attention_norm", "'group'", "'batch'", "'layer'"]),
    "min-hidden-float": ({"min_hidden": 2.5}, ["kw.min_hidden", "an integer", "2.5"]),
    "min-hidden-zero": ({"min_hidden": 0}, ["kw.min_hidden"]),
    "spatial-partition-string": ({"spatial_partition": "yes"}, ["kw.spatial_partition", "'yes'"]),
    "negative-basis-ratio": ({"nonlocal_basis_ratio": -0.5}, ["kw.nonlocal_basis_ratio"]),
    "warehouse-budget": ({"warehouses": {"stage6.*": {"budget": 0}}}, ["kw.warehouses.stage6.*.budget", "positive"]),
    "warehouse-unknown-key": ({"warehouses": {"stage6.*": {"cells": 4}}}, ["kw.warehouses.stage6.*.cells",
                                                                          "unknown key", "cell_in_ratio"]),
    "warehouse-ratio": ({"warehouses": {"x": {"cell_in_ratio": 2}}}, ["kw.warehouses.x.cell_in_ratio", "(0, 1]"]),
    "warehouses-not-a-mapping": ({"warehouses": ["stage6"]}, ["kw.warehouses", "mapping"]),
    "static-layers-number": ({"static_layers": [3]}, ["kw.static_layers", "patterns", "[3]"]),
    "kw-layers-empty": ({"kw_layers": [""]}, ["kw.kw_layers", "patterns"]),
    "layer-both-ways": ({"static_layers": ["fc"], "kw_layers": ["fc"]}, ["static_layers", "kw_layers", "'fc'"]),
}


@pytest.mark.parametrize("values,needles", BAD.values(), ids=BAD.keys())
def test_bad_values_are_rejected_with_one_clear_line(values, needles):
    with pytest.raises(KWLabError) as raised:
        KWConfig.from_dict(values)
    message = str(raised.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, f"{needle!r} missing from {message!r}"


def test_unknown_field_is_rejected_by_name_with_the_known_fields():
    with pytest.raises(KWLabError) as raised:
        KWConfig.from_dict({"budget": 2, "budjet": 3})
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("kw.budjet: unknown key; allowed: budget, ") and "sharing" in message


def test_kwlab_error_is_a_value_error():
    """Callers that catch ValueError (argparse types, pydantic-style code) also catch kwlab's errors."""
    with pytest.raises(ValueError):
        KWConfig(budget=-2)


def test_from_dict_round_trips_through_to_dict():
    kw = KWConfig(budget="1/4", sharing="2", attention="softmax", cell_in_ratio=0.5, spatial_partition=False)
    again = KWConfig.from_dict(kw.to_dict())
    assert again == kw
    assert again.to_dict() == {**KWConfig().to_dict(), "budget": 0.25, "sharing": 2, "attention": "softmax",
                               "cell_in_ratio": 0.5, "spatial_partition": False}


def test_from_dict_passes_a_config_through():
    kw = KWConfig(budget=2)
    assert KWConfig.from_dict(kw) is kw


def test_config_is_frozen():
    with pytest.raises(ValidationError, match="frozen"):
        KWConfig().budget = 2  # type: ignore[misc]


def test_per_warehouse_settings_and_layer_selections_parse():
    """YAML gives lists (tuples here) and fractions; unset per-warehouse fields keep the model-wide values."""
    kw = KWConfig.from_dict({"warehouses": {"classifier": {"budget": "1/2", "cell_in_ratio": 0.025}},
                             "static_layers": "blocks.1.*.conv_pw", "kw_layers": ["classifier"]})
    assert kw.warehouses["classifier"].overrides() == {"budget": 0.5, "cell_in_ratio": 0.025}
    assert (kw.static_layers, kw.kw_layers) == (("blocks.1.*.conv_pw",), ("classifier",))
    assert KWConfig.from_dict(kw.to_dict()) == kw
