"""Equal-cost comparisons: every variant against the static family interpolated to its parameters and MACs.

The synthetic store's numbers are invented (provenance: this file); the expected differences are worked out by hand
below, seed by seed, from the interpolation formula of analysis.equal_cost. One end-to-end test runs a static family
through `kwlab sweep` (Ray) and `kwlab report`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as scipy_stats

import kwlab.results
from analysis.equal_cost import interpolation_weights, static_family
from analysis.analyse import analyse
from analysis.sweep import load_sweep
from kwlab import price_model
from kwlab.cli import main as kwlab_main
from kwlab.store import Store
from sweep_helpers import ROOT, TINY, kwlab_cli

SEEDS = (0, 1, 2, 3)
# variant -> (method, params, MACs, test top-1 per seed)
VARIANTS: dict[str, tuple[str, int, int, tuple[float, ...]]] = {
    "static": ("static", 40_000, 4_000_000, (84.0, 85.0, 83.5, 84.2)),  # the baseline, width 1
    "static_w0.5": ("static", 10_000, 1_000_000, (80.0, 81.0, 79.0, 80.5)),
    "static_w2": ("static", 160_000, 16_000_000, (86.0, 86.5, 85.5, 86.1)),
    # halfway (in log) between 10K and 40K parameters, and between 1M and 4M MACs
    "kw_small": ("kw", 20_000, 2_000_000, (83.0, 82.8, 81.5, 83.0)),
    # exactly the width-2 static's parameters; MACs above the family
    "kw_wide": ("kw", 160_000, 32_000_000, (86.4, 86.0, 86.3, 86.9)),
    # parameters above the family; MACs 6M, 0.29 of the way (in log) from 4M to 16M
    "kw_huge": ("kw", 500_000, 6_000_000, (85.0, 85.7, 84.0, 85.1)),
}


def make_store(root: Path, names: tuple[str, ...] = tuple(VARIANTS)) -> Path:
    """A finished results store (one trial per variant and seed) with the prices and test top-1 of VARIANTS."""
    results = Store(root / "family")
    (results.path / "trials").mkdir(parents=True)
    results.write_spec({"name": "family", "cases": [{"name": n, "set": {}} for n in names], "baseline": "static",
                        "seeds": list(SEEDS), "metric": {"name": "val_top1", "goal": "maximize"}})
    results.write_manifest({"command": "kwlab sweep family.yaml", "versions": {"kwlab": "0.1.0"}})
    for name in names:
        method, params, macs, accuracy = VARIANTS[name]
        for seed, value in zip(SEEDS, accuracy, strict=True):
            trial = results.trial(f"{name}-{seed}".replace(".", "_"))
            trial.path.mkdir()
            trial.write_sweep_meta({"trial_id": trial.path.name, "variant_id": name.replace(".", "_"),
                                    "variant": name, "is_baseline": name == "static", "seed": seed,
                                    "parameters": {}})
            trial.write_config({"method": method})
            trial.write_metrics([{"epoch": 1, "val_top1": value, "val_loss": 0.5}])
            trial.write_summary({"status": "finished", "method": method, "params_total": params,
                                 "macs_per_image": macs, "epochs": 1, "seed": seed, "best_val_top1": value,
                                 "final_val_top1": value, "test_top1": value, "test_images": 10_000})
    results.write_tables()
    return results.path


def by_hand(name: str, low: str, high: str, weight: float) -> dict[str, float]:
    """The paired difference of `name` to the static family at `weight` of the way (in log cost) from `low` to
    `high`: the paired t interval computed here from scratch."""
    v, a, b = (np.array(VARIANTS[n][3]) for n in (name, low, high))
    d = v - ((1 - weight) * a + weight * b)
    half = scipy_stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    return {"diff": d.mean(), "low": d.mean() - half, "high": d.mean() + half,
            "p": 2 * scipy_stats.t.sf(abs(d.mean()) / (d.std(ddof=1) / math.sqrt(d.size)), d.size - 1)}


def test_interpolation_weights_are_linear_in_log_cost_and_never_extrapolate() -> None:
    costs = (10.0, 40.0, 160.0)
    assert interpolation_weights(costs, 20.0) == pytest.approx({0: 0.5, 1: 0.5})
    assert interpolation_weights(costs, 80.0) == pytest.approx({1: 0.5, 2: 0.5})
    assert interpolation_weights(costs, 40.0) == {1: 1.0}  # a member's own cost: that member alone
    assert interpolation_weights(costs, 10.0) == {0: 1.0} and interpolation_weights(costs, 160.0) == {2: 1.0}
    w = interpolation_weights(costs, 60.0)
    assert w[2] == pytest.approx(math.log(1.5) / math.log(4)) and w[1] == pytest.approx(1 - w[2])
    assert interpolation_weights(costs, 9.99) is None and interpolation_weights(costs, 160.01) is None
    assert interpolation_weights(costs, float("nan")) is None and interpolation_weights((), 5.0) is None


def test_equal_cost_differences_by_hand(tmp_path: Path) -> None:
    result = analyse(load_sweep(make_store(tmp_path)))
    family = static_family(result.variants, "params")
    assert family.variant_ids == ("static_w0_5", "static", "static_w2") and family.costs == (1e4, 4e4, 1.6e5)
    params = result.equal_cost["params"].set_index("variant")
    macs = result.equal_cost["macs"].set_index("variant")
    assert set(params.index) == {"kw_small", "kw_wide", "kw_huge"}  # the family's members are not compared
    expected = {
        ("params", "kw_small"): by_hand("kw_small", "static_w0.5", "static", 0.5),  # diffs 1.0, -0.2, 0.25, 0.65
        ("params", "kw_wide"): by_hand("kw_wide", "static_w2", "static_w2", 0.0),  # 0.4, -0.5, 0.8, 0.8
        ("macs", "kw_small"): by_hand("kw_small", "static_w0.5", "static", 0.5),
        ("macs", "kw_huge"): by_hand("kw_huge", "static", "static_w2", math.log(1.5) / math.log(4)),
    }
    assert expected[("params", "kw_small")]["diff"] == pytest.approx(np.mean([1.0, -0.2, 0.25, 0.65]))
    for (cost, name), numbers in expected.items():
        row = (params if cost == "params" else macs).loc[name]
        assert row["in_range"] and row["n_pairs"] == 4
        assert row["diff"] == pytest.approx(numbers["diff"])
        assert (row["diff_low"], row["diff_high"]) == pytest.approx((numbers["low"], numbers["high"]))
        assert row["p"] == pytest.approx(numbers["p"])
        assert row["resolved"] == (numbers["low"] > 0 or numbers["high"] < 0)
        assert np.isfinite(row["mdd"]) and row["mdd"] > 0  # the power columns, as for a same-width difference
    # Holm over the variants compared at each cost: two p-values at equal params, two at equal MACs
    p = sorted(params.loc[["kw_small", "kw_wide"], "p"])
    assert sorted(params.loc[["kw_small", "kw_wide"], "p_holm"]) == pytest.approx([min(1, 2 * p[0]),
                                                                                   max(min(1, 2 * p[0]), p[1])])
    for cost, name in (("params", "kw_huge"), ("macs", "kw_wide")):
        row = (params if cost == "params" else macs).loc[name]
        assert not row["in_range"] and np.isnan(row["diff"]) and row["diff_missing"].startswith("out of range")
    assert "500K parameters is above the static family's 10K–160K" in params.loc["kw_huge", "diff_missing"]


def test_report_prints_and_tabulates_equal_cost_differences(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    store = make_store(tmp_path)
    assert kwlab_main(["report", str(store)]) == 0
    printed = capsys.readouterr().out
    small = by_hand("kw_small", "static_w0.5", "static", 0.5)
    line = next(line for line in printed.splitlines() if line.strip().startswith("kw_small:"))
    assert f"+{small['diff']:.2f} [{small['low']:+.2f}, {small['high']:+.2f}]".replace("-", "−") in line
    assert "at equal params (20K)" in line and "at equal MACs (2M)" in line
    huge = next(line for line in printed.splitlines() if line.strip().startswith("kw_huge:"))
    assert "out of range at equal params (500K)" in huge
    report = (store / "report" / "report.md").read_text()
    assert "## Equal cost" in report and report.index("## Equal cost") < report.index("## Ablation table")
    ablation = (store / "report" / "ablation.md").read_text()
    header = ablation.splitlines()[0]
    assert "Δ vs static at equal params (pp) [95% CI]" in header and "Δ vs static at equal MACs (pp)" in header
    rows = {line.split("|")[1].strip(): line for line in ablation.splitlines()[2:] if line.startswith("|")}
    assert "static family" in rows["static (baseline)"] and "static family" in rows["static_w2"]
    assert "—¹" in rows["kw_huge"] or "—²" in rows["kw_huge"]  # out of range: a dash with its footnote
    assert "out of range: the variant's cost lies outside the static family's span" in ablation
    table = pd.read_csv(store / "report" / "equal_cost.csv")
    assert len(table) == 6 and set(table["cost"]) == {"params", "macs"}
    assert (store / "report" / "params_accuracy.png").is_file()


def test_one_static_width_says_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    store = make_store(tmp_path, ("static", "kw_small"))
    assert kwlab_main(["report", str(store)]) == 0
    assert "equal cost" not in capsys.readouterr().out
    report = (store / "report" / "report.md").read_text()
    assert "static model at one cost only" in report and not (store / "report" / "equal_cost.md").exists()


def test_power_covers_the_equal_cost_comparisons(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    store = make_store(tmp_path)
    assert kwlab_main(["power", str(store), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {(r["variant"], r["versus"]): r for r in report["comparisons"]}
    small = rows[("kw_small", "static at equal params")]
    assert small["diff"] == pytest.approx(by_hand("kw_small", "static_w0.5", "static", 0.5)["diff"])
    assert small["mdd"] > 0 and small["n_pairs"] == 4
    assert rows[("kw_huge", "static at equal params")]["diff"] is None  # out of range
    assert ("kw_small", "static") in rows  # the same-width comparison stays
    assert kwlab_main(["power", str(store)]) == 0
    assert "kw_small @ equal params" in capsys.readouterr().out


@pytest.mark.usefixtures("shared_ray")
def test_a_static_family_through_kwlab_sweep_and_report(tmp_path: Path) -> None:
    """Static at widths 0.5 and 1 and KW 1x at width 0.5, three seeds, through Ray; the report prints and tables
    the equal-cost differences and draws the family."""
    spec = tmp_path / "family.yaml"
    spec.write_text(json.dumps({
        "name": "family", "base": TINY, "seeds": [0, 1, 2], "baseline": "static",
        "parameters": {"kw.budget": {"values": [1]}},
        "cases": [{"name": "static", "set": {"kw": None}},
                  {"name": "static_w1", "set": {"kw": None, "model.kwargs.width": 1.0}}]}))
    swept = kwlab_cli("sweep", str(spec), "--results", str(tmp_path / "results"))
    assert swept.returncode == 0, swept.stderr
    store = tmp_path / "results" / "family"
    trials = kwlab.results.load(store).trials
    assert (trials["status"] == "finished").all() and len(trials) == 9
    prices = trials.groupby("variant")["params_total"].first()
    inside = prices["static"] < prices["budget=1"] < prices["static_w1"]
    report = kwlab_cli("report", str(store))
    assert report.returncode == 0, report.stderr
    line = next(line for line in report.stdout.splitlines() if line.strip().startswith("budget=1:"))
    assert "at equal params" in line and "at equal MACs" in line
    assert ("[" in line.split("at equal params")[0]) == inside  # an interval when inside the family's span
    csv = pd.read_csv(store / "report" / "equal_cost.csv")
    assert set(csv["variant"]) == {"budget=1"} and csv["n_pairs"].max() <= 3
    assert (store / "report" / "macs_accuracy.png").is_file()
    assert "## Equal cost" in (store / "report" / "report.md").read_text()


def test_the_quick_start_regime_is_the_one_the_readme_describes(capsys: pytest.CaptureFixture) -> None:
    """sweeps/cell_size.yaml's default profile: KW 1x at width 1.5 costs 1.27x the static parameters (221K against
    174K) and 3.1x its MACs; the static family (widths 1.5-4) spans KW 1x's parameters and MACs and cell 1/2's
    parameters, not cell 1/2's MACs (README, Quick start; the spec's header)."""
    assert kwlab_main(["validate", "sweeps/cell_size.yaml"]) == 0
    assert "6 variants x 3 seeds = 18 trials" in capsys.readouterr().out  # KW cells 1 and 1/2, four static widths
    spec = yaml.safe_load((ROOT / "sweeps" / "cell_size.yaml").read_text())
    widths = {c["name"]: c["set"].get("model.kwargs.width", 1.5) for c in spec["cases"]}
    assert widths == {"static": 1.5, "static_w2": 2.0, "static_w3": 3.0, "static_w4": 4.0}
    assert spec["fixed"] == {"model.kwargs": {"width": 1.5}}
    assert spec["parameters"]["kw.cell_in_ratio"]["values"] == [1, 0.5]
    image = (1, 8, 8)
    kw = price_model("cifar_resnet8", "kw", {"budget": 1}, image, num_classes=10, in_chans=1, width=1.5)
    cells = price_model("cifar_resnet8", "kw", {"budget": 1, "cell_in_ratio": 0.5, "cell_out_ratio": 0.5}, image,
                        num_classes=10, in_chans=1, width=1.5)
    static = {w: price_model("cifar_resnet8", "static", None, image, num_classes=10, in_chans=1, width=w)
              for w in widths.values()}
    assert (kw.params, static[1.5].params) == (220_988, 173_842) and round(kw.params / static[1.5].params, 2) == 1.27
    assert round(kw.macs / static[1.5].macs, 1) == 3.1
    assert static[1.5].params < kw.params < static[4.0].params and static[1.5].macs < kw.macs < static[4.0].macs
    assert static[3.0].params < cells.params < static[4.0].params
    assert cells.macs > static[4.0].macs  # out of range at equal MACs


def test_a_sweep_of_static_widths_alone_has_no_equal_cost_section(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    store = make_store(tmp_path, ("static", "static_w0.5", "static_w2"))
    assert kwlab_main(["report", str(store)]) == 0
    assert "equal cost" not in capsys.readouterr().out
    report = (store / "report" / "report.md").read_text()
    assert "## Equal cost" not in report and not (store / "report" / "equal_cost.md").exists()
    assert "Δ vs static at equal" not in (store / "report" / "ablation.md").read_text()
