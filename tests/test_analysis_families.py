"""Family colours (analysis.families): the Fashion-MNIST study's 23 variants (sweeps/fashion/study.yaml's cases) in
eight families read from the variant table, a hue per family with shades and markers within it, and the report's
figures drawn with them. Accuracies are invented (provenance: this file); the families come from the real spec."""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.colors import to_rgb

from analysis.analyse import analyse
from analysis.families import FAMILY_TITLE, families, styles
from analysis.sweep import load_sweep
from kwlab.cli import main as kwlab_main
from sweep_helpers import ROOT
from test_analysis_schedules import Variant, write_store

STUDY = yaml.safe_load((ROOT / "sweeps" / "fashion" / "study.yaml").read_text())
FAMILIES = {
    "static": ["static", "static_width0.75", "static_width1", "static_width1.5", "static_width2.25"],
    "kw: budget": ["budget=1/4", "budget=1/2", "budget=1", "budget=2", "budget=4"],
    "kw: cell_in_ratio": ["cell=1/2"],
    "kw: sharing": ["sharing=none", "sharing=role", "sharing=2", "sharing=network"],
    # KW declares attention compared against caf with init: caf_no_init@4x sets init alone
    "kw: attention": ["softmax@4x", "sigmoid@4x", "relu_l1@4x", "caf_no_init@4x"],
    "condconv": ["condconv_8"], "dyconv": ["dyconv_4"], "odconv": ["odconv_1x", "odconv_4x"],
}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of the study's 23 cases, three seeds of four epochs each, reported through the CLI."""
    rng = np.random.default_rng(0)
    variants = [Variant(case["name"], case["set"].get("method", "kw"), case["set"], 20_000 * (i + 1),
                        {s: list(70 + rng.normal(size=4).cumsum()) for s in (0, 1, 2)},
                        is_baseline=case["name"] == "static") for i, case in enumerate(STUDY["cases"])]
    store = write_store(tmp_path_factory.mktemp("stores"), "fashion_study", variants,
                        spec={**STUDY, "seeds": [0, 1, 2]})
    assert kwlab_main(["report", str(store)]) == 0
    return store


def hue(color: str) -> float:
    """The hue of a colour (0-1)."""
    return colorsys.rgb_to_hls(*to_rgb(color))[0]


def lightness(color: str) -> float:
    """The lightness of a colour (0 black, 1 white)."""
    return colorsys.rgb_to_hls(*to_rgb(color))[1]


def test_the_study_falls_into_families_by_method_and_swept_key(study: Path) -> None:
    sweep = load_sweep(study)
    table = analyse(sweep).variants
    found = families(table, sweep.factors).assign(variant=table["variant"]).groupby("family", sort=False)
    assert {name: list(rows["variant"]) for name, rows in found} == FAMILIES


def test_a_hue_per_family_with_shades_and_markers_within(study: Path) -> None:
    result = analyse(load_sweep(study))
    colors, markers = result.colors, result.markers
    label = dict(zip(result.variants["variant"], result.variants["label"], strict=True))
    others = [label[v] for family in FAMILIES.values() for v in family if v != "static"]
    assert len({(colors[v], markers[v]) for v in others}) == len(others) == 22  # every variant told apart
    assert colors[label["static"]] == "#222222" and label["static"] not in markers  # the baseline: a dark star
    for name, members in FAMILIES.items():
        shown = [label[v] for v in members if v != "static"]
        assert len({markers[v] for v in shown}) == len(shown)  # a marker each within the family
        assert len({colors[v] for v in shown}) == len(shown)
        if name.startswith("kw") or name == "odconv":
            assert np.ptp([hue(colors[v]) for v in shown]) < 0.05  # one hue: shades of it
    budgets = [colors[label[v]] for v in FAMILIES["kw: budget"]]  # light to dark with the budget
    assert all(np.diff([lightness(c) for c in budgets]) < 0)
    statics = [colors[label[v]] for v in FAMILIES["static"][1:]]
    assert all(np.ptp(to_rgb(c)) < 1e-6 for c in statics)  # greys
    means = {name: hue(colors[label[members[0]]]) for name, members in FAMILIES.items() if name != "static"}
    assert min(abs(a - b) for i, a in enumerate(means.values()) for b in list(means.values())[i + 1:]) > 0.02


def test_one_family_keeps_the_plain_palette() -> None:
    table = pd.DataFrame({"variant_id": list("abc"), "variant": ["static", "budget=1", "budget=4"],
                          "label": ["static", "1", "4"], "is_baseline": [True, False, False],
                          "method": ["static", "kw", "kw"], "kw.budget": [None, 1, 4]})
    assert styles(table, ["kw.budget"]) is None


def test_the_report_draws_the_families(study: Path) -> None:
    out = study / "report"
    for stem in ("learning_curves", "params_accuracy", "macs_accuracy"):
        assert (out / f"{stem}.png").stat().st_size > 10_000
    assert f"coloured by {FAMILY_TITLE}" in (out / "report.md").read_text()
