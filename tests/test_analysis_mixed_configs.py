"""A store reused after the spec changed (`epochs` raised from 2 to 3 on a finished store: everything retrained) holds
two configs per variant name. The report takes each name and the baseline from the latest spec (plan.json), shows
the other config as 'name [variant_id]' and names what differs (dotted keys of the resolved configs) in the status
and in the ablation table's footnote; without plan.json it keeps the older rule (the most finished trials). The
curves are invented (provenance: this file)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from kwlab.cli import main as kwlab_main
from kwlab.store import PLAN
from test_analysis_schedules import Variant, write_store

CHANGE = "another config of {name}: epochs = 2 where the current has 3"


def reused_store(root: Path) -> Path:
    """static and kw trained for 2 epochs (finished, 3 seeds), then retrained for 3 under the same names, where
    static's seed 2 is still running: the old static has more finished trials than the current one."""
    def curves(top: float, epochs: int) -> dict[int, list[float]]:
        return {s: [top - 10 + s * 0.4 + e for e in range(epochs)] for s in range(3)}

    old = [Variant("static", "static", {}, 10_000, curves(80, 2), variant_id="oldstatic", is_baseline=True),
           Variant("kw", "kw", {}, 20_000, curves(81, 2), variant_id="oldkw")]
    new = [Variant("static", "static", {}, 10_000, curves(82, 3), variant_id="newstatic", running=(2,),
                   is_baseline=True),
           Variant("kw", "kw", {}, 20_000, curves(84, 3), variant_id="newkw")]
    return write_store(root, "reused", old + new, plan=new)


@pytest.fixture
def reused(tmp_path: Path) -> Path:
    """The reused store."""
    return reused_store(tmp_path)


def test_the_latest_spec_names_the_variants_and_the_baseline(reused: Path) -> None:
    assert kwlab_main(["report", str(reused)]) == 0
    out = reused / "report"
    summary = pd.read_csv(out / "summary.csv").set_index("variant")
    assert summary.loc["static", "variant_id"] == "newstatic" and summary.loc["static", "is_baseline"]
    assert summary.loc["kw", "variant_id"] == "newkw"
    assert not summary.loc["static [oldstatic]", "is_baseline"] and "kw [oldkw]" in summary.index
    ablation = (out / "ablation.md").read_text()
    assert "| static (baseline) |" in ablation
    for name in ("static", "kw"):
        row = next(line for line in ablation.splitlines() if line.startswith(f"| {name} [old{name}]"))
        mark = row.split(" | ")[0].removeprefix(f"| {name} [old{name}]")
        assert mark and f"\n{mark} {CHANGE.format(name=name)}\n" in ablation  # the footnote names the key
    report = (out / "report.md").read_text()
    assert f"the one the latest spec plans ({PLAN})" in report
    assert f"- `static [oldstatic]`: 3 trials, 3 finished; {CHANGE.format(name='static')}" in report
    assert f"- `kw [oldkw]`: 3 trials, 3 finished; {CHANGE.format(name='kw')}" in report


def test_without_a_plan_the_config_with_the_most_finished_trials_keeps_the_name(reused: Path) -> None:
    (reused / PLAN).unlink()
    assert kwlab_main(["report", str(reused)]) == 0
    summary = pd.read_csv(reused / "report" / "summary.csv").set_index("variant")
    assert summary.loc["static", "variant_id"] == "oldstatic" and summary.loc["static", "is_baseline"]
    assert "static [newstatic]" in summary.index
    report = (reused / "report" / "report.md").read_text()
    assert f"the one with the most finished trials (the store has no {PLAN}" in report
    assert "- `static [newstatic]`: 3 trials, 2 finished; another config of static: epochs = 3 where the current " \
           "has 2" in report
    # static at 2 epochs and kw at 3 are current: two lengths, but no variant at both, so no training-length part
    assert "## Training length" not in report and not (reused / "report" / "schedules.md").exists()
