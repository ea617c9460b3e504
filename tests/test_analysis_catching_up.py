"""The end-of-training check (analysis.catching_up): a variant still gaining faster than its baseline over the last
quarter of its epochs is flagged in the ablation table and in the text, by hand and through `kwlab report`, both
ways. The curves are invented (provenance: this file); the gains are worked out by hand below."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from analysis.catching_up import FLAG, catching_up, quarter_start
from kwlab.cli import main as kwlab_main
from test_analysis_schedules import Variant, write_store

SEEDS = (0, 1, 2)
# validation top-1 per epoch and seed: epoch 3 -> 4 is the last quarter of 4 epochs
CURVES = {
    "static": {0: [60, 70, 75, 76.0], 1: [61, 71, 76, 76.8], 2: [59, 69, 74, 75.3]},  # gains 1.0, 0.8, 1.3
    "late": {0: [40, 50, 60, 65.0], 1: [41, 52, 61, 67.0], 2: [39, 50, 59, 63.5]},  # gains 5.0, 6.0, 4.5
    "flat": {0: [62, 72, 76, 77.2], 1: [62, 72, 77, 77.5], 2: [60, 70, 75, 76.1]},  # gains 1.2, 0.5, 1.1
    "short": {0: [55.0], 1: [56.0], 2: [54.0]},  # one epoch: no last quarter to compare
}


def epochs_table(names: list[str]) -> pd.DataFrame:
    """The epochs table of CURVES' variants (one trial per variant and seed)."""
    return pd.DataFrame([{"trial_id": f"{name}-{seed}", "variant_id": name, "seed": seed, "epoch": e,
                          "val_top1": value} for name in names for seed, curve in CURVES[name].items()
                         for e, value in enumerate(curve, start=1)])


def gains(name: str) -> np.ndarray:
    """A variant's gain from epoch 3 to 4 per seed."""
    return np.array([CURVES[name][s][3] - CURVES[name][s][2] for s in SEEDS])


def test_the_last_quarter_starts_three_quarters_of_the_way() -> None:
    assert [quarter_start(end) for end in (2, 3, 4, 8, 10, 100)] == [1, 2, 3, 6, 7, 75]


def test_the_flag_fires_on_a_faster_late_gain_and_not_on_a_similar_one() -> None:
    epochs = epochs_table(list(CURVES))
    finished = epochs.drop_duplicates("trial_id")
    found = catching_up(epochs, finished, {"late": "static", "flat": "static", "short": "static",
                                           "static": "static"}, {n: n for n in CURVES}).set_index("variant_id")
    assert set(found.index) == {"late", "flat"}  # the baseline itself and a one-epoch variant are not checked
    for name, flagged in (("late", True), ("flat", False)):
        row, d = found.loc[name], gains(name) - gains("static")
        assert (row["start"], row["end"]) == (3, 4)
        assert row["gain"] == pytest.approx(gains(name).mean())
        assert row["baseline_gain"] == pytest.approx(gains("static").mean())
        low, high = scipy_stats.t.interval(0.95, d.size - 1, loc=d.mean(), scale=scipy_stats.sem(d))
        assert (row["diff_low"], row["diff_high"]) == pytest.approx((low, high))
        assert row["flagged"] == flagged == (low > 0)
    two = catching_up(epochs[epochs["seed"] < 2], finished, {"late": "static"}, {n: n for n in CURVES})
    assert not two["flagged"].any() and two["note"].iloc[0].startswith("fewer than 3 paired seeds")


def _reported(tmp_path: Path, other: str) -> tuple[str, str]:
    """report.md and ablation.md of a store of the static baseline and `other`, written by `kwlab report`; its
    end_of_training.csv has `other`'s numbers."""
    variants = [Variant(name, "static" if name == "static" else "kw", {}, 20_000, CURVES[name],
                        is_baseline=name == "static") for name in ("static", other)]
    store = write_store(tmp_path, other, variants)
    assert kwlab_main(["report", str(store)]) == 0
    row = pd.read_csv(store / "report" / "end_of_training.csv").set_index("variant").loc[other]
    assert row["gain"] == pytest.approx(gains(other).mean()) and row["n_pairs"] == 3
    assert row["flagged"] == (other == "late")
    return (store / "report" / "report.md").read_text(), (store / "report" / "ablation.md").read_text()


def test_report_flags_a_variant_still_catching_up(tmp_path: Path) -> None:
    report, ablation = _reported(tmp_path, "late")
    row = next(line for line in ablation.splitlines() if line.startswith("| late"))
    mark = row.split(" | ")[0].removeprefix("| late")
    assert mark in "¹²³⁴" and mark and f"\n{mark} {FLAG}\n" in ablation  # a footnote on the variant's name
    assert "## End of training" in report
    assert (f"- late: {FLAG}. Its val. top-1 gained {gains('late').mean():+.2f} pp from epoch 3 to 4 (mean over "
            f"seeds), its baseline static {gains('static').mean():+.2f} pp") in report


def test_report_does_not_flag_a_variant_gaining_like_its_baseline(tmp_path: Path) -> None:
    report, ablation = _reported(tmp_path, "flat")
    assert FLAG not in report and FLAG not in ablation
    assert "No variant was still gaining faster than its baseline when training stopped." in report
