"""analysis.stats against hand-computed values, scipy, and a worked Holm example."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from analysis.stats import bootstrap_ci, holm, paired_differences, paired_test, summarize
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


def test_paired_test_is_scipy_ttest_rel_and_the_t_formula() -> None:
    variant = np.array([91.0, 90.2, 92.1, 90.9])
    baseline = np.array([90.1, 90.0, 90.8, 90.5])
    p = paired_test(variant, baseline)
    assert p == pytest.approx(scipy_stats.ttest_rel(variant, baseline).pvalue)
    d = variant - baseline  # by hand: t = mean(d) / (sd(d) / sqrt(n)), two-sided with n - 1 degrees of freedom
    t = d.mean() / (d.std(ddof=1) / np.sqrt(d.size))
    assert p == pytest.approx(2 * scipy_stats.t.sf(abs(t), d.size - 1))
    assert paired_test(variant, baseline, "wilcoxon") == pytest.approx(
        scipy_stats.wilcoxon(variant, baseline).pvalue)


def test_paired_test_without_evidence_is_nan() -> None:
    assert np.isnan(paired_test([1.0], [0.0]))  # one pair
    assert np.isnan(paired_test([1.0, 2.0, 3.0], [0.0, 1.0, 2.0]))  # identical differences: t = inf
    assert np.isnan(paired_test([1.0, 2.0], [1.0, 2.0]))  # no difference at all: t = 0/0


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


def _trials(rows: list[tuple[str, int, float | None, str]]) -> pd.DataFrame:
    return pd.DataFrame([{"trial_id": f"{v}{s}", "variant_id": v, "variant": f"name-{v}", "is_baseline": v == "b",
                          "seed": s, "status": status, "best_val_top1": value} for v, s, value, status in rows])


def test_summarize_by_hand() -> None:
    trials = _trials([
        ("b", 0, 70.0, "finished"), ("b", 1, 72.0, "finished"), ("b", 2, 71.0, "finished"),
        ("x", 0, 72.0, "finished"), ("x", 1, 73.0, "finished"), ("x", 2, 75.0, "finished"),
        ("y", 0, 70.5, "finished"), ("y", 1, 71.5, "finished"), ("y", 2, 60.0, "failed"),
        ("z", 0, 69.0, "finished"), ("z", 1, None, "running"),
    ])
    summary = summarize(trials, resamples=2_000).set_index("variant_id")
    assert list(summary.index) == ["b", "x", "y", "z"]
    b, x, y, z = (summary.loc[k] for k in "bxyz")
    assert (b["n_seeds"], b["mean"], b["ci_low"], b["ci_high"]) == (3, 71.0, 70.0, 72.0)
    assert np.isnan(b["diff"]) and np.isnan(b["p"]) and b["note"] == ""
    # x - b per seed: 2, 1, 4 -> mean 7/3; three values: interval = their range; paired t-test as scipy
    assert x["diff"] == pytest.approx(7 / 3) and (x["diff_low"], x["diff_high"]) == pytest.approx((1.0, 4.0))
    assert x["p"] == pytest.approx(scipy_stats.ttest_rel([72, 73, 75], [70, 72, 71]).pvalue)
    # y: the failed seed is left out; pairs on seeds 0, 1: differences 0.5, -0.5
    assert (y["n_seeds"], y["n_pairs"], y["mean"], y["diff"]) == (2, 2, 71.0, 0.0)
    assert y["p"] == pytest.approx(scipy_stats.ttest_rel([70.5, 71.5], [70, 72]).pvalue)
    # z: one seed: numbers without intervals, and the note says so
    assert (z["n_seeds"], z["mean"], z["diff"], z["n_pairs"]) == (1, 69.0, -1.0, 1)
    assert np.isnan(z["ci_low"]) and np.isnan(z["diff_low"]) and np.isnan(z["p"])
    assert "1 seed: no interval" in z["note"] and "1 paired seed: no test" in z["note"]
    # Holm over the two tested variants
    assert [x["p_holm"], y["p_holm"]] == pytest.approx(list(holm([x["p"], y["p"]])))


def test_summarize_degenerate_stores_do_not_crash() -> None:
    assert summarize(pd.DataFrame()).empty
    pending = _trials([("b", 0, None, "pending"), ("x", 0, None, "running")]).drop(columns="best_val_top1")
    summary = summarize(pending)
    assert list(summary["n_seeds"]) == [0, 0] and list(summary["note"]) == ["no finished trial"] * 2
    single = summarize(_trials([("b", 0, 70.0, "finished"), ("x", 0, 71.0, "finished")]))
    assert single["mean"].tolist() == [70.0, 71.0] and single["ci_low"].isna().all()
    no_baseline = _trials([("x", 0, 70.0, "finished"), ("x", 1, 71.0, "finished")]).assign(is_baseline=False)
    assert summarize(no_baseline)["note"].item() == "no baseline"


def test_summarize_with_another_baseline() -> None:
    trials = _trials([("b", 0, 70.0, "finished"), ("b", 1, 72.0, "finished"),
                      ("x", 0, 72.0, "finished"), ("x", 1, 73.0, "finished")])
    summary = summarize(trials, baseline="name-x")
    assert summary["variant_id"].tolist() == ["x", "b"] and summary["diff"].iloc[1] == pytest.approx(-1.5)
    with pytest.raises(KWLabError, match="not a variant"):
        summarize(trials, baseline="nope")


@pytest.mark.parametrize(("value", "shown"), [(0.25, "1/4"), (0.5, "1/2"), (1.0, "1"), (4, "4"), (0.3, "0.3"),
                                               (None, "—"), (float("nan"), "—"), ("caf", "caf"), (True, "true")])
def test_format_value(value: object, shown: str) -> None:
    assert format_value(value) == shown
