"""Training length as an axis (analysis.schedules): each comparison per schedule and the change of each gap with the
length, by hand on a small synthetic store, through `kwlab report` and `kwlab power`, and end to end through
`kwlab sweep` on the digits data.

`write_store` builds a store by hand through kwlab.store (sweep.json, config.yaml, metrics.jsonl, summary.json, an
optional plan.json); the other tests/test_analysis_*.py files use it too. The synthetic accuracies are invented
(provenance: this file); every expected number is worked out below from them, seed by seed.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

import kwlab.results
from analysis.analyse import analyse
from analysis.figures.schedules import gap_by_schedule
from analysis.schedules import COMPARISONS, group_name, matched
from analysis.stats import holm
from analysis.sweep import load_sweep, variants
from kwlab.cli import main as kwlab_main
from kwlab.store import STUDY_FILES, Store, summarize_epochs
from sweep_helpers import TINY, kwlab_cli, write_spec


@dataclass
class Variant:
    """One variant of a hand-made store: its trials' sweep.json values, price, config and per-seed curves."""

    name: str
    method: str
    parameters: dict[str, Any]  # the swept values sweep.json records
    params: int
    curves: dict[int, list[float]]  # seed -> validation top-1 per epoch (as many epochs as the trial ran)
    test: dict[int, float] = field(default_factory=dict)  # seed -> test top-1 (default: the last epoch's val)
    config: dict[str, Any] = field(default_factory=dict)  # config.yaml
    variant_id: str = ""  # default: the name, file-name safe
    running: tuple[int, ...] = ()  # seeds whose trial is still running (no summary.json)
    pending: tuple[int, ...] = ()  # seeds whose trial has not started (sweep.json only)
    is_baseline: bool = False

    def __post_init__(self) -> None:
        self.variant_id = self.variant_id or "".join(c if c.isalnum() or c in ",_" else "_" for c in self.name)


def write_store(root: Path, name: str, variants: list[Variant], *, spec: dict[str, Any] | None = None,
                plan: list[Variant] | None = None) -> Path:
    """A results store holding `variants` (MACs per image = 100 x parameters), with plan.json listing the trials of
    `plan` when given."""
    results = Store(root / name)
    (results.path / "trials").mkdir(parents=True)
    results.write_spec(spec or {"name": name, "cases": [{"name": v.name, "set": {}} for v in variants],
                                "seeds": sorted({s for v in variants for s in v.curves})})
    results.write_manifest({"command": f"kwlab sweep {name}.yaml", "versions": {"kwlab": "0.1.0"}})
    for v in variants:
        for seed, curve in v.curves.items():
            trial = results.trial(f"{v.variant_id}-{seed}")
            trial.path.mkdir()
            trial.write_sweep_meta({"trial_id": trial.path.name, "variant_id": v.variant_id, "variant": v.name,
                                    "is_baseline": v.is_baseline, "seed": seed, "parameters": v.parameters,
                                    "method": v.method})
            if seed in v.pending:
                continue
            trial.write_config({"method": v.method, "epochs": len(curve), **v.config})
            history = [{"epoch": e, "val_top1": value, "val_loss": 1.0} for e, value in enumerate(curve, start=1)]
            trial.write_metrics(history)
            if seed in v.running:
                continue
            trial.write_summary({"status": "finished", "method": v.method, "params_total": v.params,
                                 "macs_per_image": 100 * v.params, "epochs": len(curve), "seed": seed,
                                 **summarize_epochs(history), "test_top1": v.test.get(seed, curve[-1]),
                                 "test_images": 10_000})
    if plan is not None:
        results.write_plan([{"trial_id": f"{v.variant_id}-{s}", "variant_id": v.variant_id, "variant": v.name,
                             "is_baseline": v.is_baseline, "seed": s} for v in plan for s in v.curves])
    results.write_tables()
    return results.path


