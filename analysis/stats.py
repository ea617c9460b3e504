"""Statistics over seeds: bootstrap intervals, paired differences to a baseline, the paired test, Holm's correction.

Every comparison is paired: the variants of a sweep share seeds, so a variant's difference to the baseline is
taken seed by seed (on the seeds both have finished) and the test is on those differences.

Choices (also stated in every report):
- Interval: percentile bootstrap of the mean, 10,000 resamples, `numpy.random.Generator(seed)` with seed 0, 95 %.
  It equals `scipy.stats.bootstrap(..., method="percentile")` with the same generator. With three seeds the 2.5 %
  quantile of the resampled means is the smallest value (all three draws hit it with probability 1/27 > 2.5 %),
  so the 95 % interval is exactly the range of the seeds: an honest but rough interval, not a coverage promise.
- Test: the paired t-test (`scipy.stats.ttest_rel`, two-sided). With 3 to 5 seeds a rank test is useless: the
  smallest two-sided Wilcoxon p-value with n = 3 is 0.25. `test="wilcoxon"` is available for larger sweeps.
- Multiplicity: Holm's step-down correction over the variants of one sweep compared with its baseline (controls
  the family-wise error rate without assuming independence; scipy only ships Benjamini-Hochberg).
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from kwlab.errors import KWLabError

RESAMPLES = 10_000
CONFIDENCE = 0.95
SEED = 0
SUMMARY_COLUMNS = ["variant_id", "variant", "is_baseline", "n_seeds", "seeds", "mean", "std", "ci_low", "ci_high",
                   "n_pairs", "diff", "diff_low", "diff_high", "p", "p_holm", "note"]


def bootstrap_ci(
    values: np.ndarray | list[float], *, confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of `values` (NaNs dropped); (nan, nan) below two values."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return float("nan"), float("nan")
    rng = np.random.Generator(np.random.PCG64(seed))  # what np.random.default_rng(seed) builds
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)  # (resamples,)
    tail = (1 - confidence) / 2
    low, high = np.percentile(means, [100 * tail, 100 * (1 - tail)])
    return float(low), float(high)


def paired_differences(variant: pd.Series, baseline: pd.Series) -> pd.Series:
    """variant - baseline on the seeds both have (Series indexed by seed); a seed missing on either side is dropped."""
    joined = pd.concat({"v": variant, "b": baseline}, axis=1, join="inner").dropna()
    return (joined["v"] - joined["b"]).sort_index()


def paired_test(
    variant: np.ndarray | list[float], baseline: np.ndarray | list[float], test: Literal["t", "wilcoxon"] = "t"
) -> float:
    """Two-sided p-value of a paired test on aligned samples; nan below two pairs or if the differences do not vary."""
    a, b = np.asarray(variant, dtype=float), np.asarray(baseline, dtype=float)
    d = a - b
    if d.size < 2 or np.ptp(d) == 0:  # identical differences: t is 0/0 or +-inf, no evidence either way from spread
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if test == "wilcoxon":
            return float(scipy_stats.wilcoxon(a, b).pvalue)
        return float(scipy_stats.ttest_rel(a, b).pvalue)


def holm(pvalues: np.ndarray | list[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (same order as given); NaNs stay NaN and do not count in the family size."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    m = valid.size
    order = valid[np.argsort(p[valid], kind="stable")]  # smallest first
    running = 0.0
    for rank, index in enumerate(order):  # p_(i) * (m - i), made monotone, capped at 1
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def per_seed(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Finished trials' metric as a (seed x variant_id) table; a repeated seed is averaged."""
    finished = trials[(trials["status"] == "finished")] if "status" in trials else trials
    if metric not in finished or finished.empty:
        return pd.DataFrame()
    values = finished[["variant_id", "seed", metric]].dropna()
    return values.pivot_table(index="seed", columns="variant_id", values=metric, aggfunc="mean")


def summarize(
    trials: pd.DataFrame,
    metric: str = "best_val_top1",
    baseline: str | None = None,
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    test: Literal["t", "wilcoxon"] = "t",
) -> pd.DataFrame:
    """One row per variant (baseline first, then sweep order): seeds, mean with interval, paired difference to the
    baseline with interval, p and Holm-corrected p, and a `note` where a number is missing and why.

    Only finished trials count. `baseline` is a variant_id or variant name; by default the variant marked
    is_baseline. Variants without a finished trial keep a row (n_seeds 0) so that a running sweep shows them.
    """
    if trials.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    variants = trials.drop_duplicates("variant_id")[["variant_id", "variant", "is_baseline"]].copy()
    variants["is_baseline"] = variants["is_baseline"].fillna(False).astype(bool)
    base_id = _baseline_id(variants, baseline)
    variants["is_baseline"] = variants["variant_id"] == base_id
    variants = pd.concat([variants[variants["is_baseline"]], variants[~variants["is_baseline"]]])
    table = per_seed(trials, metric)
    base_values = table[base_id].dropna() if base_id in table else pd.Series(dtype=float)
    rows = []
    for variant in variants.itertuples(index=False):
        values = table[variant.variant_id].dropna() if variant.variant_id in table else pd.Series(dtype=float)
        low, high = bootstrap_ci(values.to_numpy(), confidence=confidence, resamples=resamples, seed=seed)
        row = {"variant_id": variant.variant_id, "variant": variant.variant, "is_baseline": variant.is_baseline,
               "n_seeds": int(values.size), "seeds": ",".join(str(int(s)) for s in values.index),
               "mean": values.mean() if values.size else np.nan,
               "std": values.std(ddof=1) if values.size > 1 else np.nan, "ci_low": low, "ci_high": high,
               "n_pairs": 0, "diff": np.nan, "diff_low": np.nan, "diff_high": np.nan, "p": np.nan}
        notes = []
        if values.size == 0:
            notes.append("no finished trial")
        elif values.size < 2:
            notes.append("1 seed: no interval")
        if base_id is not None and not variant.is_baseline and values.size:
            diffs = paired_differences(values, base_values)
            dlow, dhigh = bootstrap_ci(diffs.to_numpy(), confidence=confidence, resamples=resamples, seed=seed)
            pairs = base_values.reindex(diffs.index)
            row.update(n_pairs=int(diffs.size), diff=diffs.mean() if diffs.size else np.nan, diff_low=dlow,
                       diff_high=dhigh, p=paired_test(values.reindex(diffs.index).to_numpy(), pairs.to_numpy(), test))
            if diffs.size == 0:
                notes.append("no seed shared with the baseline")
            elif diffs.size < 2:
                notes.append("1 paired seed: no test")
            elif np.isnan(row["p"]):
                notes.append("identical differences on every seed: no test")
        elif base_id is None and not variant.is_baseline:
            notes.append("no baseline")
        row["note"] = "; ".join(notes)
        rows.append(row)
    summary = pd.DataFrame(rows)
    summary["p_holm"] = holm(summary["p"].to_numpy())
    return summary[SUMMARY_COLUMNS]


def _baseline_id(variants: pd.DataFrame, baseline: str | None) -> str | None:
    if baseline is None:
        marked = variants.loc[variants["is_baseline"], "variant_id"]
        return str(marked.iloc[0]) if len(marked) else None
    match = variants[(variants["variant_id"] == baseline) | (variants["variant"] == baseline)]
    if match.empty:
        names = ", ".join(repr(v) for v in variants["variant"])
        raise KWLabError(f"baseline: {baseline!r} is not a variant of this sweep ({names})")
    return str(match["variant_id"].iloc[0])
