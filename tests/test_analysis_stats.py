"""analysis.stats against hand-computed values, scipy, statsmodels' Holm, and a worked Holm example; and the rule
that fewer than three (paired) seeds, or paired differences that do not vary, give no interval and no p."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from analysis.stats import (
    FEW_PAIRS,
    FEW_SEEDS,
    NO_PAIRS,
    NO_SPREAD,
    bootstrap_ci,
    holm,
    paired_difference,
    paired_differences,
    summarize,
    t_interval,
)
from analysis.sweep import format_value
from kwlab.errors import KWLabError


def test_bootstrap_two_values_is_their_range() -> None:
    # Hand-computed: resampling 2 values gives the mean a, (a+b)/2 or b with probabilities 1/4, 1/2, 1/4, so the
    # 2.5% and 97.5% quantiles are a and b.
    assert bootstrap_ci([70.0, 74.0]) == pytest.approx((70.0, 74.0))


def test_bootstrap_three_values_is_their_range() -> None:
    # Hand-computed: P(all three draws are the smallest) = 1/27 = 3.7% > 2.5%, so the 95% interval is [min, max].
    assert bootstrap_ci([0.61, 0.65, 0.70]) == pytest.approx((0.61, 0.70))


def test_bootstrap_matches_numpy_and_scipy_with_the_same_generator() -> None:
    x = np.array([71.2, 72.9, 70.4, 73.8, 72.1, 71.7])
    rng = np.random.default_rng(7)  # the resampling written out: indices (resamples, n), mean per row
    means = x[rng.integers(0, x.size, size=(10_000, x.size))].mean(axis=1)
    by_hand = tuple(np.percentile(means, [2.5, 97.5]))
    ours = bootstrap_ci(x, seed=7)
    assert ours == pytest.approx(by_hand)
    reference = scipy_stats.bootstrap((x,), np.mean, n_resamples=10_000, method="percentile",
                                      rng=np.random.default_rng(7)).confidence_interval
    assert ours == pytest.approx((reference.low, reference.high))
    assert bootstrap_ci(x, seed=7) == ours  # fixed seed: reproducible
    assert bootstrap_ci(x, confidence=0.5, seed=7)[0] > ours[0]


def test_bootstrap_below_two_values_gives_no_interval() -> None:
    for values in ([], [72.0], [72.0, np.nan]):
        low, high = bootstrap_ci(values)
        assert np.isnan(low) and np.isnan(high)


def test_holm_worked_example() -> None:
    # p = (0.01, 0.04, 0.03, 0.005), m = 4. Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06,
    # 0.04*1 = 0.04 -> max(0.06, 0.04) = 0.06 (monotone). Back in input order: 0.03, 0.06, 0.06, 0.02.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    adjusted = holm([0.01, np.nan, 0.02])  # NaN passes through and does not count: m = 2
    assert adjusted[0] == pytest.approx(0.02) and np.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)
    assert holm([]).size == 0


def test_paired_differences_align_on_seed() -> None:
    variant = pd.Series({0: 91.0, 1: 90.0, 3: 92.0})
    baseline = pd.Series({1: 89.0, 0: 90.5, 2: 88.0})
    diffs = paired_differences(variant, baseline)
    assert diffs.to_dict() == {0: 0.5, 1: 1.0}


def test_t_interval_is_scipys() -> None:
    x = [71.2, 72.9, 70.4, 73.8]
    # by hand: mean 72.075, sd 1.5107..., t_{3,0.975} = 3.182446
    expected = scipy_stats.t.interval(0.95, 3, loc=np.mean(x), scale=scipy_stats.sem(x))
    assert t_interval(x) == pytest.approx(expected)
    assert t_interval(x)[0] == pytest.approx(72.075 - 3.182446 * np.std(x, ddof=1) / 2, rel=1e-6)
    assert all(np.isnan(v) for v in t_interval([72.0]))


def test_two_seeds_with_equal_differences_are_not_significant() -> None:
    # The bug this guards against: 89.2/90.8 against 88.0/89.6 differ by 1.2 on both seeds; ttest_rel still returns
    # p < 1e-10 (its variance of the differences is rounding error) and the bootstrap a zero-width interval.
    # Neither is evidence: two seeds and no spread say nothing about the seed-to-seed noise.
    baseline, variant = np.array([88.0, 89.6]), np.array([89.2, 90.8])
    with pytest.warns(RuntimeWarning, match="catastrophic cancellation"):
        assert scipy_stats.ttest_rel(variant, baseline).pvalue < 1e-10  # what a naive test reports
    assert bootstrap_ci(variant - baseline)[1] - bootstrap_ci(variant - baseline)[0] < 1e-12  # zero width
    result = paired_difference(variant, baseline)
    assert result.n == 2 and result.mean == pytest.approx(1.2)
    assert np.isnan(result.low) and np.isnan(result.high) and np.isnan(result.p) and not result.resolved
    assert result.missing == FEW_PAIRS
    trials = _trials([("b", 0, 88.0, "finished"), ("b", 1, 89.6, "finished"),
                      ("x", 0, 89.2, "finished"), ("x", 1, 90.8, "finished")])
    x = summarize(trials, "best_val_top1").set_index("variant_id").loc["x"]
    assert x["diff"] == pytest.approx(1.2) and x["n_pairs"] == 2
    assert np.isnan(x["diff_low"]) and np.isnan(x["diff_high"]) and np.isnan(x["p"]) and np.isnan(x["p_holm"])
    assert not x["resolved"] and FEW_PAIRS in x["note"]


def test_three_seeds_with_equal_differences_are_not_estimable() -> None:
    # +1.2 on every seed, from a store holding fractions: 1.2 + 1.4e-14 on one seed, rounding, not noise
    baseline, variant = np.array([0.880, 0.896, 0.891]) * 100, np.array([0.892, 0.908, 0.903]) * 100
    assert 0 < np.ptp(variant - baseline) < 1e-12
    result = paired_difference(variant, baseline)
    assert (result.n, result.sd, result.missing) == (3, 0.0, NO_SPREAD)
    assert np.isnan(result.p) and np.isnan(result.low) and not result.resolved
    assert paired_difference(variant / 100, baseline / 100).missing == NO_SPREAD  # on the fractions as well


def test_paired_difference_is_the_paired_t_test_and_its_interval() -> None:
    variant = np.array([91.0, 90.2, 92.1, 90.9])
    baseline = np.array([90.1, 90.0, 90.8, 90.5])
    result = paired_difference(variant, baseline)
    d = variant - baseline
    assert (result.n, result.mean, result.sd) == (4, pytest.approx(d.mean()), pytest.approx(d.std(ddof=1)))
    assert (result.low, result.high) == pytest.approx(
        scipy_stats.t.interval(0.95, 3, loc=d.mean(), scale=scipy_stats.sem(d)))
    assert result.p == pytest.approx(scipy_stats.ttest_rel(variant, baseline).pvalue)
    assert result.missing == ""
    assert paired_difference([], []).missing == NO_PAIRS


def test_interval_excludes_zero_exactly_when_p_is_below_five_percent() -> None:
    rng = np.random.default_rng(3)
    agree = 0
    for _ in range(400):
        n = int(rng.integers(3, 8))
        baseline = rng.normal(90, 0.5, n)
        variant = baseline + rng.normal(rng.normal(0, 0.4), rng.uniform(0.1, 0.8), n)
        result = paired_difference(variant, baseline)
        assert result.resolved == (result.p < 0.05)
        agree += result.resolved
    assert 50 < agree < 350  # both outcomes occur: the check is not vacuous


def test_holm_matches_statsmodels() -> None:
    from statsmodels.stats.multitest import multipletests

    p = np.array([0.012, 0.2, 0.004, 0.03, 0.5, 0.049])
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1])


def _trials(rows: list[tuple[str, int, float | None, str]]) -> pd.DataFrame:
    return pd.DataFrame([{"trial_id": f"{v}{s}", "variant_id": v, "variant": f"name-{v}", "is_baseline": v == "b",
                          "seed": s, "status": status, "best_val_top1": value} for v, s, value, status in rows])


def test_summarize_by_hand() -> None:
    trials = _trials([
        ("b", 0, 70.0, "finished"), ("b", 1, 72.0, "finished"), ("b", 2, 71.0, "finished"),
        ("x", 0, 72.0, "finished"), ("x", 1, 73.0, "finished"), ("x", 2, 75.0, "finished"),
        ("y", 0, 70.5, "finished"), ("y", 1, 71.5, "finished"), ("y", 2, 60.0, "failed"),
        ("z", 0, 69.0, "finished"), ("z", 1, None, "running"),
        ("w", 0, 70.0, "finished"), ("w", 1, 73.0, "finished"), ("w", 2, 71.5, "finished"), ("w", 3, 90.0, "stopped"),
    ])
    summary = summarize(trials, "best_val_top1").set_index("variant_id")
    assert list(summary.index) == ["b", "x", "y", "z", "w"]
    b, x, y, z, w = (summary.loc[k] for k in "bxyzw")
    # b: 70, 72, 71: mean 71, sd 1, t interval 71 -+ 4.3027 / sqrt(3)
    assert (b["n_seeds"], b["mean"]) == (3, 71.0)
    assert (b["ci_low"], b["ci_high"]) == pytest.approx((71 - 4.302653 / np.sqrt(3), 71 + 4.302653 / np.sqrt(3)))
    assert np.isnan(b["diff"]) and np.isnan(b["p"]) and b["note"] == ""
    # x - b per seed: 2, 1, 4 -> mean 7/3, sd 1.5275; paired t-test as scipy; its t interval
    assert x["diff"] == pytest.approx(7 / 3) and x["diff_sd"] == pytest.approx(np.std([2, 1, 4], ddof=1))
    assert (x["diff_low"], x["diff_high"]) == pytest.approx(
        scipy_stats.t.interval(0.95, 2, loc=7 / 3, scale=scipy_stats.sem([2, 1, 4])))
    assert x["p"] == pytest.approx(scipy_stats.ttest_rel([72, 73, 75], [70, 72, 71]).pvalue)
    assert x["resolved"] == (x["p"] < 0.05)
    # y: the failed seed is left out; two pairs (0.5, -0.5): the difference, but no interval and no p
    assert (y["n_seeds"], y["n_pairs"], y["mean"], y["diff"]) == (2, 2, 71.0, 0.0)
    assert np.isnan(y["p"]) and np.isnan(y["diff_low"]) and np.isnan(y["ci_low"])
    assert y["note"] == f"{FEW_SEEDS}; {FEW_PAIRS}; left out: seed 2 failed"
    # z: one seed: numbers without intervals, and the note says so
    assert (z["n_seeds"], z["mean"], z["diff"], z["n_pairs"]) == (1, 69.0, -1.0, 1)
    assert np.isnan(z["ci_low"]) and np.isnan(z["diff_low"]) and np.isnan(z["p"])
    assert z["mean_missing"] == FEW_SEEDS and z["diff_missing"] == FEW_PAIRS
    # w: the stopped seed 3 is left out, seeds 0-2 pair with b: 0, 1, 0.5
    assert (w["n_seeds"], w["n_pairs"], w["diff"]) == (3, 3, pytest.approx(0.5))
    assert w["p"] == pytest.approx(scipy_stats.ttest_rel([70, 73, 71.5], [70, 72, 71]).pvalue)
    assert w["note"] == "left out: seed 3 stopped early"
    # Holm over the two tested variants
    assert [x["p_holm"], w["p_holm"]] == pytest.approx(list(holm([x["p"], w["p"]])))


def test_summarize_bootstrap_interval_of_the_mean_on_request() -> None:
    trials = _trials([("b", 0, 70.0, "finished"), ("b", 1, 72.0, "finished"), ("b", 2, 71.0, "finished")])
    row = summarize(trials, "best_val_top1", interval="bootstrap", resamples=1000).iloc[0]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((70.0, 72.0))  # three seeds: their range


def test_summarize_degenerate_stores_do_not_crash() -> None:
    assert summarize(pd.DataFrame()).empty
    pending = _trials([("b", 0, None, "pending"), ("x", 0, None, "running")]).drop(columns="best_val_top1")
    summary = summarize(pending, "best_val_top1")
    assert list(summary["n_seeds"]) == [0, 0] and list(summary["note"]) == ["no finished trial"] * 2
    single = summarize(_trials([("b", 0, 70.0, "finished"), ("x", 0, 71.0, "finished")]), "best_val_top1")
    assert single["mean"].tolist() == [70.0, 71.0] and single["ci_low"].isna().all()
    mixed = summarize(_trials([("b", 0, 70.0, "finished"), ("b", 1, None, "finished")]), "best_val_top1")
    assert mixed["n_seeds"].item() == 1 and "left out: seed 1 has no best_val_top1" in mixed["note"].item()
    no_baseline = _trials([("x", 0, 70.0, "finished"), ("x", 1, 71.0, "finished")]).assign(is_baseline=False)
    assert summarize(no_baseline, "best_val_top1")["note"].item() == f"{FEW_SEEDS}; no baseline"


def test_summarize_with_another_baseline() -> None:
    trials = _trials([("b", 0, 70.0, "finished"), ("b", 1, 72.0, "finished"),
                      ("x", 0, 72.0, "finished"), ("x", 1, 73.0, "finished")])
    summary = summarize(trials, "best_val_top1", baseline="name-x")
    assert summary["variant_id"].tolist() == ["x", "b"] and summary["diff"].iloc[1] == pytest.approx(-1.5)
    with pytest.raises(KWLabError, match="not a variant"):
        summarize(trials, "best_val_top1", baseline="nope")


@pytest.mark.parametrize(("value", "shown"), [(0.25, "1/4"), (0.5, "1/2"), (1.0, "1"), (4, "4"), (0.3, "0.3"),
                                               (None, "—"), (float("nan"), "—"), ("caf", "caf"), (True, "true")])
def test_format_value(value: object, shown: str) -> None:
    assert format_value(value) == shown