SEEDS = (0, 1, 2, 3)
# name -> (method, swept values, parameters, test top-1 per seed); training length in the name and in `epochs`
ACCURACY: dict[str, tuple[str, dict[str, Any], int, tuple[float, ...]]] = {
    "static@2": ("static", {"kw": None, "epochs": 2}, 10_000, (80.0, 81.0, 79.5, 80.5)),
    "static_w2@2": ("static", {"kw": None, "model.kwargs.width": 2.0, "epochs": 2}, 40_000, (84.0, 84.5, 83.0, 84.2)),
    "static@4": ("static", {"kw": None, "epochs": 4}, 10_000, (83.0, 84.2, 82.1, 83.9)),
    "static_w2@4": ("static", {"kw": None, "model.kwargs.width": 2.0, "epochs": 4}, 40_000, (87.0, 87.4, 86.2, 87.5)),
    # 20K parameters: halfway in log between the two static widths
    "epochs=2,budget=1": ("kw", {"epochs": 2, "kw.budget": 1}, 20_000, (81.0, 81.5, 80.7, 81.6)),
    "epochs=4,budget=1": ("kw", {"epochs": 4, "kw.budget": 1}, 20_000, (85.5, 86.9, 84.0, 86.1)),
}
SPEC = {"name": "schedules", "parameters": {"epochs": {"values": [2, 4]}, "kw.budget": {"values": [1]}},
        "cases": [{"name": n, "set": s} for n, (_, s, _, _) in ACCURACY.items() if n.startswith("static")],
        "baseline": "static@2", "seeds": list(SEEDS)}


def schedule_store(root: Path, pending: tuple[str, ...] = ()) -> Path:
    """The store of ACCURACY: two static widths and KW 1x, each at 2 and at 4 epochs, four seeds (not started on any
    seed for the variants named in `pending`)."""
    variants = [Variant(name, method, swept, params, {s: [50.0] * swept["epochs"] for s in SEEDS},
                        dict(zip(SEEDS, accuracy, strict=True)), is_baseline=name == "static@2",
                        pending=SEEDS if name in pending else ())
                for name, (method, swept, params, accuracy) in ACCURACY.items()]
    return write_store(root, "schedules", variants, spec=SPEC)


def values(name: str) -> np.ndarray:
    """A variant's test top-1 per seed."""
    return np.array(ACCURACY[name][3])


def paired(d: np.ndarray) -> dict[str, float]:
    """The paired t interval and two-sided p of differences `d`, computed here from scratch."""
    half = scipy_stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    return {"diff": d.mean(), "low": d.mean() - half, "high": d.mean() + half,
            "p": 2 * scipy_stats.t.sf(abs(d.mean()) / (d.std(ddof=1) / math.sqrt(d.size)), d.size - 1)}


