"""The report's parts (analysis.sections): every file a report writes is declared by the part that writes it, an
earlier report's files that a new one does not write are removed, and a new figure is one new part. A plugin method
gets the method-specific parts from its own declaration (`Method.attention_axes`, `Method.compared`), and a method
section set in every variant is no 'fixed' factor. Accuracies and attentions are invented (provenance: this file)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis.report
from analysis.analyse import Analysis
from analysis.figures.params_accuracy import params_accuracy
from analysis.section import Part, Section
from analysis.sections import PARTS
from analysis.style import save_figure
from kwlab.cli import main as kwlab_main
from kwlab.methods import METHODS
from kwlab.methods.protocol import AttentionAxes, ComparedSetting, Method, Price, register_method
from kwlab.store import Store
from test_analysis_catching_up import CURVES
from test_analysis_schedules import Variant, schedule_store, write_store

PLUGIN = "gated_test"  # a plugin method registered for these tests only
AXES = AttentionAxes(rows="layer", columns="branch b", columns_plural="branches",
                     sentence="per gate group (rows: its layers; columns: the branches a layer gates)")
GATES = {"soft": 1.0, "hard": 0.2, "sparse": -0.4}  # gate -> accuracy effect; soft is the declared reference
LAYERS = ["stage0.conv1", "stage0.conv2", "stage1.conv1", "head"]


@pytest.fixture(scope="module")
def plugin() -> Iterator[str]:
    """A method no part of the analysis knows by name: it declares its heatmap axes and a compared setting."""

    class Gated(Method):
        attention_axes = AXES
        compared = ComparedSetting("gate", "soft", ("bias",))

        def convert(self, model: object, settings: object) -> object:
            return model

        def price(self, model: object, settings: object, positions: object) -> Price:
            return Price(0, 0)

    register_method(PLUGIN)(Gated)
    yield PLUGIN
    del METHODS[PLUGIN]


@pytest.fixture(scope="module")
def gated(plugin: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The static model and the plugin at three gates, every plugin variant also setting its whole section; each
    plugin trial has attention.npz of one group 'gates' (rows: layers, columns: 3 branches); reported by the CLI."""
    rng = np.random.default_rng(0)
    variants = [Variant("static", "static", {plugin: None}, 10_000,
                        {s: [60.0, 70.0 + s] for s in range(3)}, is_baseline=True)]
    variants += [Variant(f"gate={gate}", plugin, {plugin: {"branches": 3}, f"{plugin}.gate": gate}, 12_000,
                         {s: [60.0, 70.0 + s + effect + rng.normal(scale=0.3)] for s in range(3)})
                 for gate, effect in GATES.items()]
    spec = {"name": "gated", "parameters": {f"{plugin}.gate": {"values": list(GATES)}},
            "cases": [{"name": "static", "set": {plugin: None}}], "baseline": "static", "seeds": [0, 1, 2]}
    store = write_store(tmp_path_factory.mktemp("stores"), "gated", variants, spec=spec)
    for v in variants[1:]:
        for seed in range(3):
            Store(store).trial(f"{v.variant_id}-{seed}").write_attention({
                "gates/alpha": rng.dirichlet(np.ones(3), size=len(LAYERS)).astype(np.float32),
                "gates/layer": np.array(LAYERS), "gates/mixture": np.zeros(len(LAYERS), dtype=int)})
    assert kwlab_main(["report", str(store)]) == 0
    return store


def declared_files(out: Path) -> set[Path]:
    """The files of `out` that some part declares."""
    return {p for part in PARTS for p in part.written(out)}


def test_every_file_a_report_writes_is_declared_by_its_part(gated: Path, tmp_path: Path) -> None:
    schedules = schedule_store(tmp_path)
    assert kwlab_main(["report", str(schedules)]) == 0
    for out in (gated / "report", schedules / "report"):
        written = {p for p in out.iterdir() if p.name != "report.md"}
        assert written and written == declared_files(out), written ^ declared_files(out)


def test_a_report_removes_what_an_earlier_one_wrote_and_it_does_not(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert kwlab_main(["report", str(schedule_store(tmp_path)), "--out", str(out)]) == 0
    assert (out / "schedules.png").is_file() and (out / "equal_cost.md").is_file()
    flat = write_store(tmp_path, "flat", [Variant("static", "static", {}, 10_000, CURVES["static"], is_baseline=True),
                                          Variant("flat", "kw", {}, 20_000, CURVES["flat"])])
    assert kwlab_main(["report", str(flat), "--out", str(out)]) == 0
    assert not list(out.glob("schedules.*")) and not list(out.glob("equal_cost.*"))
    assert (out / "learning_curves.png").is_file()


def test_a_new_figure_is_one_new_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = []

    def write(result: Analysis, out: Path) -> list[Section]:
        if drawn:  # the second report has nothing to draw
            return []
        drawn.append(out)
        return [Section("Demo", "A demo figure.", save_figure(params_accuracy(result.points), out / "demo"))]

    monkeypatch.setattr(analysis.report, "PARTS", (*PARTS, Part("demo", write, figures=("demo",))))
    store = schedule_store(tmp_path)
    assert kwlab_main(["report", str(store)]) == 0
    assert "![Demo](demo.png)" in (store / "report" / "report.md").read_text()
    assert kwlab_main(["report", str(store)]) == 0
    assert not list((store / "report").glob("demo.*"))


def test_a_plugin_method_gets_its_heatmaps_and_compared_setting(gated: Path) -> None:
    out = gated / "report"
    report = (out / "report.md").read_text()
    assert f"Mean attention α of variant gate=soft {AXES.sentence}, averaged over 3 seeds" in report
    assert (out / "heatmap_gate_hard.png").is_file()
    assert f"## Compared: {PLUGIN}.gate" in report
    table = pd.read_csv(out / "gate_functions.csv")
    assert table["gate"].tolist() == ["soft", "hard", "sparse"] and table["is_reference"].tolist() == [True, False,
                                                                                                       False]
    for stem in ("gate_functions", "gate_values"):
        assert (out / f"{stem}.png").stat().st_size > 1000
    assert "Fixed wherever set" not in report  # the plugin's whole section, set alike everywhere, is no factor
