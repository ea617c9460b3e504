"""analysis.power against statsmodels' TTestPower and a simulation of the paired t-test, its edge cases (one pair,
zero variance, zero difference), and `kwlab power` on a synthetic pilot store written through kwlab.store."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.power import TTestPower

from analysis.power import (
    MAX_SEEDS,
    detectable_effect_size,
    minimal_detectable_difference,
    paired_power,
    sd_range,
    seeds_needed,
    with_power,
)
from analysis.stats import FEW_PAIRS, NO_SPREAD, summarize
from kwlab.cli import main as kwlab_main
from kwlab.errors import KWLabError
from kwlab.store import TRIALS, Store

SOLVER = TTestPower()  # the one-sample t-test on the paired differences, two-sided


@pytest.mark.parametrize(("effect", "n"), [(e, n) for e in (0.0, 0.3, 1.0, 2.5) for n in (2, 3, 5, 10)]
                         + [(0.3, 40), (1.0, 40)])
def test_power_is_statsmodels(n: int, effect: float) -> None:
    assert paired_power(effect, n) == pytest.approx(SOLVER.power(effect, n, 0.05), abs=1e-9)


def test_power_where_scipys_noncentral_t_gives_nan() -> None:
    # scipy's nct.cdf is nan far in its lower tail, and statsmodels passes that on; the lower tail is ~0 there
    assert np.isnan(SOLVER.power(2.5, 40, 0.05))
    assert paired_power(2.5, 40) == pytest.approx(1.0) and paired_power(2.2, 100) == pytest.approx(1.0)


@pytest.mark.parametrize(("n", "alpha", "power"), [(3, 0.05, 0.8), (4, 0.05, 0.8), (5, 0.05, 0.9), (10, 0.01, 0.8),
                                                   (30, 0.05, 0.8)])
def test_minimal_detectable_difference_is_statsmodels_solve(n: int, alpha: float, power: float) -> None:
    sd = 0.7
    expected = sd * SOLVER.solve_power(effect_size=None, nobs=n, alpha=alpha, power=power)
    assert minimal_detectable_difference(sd, n, alpha, power) == pytest.approx(expected, rel=1e-5)


def test_minimal_detectable_difference_where_statsmodels_solve_misses() -> None:
    # n = 4, alpha 0.01, power 0.95: statsmodels' solve_power returns 3.59, whose power (by statsmodels' own power
    # function) is 0.77; brentq finds the effect whose power is 0.95
    assert SOLVER.power(SOLVER.solve_power(None, 4, 0.01, 0.95), 4, 0.01) < 0.8
    mdd = minimal_detectable_difference(0.5, 4, 0.01, 0.95)
    assert SOLVER.power(mdd / 0.5, 4, 0.01) == pytest.approx(0.95, abs=1e-9)


def test_minimal_detectable_difference_by_hand_for_many_seeds() -> None:
    # large n: the normal approximation (z_0.975 + z_0.8) * sd / sqrt(n) = 2.8016 * sd / sqrt(n)
    assert minimal_detectable_difference(1.0, 2000) == pytest.approx(2.8016 / math.sqrt(2000), rel=2e-3)
    assert detectable_effect_size(3) > detectable_effect_size(10)  # more seeds detect smaller effects


@pytest.mark.parametrize("effect", [0.05, 0.3, 0.8, 1.5, 3.0])
def test_seeds_needed_is_statsmodels_solve_rounded_up(effect: float) -> None:
    expected = math.ceil(SOLVER.solve_power(effect_size=effect, nobs=None, alpha=0.05, power=0.8))
    assert seeds_needed(effect * 0.4, 0.4) == max(2, expected)
    assert seeds_needed(effect * 0.4, 0.4, minimum=3) == max(3, expected)
    n = int(seeds_needed(effect, 1.0))
    assert paired_power(effect, n) >= 0.8 and (n == 2 or paired_power(effect, n - 1) < 0.8)  # the fewest


def test_the_mdd_is_detected_with_the_promised_power_in_a_simulation() -> None:
    # 20,000 pilot-free experiments of 5 paired seeds whose true difference is the MDD at sd 1: the paired t-test
    # rejects in 80% of them (binomial sd of the rate: 0.003)
    rng = np.random.default_rng(0)
    n, sd = 5, 1.0
    mdd = minimal_detectable_difference(sd, n)
    diffs = rng.normal(mdd, sd, size=(20_000, n))  # (experiments, seeds)
    t = diffs.mean(1) / (diffs.std(1, ddof=1) / math.sqrt(n))
    rate = float(np.mean(np.abs(t) > scipy_stats.t.ppf(0.975, n - 1)))
    assert rate == pytest.approx(0.8, abs=0.012)
    null = rng.normal(0.0, sd, size=(20_000, n))  # no difference: rejects at alpha
    t0 = null.mean(1) / (null.std(1, ddof=1) / math.sqrt(n))
    assert float(np.mean(np.abs(t0) > scipy_stats.t.ppf(0.975, n - 1))) == pytest.approx(0.05, abs=0.006)


def test_edge_cases() -> None:
    assert np.isnan(minimal_detectable_difference(1.0, 1))  # one pair: no sd, no test
    assert np.isnan(minimal_detectable_difference(0.0, 5))  # zero variance: no estimate of the noise
    assert np.isnan(minimal_detectable_difference(float("nan"), 5))
    assert np.isnan(paired_power(1.0, 1))
    assert np.isnan(seeds_needed(0.5, 0.0)) and np.isnan(seeds_needed(0.5, float("nan")))
    assert seeds_needed(0.0, 1.0) == math.inf  # nothing to detect
    assert seeds_needed(1e-4, 1.0) == math.inf  # beyond MAX_SEEDS
    assert seeds_needed(-0.5, 0.4) == seeds_needed(0.5, 0.4)  # two-sided: the sign does not matter
    with pytest.raises(KWLabError):
        detectable_effect_size(5, alpha=0.05, power=0.01)
    low, high = sd_range(3)  # chi-square with 2 df: sqrt(2 / 7.3778), sqrt(2 / 0.050636)
    assert (low, high) == pytest.approx((0.5206, 6.2847), rel=1e-3)
    assert MAX_SEEDS == 10_000


def _trials(rows: list[tuple[str, int, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"trial_id": f"{v}{s}", "variant_id": v, "variant": v, "is_baseline": v == "base",
                          "seed": s, "status": "finished", "test_top1": value} for v, s, value in rows])


def test_with_power_adds_mdd_and_seeds_where_the_difference_is_estimable() -> None:
    base = [90.0, 89.5, 90.3, 90.1]
    trials = _trials([*(("base", s, v) for s, v in enumerate(base)),
                      *(("kw", s, v + d) for s, (v, d) in enumerate(zip(base, [0.6, 0.1, 0.5, 0.2]))),
                      *(("flat", s, v + 0.5) for s, v in enumerate(base)),
                      *(("short", s, v + 1.0) for s, v in enumerate(base[:2]))])
    table = with_power(summarize(trials, "test_top1"), effect=0.25, minimum=3).set_index("variant")
    sd = np.std([0.6, 0.1, 0.5, 0.2], ddof=1)
    kw = table.loc["kw"]
    assert kw["mdd"] == pytest.approx(sd * SOLVER.solve_power(None, 4, 0.05, 0.8), rel=1e-5)
    assert kw["seeds_for_diff"] == max(3, math.ceil(SOLVER.solve_power(0.35 / sd, None, 0.05, 0.8)))
    assert kw["seeds_for_effect"] == max(3, math.ceil(SOLVER.solve_power(0.25 / sd, None, 0.05, 0.8)))
    for name, why in (("flat", NO_SPREAD), ("short", FEW_PAIRS)):
        row = table.loc[name]
        assert row["diff_missing"] == why
        assert np.isnan(row["mdd"]) and np.isnan(row["seeds_for_diff"]) and np.isnan(row["seeds_for_effect"])
    assert table.loc["base", ["mdd", "seeds_for_diff"]].isna().all()


# -- `kwlab power` on a pilot store

PILOT = {"static": [0.0, 0.0, 0.0, 0.0], "kw": [0.6, 0.3, 0.5, 0.4], "flat": [0.5, 0.5, 0.5, 0.5]}
BASE = [90.0, 89.5, 90.3, 90.1]


@pytest.fixture(scope="module")
def pilot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """static, kw and flat (the same +0.5 on every seed), four seeds, 360 test images."""
    store = Store(tmp_path_factory.mktemp("pilot") / "pilot")
    (store.path / TRIALS).mkdir(parents=True)
    store.write_spec({"name": "pilot", "baseline": "static", "seeds": [0, 1, 2, 3],
                      "cases": [{"name": "static", "set": {"kw": None}}],
                      "parameters": {"kw.budget": {"values": [1]}}})
    for variant, effects in PILOT.items():
        for seed, effect in enumerate(effects):
            trial = store.trial(f"{variant}-{seed}")
            trial.path.mkdir()
            trial.write_sweep_meta({"trial_id": trial.name, "variant_id": variant, "variant": variant,
                                    "is_baseline": variant == "static", "seed": seed, "parameters": {}})
            trial.write_metrics([{"epoch": 1, "val_top1": 88.0, "val_loss": 0.5}])
            trial.write_summary({"status": "finished", "method": "static" if variant == "static" else "kw",
                                 "test_top1": BASE[seed] + effect, "test_images": 360, "val_images": 288})
    store.write_tables()
    return store.path


def test_power_json_numbers_by_hand(pilot: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kwlab_main(["power", str(pilot), "--json", "--effect", "0.25"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["metric"], report["baseline"], report["unit"]) == ("test_top1", "static", "pp")
    assert report["resolution"] == "one test image = 0.28 pp (360 test images)"
    rows = {row["variant"]: row for row in report["comparisons"]}
    assert set(rows) == {"kw", "flat"}
    d = np.array(PILOT["kw"])
    sd = d.std(ddof=1)
    kw = rows["kw"]
    assert (kw["n_pairs"], kw["diff"], kw["diff_sd"]) == (4, pytest.approx(d.mean()), pytest.approx(sd))
    assert kw["p"] == pytest.approx(scipy_stats.ttest_1samp(d, 0).pvalue) and kw["resolved"] is True
    assert kw["mdd"] == pytest.approx(sd * SOLVER.solve_power(None, 4, 0.05, 0.8), rel=1e-5)
    assert kw["seeds_for_effect"] == max(3, math.ceil(SOLVER.solve_power(0.25 / sd, None, 0.05, 0.8)))
    flat = rows["flat"]
    assert flat["diff"] == pytest.approx(0.5) and flat["p"] is None and flat["mdd"] is None
    assert flat["resolved"] is False and flat["seeds_for_diff"] is None and NO_SPREAD in flat["note"]


def test_power_options_change_the_answer(pilot: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kwlab_main(["power", str(pilot), "--json", "--power", "0.95", "--alpha", "0.01"]) == 0
    kw = {r["variant"]: r for r in json.loads(capsys.readouterr().out)["comparisons"]}["kw"]
    sd = np.std(PILOT["kw"], ddof=1)
    assert SOLVER.power(kw["mdd"] / sd, 4, 0.01) == pytest.approx(0.95, abs=1e-9)  # see the test above
    n = kw["seeds_for_diff"]
    assert paired_power(0.45 / sd, n, 0.01) >= 0.95 > paired_power(0.45 / sd, n - 1, 0.01)  # statsmodels: nan
    assert kwlab_main(["power", str(pilot), "--json", "--baseline", "flat", "--metric", "best_val_top1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["baseline"] == "flat" and report["metric"] == "best_val_top1"
    assert report["resolution"] == "one val image = 0.35 pp (288 val images)"


def test_power_table(pilot: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kwlab_main(["power", str(pilot), "--effect", "0.25"]) == 0
    out = capsys.readouterr().out
    sd = np.std(PILOT["kw"], ddof=1)
    assert "seeds for ±0.25 pp" in out and "MDD now" in out and "resolved" in out
    kw_line = next(line for line in out.splitlines() if "│ kw " in line)
    assert f"{sd * SOLVER.solve_power(None, 4, 0.05, 0.8):.2f}" in kw_line and "+0.45" in kw_line
    assert "one test image = 0.28 pp" in out and "0.52 to 6.28 times" not in out  # 4 pairs, not 3
    assert f"{sd_range(4)[0]:.2f} to {sd_range(4)[1]:.2f} times" in out


def test_power_errors_are_one_line(pilot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["power", str(tmp_path / "nowhere")], ["power", str(pilot), "--power", "1.5"],
                 ["power", str(pilot), "--effect", "0"], ["power", str(pilot), "--baseline", "nope"],
                 ["power", str(pilot), "--metric", "final_test_top1"]):
        assert kwlab_main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("kwlab power: error:"), err