# each seed's gap at each length, by hand: KW minus the baseline's match (same width), and KW minus the static
# family halfway (in log parameters) between width 1 and width 2 of the same length (equal params)
GAPS = {
    ("width", 2): values("epochs=2,budget=1") - values("static@2"),  # 1.0, 0.5, 1.2, 1.1
    ("width", 4): values("epochs=4,budget=1") - values("static@4"),  # 2.5, 2.7, 1.9, 2.2
    ("params", 2): values("epochs=2,budget=1") - (values("static@2") + values("static_w2@2")) / 2,
    ("params", 4): values("epochs=4,budget=1") - (values("static@4") + values("static_w2@4")) / 2,
}


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The schedule store reported through the CLI; returns the store and what `kwlab report` printed."""
    store = schedule_store(tmp_path_factory.mktemp("stores"))
    printed = kwlab_cli("report", str(store))
    assert printed.returncode == 0, printed.stderr
    return store, printed.stdout


def test_variants_are_matched_across_schedules_by_their_config_without_epochs(tmp_path: Path) -> None:
    found = analyse(load_sweep(schedule_store(tmp_path))).schedules
    assert found is not None and found.lengths == (2, 4)
    groups = found.group.to_dict()
    assert groups["epochs_2,budget_1"] == groups["epochs_4,budget_1"] == "budget=1"  # the grid's epochs=N dropped
    assert groups["static_w2_2"] == groups["static_w2_4"] == "static_w2"  # the cases' own '@N' dropped
    assert group_name(["epochs=3"], [3]) == "base"
    assert group_name(["budget=1@1", "budget=1@10"], [1, 10]) == "budget=1"  # the last mention of the length
    assert group_name(["long kw", "short kw"], [40, 10]) == "long kw / short kw"  # nothing to drop: both names
    assert group_name(["kw_10", "kw_4"], [10, 40]) == "kw_10 / kw_4"  # a number that is not its length stays


def test_a_variant_not_started_at_one_length_is_matched_with_its_others(tmp_path: Path) -> None:
    """Before: a trial not started yet had no method in the table, so a sweep that had not reached KW at 4 epochs
    reported 'budget=1' at 2 epochs and, apart, an unmatched variant at 4."""
    sweep = load_sweep(schedule_store(tmp_path, pending=("epochs=4,budget=1",)))
    assert (sweep.trials.query("status == 'pending'")["method"] == "kw").all()  # from sweep.json
    key = matched(variants(sweep), sweep.factors)
    assert key["epochs_2,budget_1"] == key["epochs_4,budget_1"]
    found = analyse(sweep).schedules
    assert found is not None
    assert found.group["epochs_2,budget_1"] == found.group["epochs_4,budget_1"] == "budget=1"
    at_4 = found.rows.query("group == 'budget=1' and comparison == 'width' and epochs == 4")
    assert len(at_4) == 1 and at_4["diff"].isna().all()  # matched, with no difference yet


def test_gap_per_schedule_and_its_change_by_hand(tmp_path: Path) -> None:
    result = analyse(load_sweep(schedule_store(tmp_path)))
    found = result.schedules
    rows = found.rows.set_index(["group", "comparison", "epochs"])
    for (comparison, length), gap in GAPS.items():
        row, numbers = rows.loc[("budget=1", comparison, length)], paired(gap)
        assert row["n_pairs"] == 4 and row["diff"] == pytest.approx(numbers["diff"])
        assert (row["diff_low"], row["diff_high"]) == pytest.approx((numbers["low"], numbers["high"]))
    assert rows.loc[("budget=1", "width", 2), "versus"] == "static@2"
    assert rows.loc[("budget=1", "width", 4), "versus"] == "static@4"  # the baseline's match at 4 epochs
    changes = found.changes.set_index(["group", "comparison"])
    for comparison in ("width", "params", "macs"):
        cost = "params" if comparison == "macs" else comparison  # MACs are 100 x parameters: the same weights
        change = paired(GAPS[(cost, 4)] - GAPS[(cost, 2)])  # seed by seed: 1.5, 2.2, 0.7, 1.1 at same width
        row = changes.loc[("budget=1", comparison)]
        assert row["diff"] == pytest.approx(change["diff"]) and row["p"] == pytest.approx(change["p"])
        assert (row["diff_low"], row["diff_high"]) == pytest.approx((change["low"], change["high"]))
        assert row["resolved"] == (change["low"] > 0) and row["shortest"] == 2 and row["longest"] == 4
        assert row["mdd"] > 0  # the power columns, as for any paired difference
    assert changes.loc[("budget=1", "width"), "diff"] == pytest.approx(np.mean([1.5, 2.2, 0.7, 1.1]))
    # Holm across the two variants compared at the same width: budget=1 and the width-2 static
    p = [paired(GAPS[("width", 4)] - GAPS[("width", 2)])["p"],
         paired((values("static_w2@4") - values("static@4")) - (values("static_w2@2") - values("static@2")))["p"]]
    assert changes.loc[[("budget=1", "width"), ("static_w2", "width")], "p_holm"].tolist() == \
        pytest.approx(holm(p).tolist())
    # the static family is interpolated within each schedule: the main table's equal-cost column too
    equal = result.equal_cost["params"].set_index("variant")
    assert equal.loc["epochs=4,budget=1", "diff"] == pytest.approx(GAPS[("params", 4)].mean())
    assert equal.loc["epochs=2,budget=1", "diff"] == pytest.approx(GAPS[("params", 2)].mean())


def test_report_tables_draws_and_prints_the_schedules(reported: tuple[Path, str]) -> None:
    store, printed = reported
    out = store / "report"
    same_width = paired(GAPS[("width", 4)] - GAPS[("width", 2)])
    line = next(line for line in printed.splitlines() if line.strip().startswith("budget=1 at same width:"))
    assert " at 2 epochs; " in line and " at 4 epochs; change " in line
    assert f"change +{same_width['diff']:.2f} [+{same_width['low']:.2f}, +{same_width['high']:.2f}]" in line
    assert line.endswith("(resolved)") == (same_width["low"] > 0)
    assert any(line.strip().startswith("budget=1 at equal params:") for line in printed.splitlines())
    table = (out / "schedules.md").read_text()
    header = table.splitlines()[0]
    assert "Δ at 2 epochs (pp) [95% CI]" in header and "change 2→4 epochs (pp) [95% CI]" in header
    row = next(r for r in table.splitlines() if r.startswith("| budget=1 | same width |"))
    assert f"+{same_width['diff']:.2f} [+{same_width['low']:.2f}, +{same_width['high']:.2f}]" in row
    csv = pd.read_csv(out / "schedules.csv")
    assert set(csv["kind"]) == {"at", "change"} and set(csv["comparison"]) == {"width", "params", "macs"}
    for suffix in (".png", ".pdf"):
        assert (out / f"schedules{suffix}").stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "## Training length" in report and "![Training length](schedules.png)" in report
    assert "static family of its own length" in report  # the Method section says equal cost stays in a schedule


def test_the_figure_draws_a_panel_per_comparison_on_a_log_axis(tmp_path: Path) -> None:
    found = analyse(load_sweep(schedule_store(tmp_path))).schedules
    fig = gap_by_schedule(found.rows, titles=COMPARISONS)
    axes = [ax for ax in fig.axes if ax.get_title(loc="left")]
    assert [ax.get_title(loc="left") for ax in axes] == ["same width", "equal params", "equal MACs"]
    assert all(ax.get_xscale() == "log" for ax in axes)
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["2", "4"]
    assert len(fig.legends[0].get_texts()) == 2  # budget=1 and the width-2 static, one line each
    unpaired = found.rows.assign(diff=np.nan, diff_low=np.nan, diff_high=np.nan)  # a store with no pair yet
    fig = gap_by_schedule(unpaired, titles=COMPARISONS)
    fig.savefig(tmp_path / "unpaired.png")
    assert all(any(t.get_text() == "no paired seeds yet" for t in ax.texts) for ax in fig.axes
               if ax.get_title(loc="left"))


def test_power_covers_each_schedule_and_the_change(reported: tuple[Path, str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    store, _ = reported
    assert kwlab_main(["power", str(store), "--json"]) == 0
    rows = {r["variant"] + " | " + r["versus"]: r for r in json.loads(capsys.readouterr().out)["comparisons"]}
    change = rows["budget=1 | its gap at 2 epochs, same width"]
    assert change["diff"] == pytest.approx(paired(GAPS[("width", 4)] - GAPS[("width", 2)])["diff"])
    assert change["n_pairs"] == 4 and change["mdd"] > 0
    at = rows["budget=1 | static at equal params, 4 epochs"]
    assert at["diff"] == pytest.approx(GAPS[("params", 4)].mean())
    assert rows["budget=1 | static@4"]["diff"] == pytest.approx(GAPS[("width", 4)].mean())
    assert kwlab_main(["power", str(store)]) == 0
    assert "budget=1: change 2→4 epochs, equal MACs" in capsys.readouterr().out


@pytest.mark.usefixtures("shared_ray")
def test_training_length_through_kwlab_sweep_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`epochs` swept at 1 and 2 for KW 1x, the static model at widths 0.5 and 1 at each length (cases), three seeds:
    18 trials of 200 digits images through Ray (`kwlab sweep` in its own process), then `kwlab report` (the CLI's
    entry point in this process, which has analysis imported already)."""
    cases = [{"name": f"static{width}@{e}", "set": {"kw": None, "model.kwargs.width": w, "epochs": e}}
             for e in (1, 2) for width, w in (("", 0.5), ("_w1", 1.0))]
    spec = write_spec(tmp_path, "lengths", seeds=[0, 1, 2], baseline="static@1", cases=cases,
                      parameters={"epochs": {"values": [1, 2]}, "kw.budget": {"values": [1]}},
                      base={**TINY, "data": {"name": "digits", "train_size": 200}})
    swept = kwlab_cli("sweep", str(spec), "--results", str(tmp_path / "results"))
    assert swept.returncode == 0, swept.stderr
    store = tmp_path / "results" / "lengths"
    trials = kwlab.results.load(store).trials
    assert (trials["status"] == "finished").all() and len(trials) == 18
    capsys.readouterr()
    assert kwlab_main(["report", str(store)]) == 0
    printed = capsys.readouterr().out
    lines = {line.split(":")[0].strip(): line for line in printed.splitlines() if line.startswith("  ")}
    for comparison in ("same width", "equal params", "equal MACs"):
        line = lines[f"budget=1 at {comparison}"]
        assert " at 1 epoch; " in line and " at 2 epochs; change " in line
    out = store / "report"
    changes = pd.read_csv(out / "schedules.csv").query("kind == 'change' and group == 'budget=1'")
    assert set(changes["comparison"]) == {"width", "params", "macs"} and (changes["n_pairs"] == 3).all()
    # the change with its interval: the gap at 2 epochs minus at 1, seed by seed, from the trials themselves
    test = trials.set_index(["variant", "seed"])["test_top1"]
    gaps = [(test["epochs=2,budget=1", s] - test["static@2", s]) - (test["epochs=1,budget=1", s] - test["static@1", s])
            for s in (0, 1, 2)]
    width = changes.set_index("comparison").loc["width"]
    assert width["diff"] == pytest.approx(np.mean(gaps), abs=1e-4)
    low, high = scipy_stats.t.interval(0.95, 2, loc=np.mean(gaps), scale=scipy_stats.sem(gaps)) \
        if np.std(gaps) > 1e-6 else (np.nan, np.nan)
    assert (width["diff_low"], width["diff_high"]) == pytest.approx((low, high), abs=1e-4, nan_ok=True)
    assert "| budget=1 | same width |" in (out / "schedules.md").read_text()
    assert (out / "schedules.png").stat().st_size > 1000 and (out / "schedules.pdf").is_file()
    # a study commits its tables, not its trial folders: the report regenerates from them alone (README, "A study's
    # tables")
    tables = tmp_path / "committed"
    tables.mkdir()
    for name in STUDY_FILES:
        shutil.copy(store / name, tables / name)
    assert kwlab_main(["report", str(tables)]) == 0
    assert capsys.readouterr().out.replace(str(tables), str(store)) == printed
    for name in ("schedules.csv", "summary.csv", "equal_cost.csv"):
        assert (tables / "report" / name).read_text() == (out / name).read_text(), name
    assert "## Attention heatmaps: " in (out / "report.md").read_text()  # the store itself has them
    assert "there are no heatmaps" in (tables / "report" / "report.md").read_text()
    assert kwlab_main(["power", str(store), "--json"]) == 0
    power = json.loads(capsys.readouterr().out)
    assert kwlab_main(["power", str(tables), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {**power, "store": str(tables)}
    assert kwlab_main(["status", str(tables)]) == 0
    assert "18 trials: 18 finished, 0 stopped, 0 failed" in capsys.readouterr().out
