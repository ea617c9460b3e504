"""Statistics over seeds: intervals of a variant's mean, paired differences to a baseline with their t interval and
paired t-test, Holm's correction, and the rule for when none of that is estimable.

Every comparison is paired: the variants of a sweep share seeds, so a variant's difference to the baseline is
taken seed by seed, on the seeds both have finished (stopped and failed trials are left out).

Choices (also stated in every report):
- Difference: the mean of the n paired differences with the t interval mean +- t_{n-1,0.975} * sd / sqrt(n), and
  p from the two-sided paired t-test on the same t statistic (equal to `scipy.stats.ttest_rel`). The two agree by
  construction: the 95% interval excludes 0 exactly when the unadjusted p < 0.05 (`resolved`).
- Variant mean: the t interval of the mean as well (`interval="t"`, the default). The percentile bootstrap
  (`interval="bootstrap"`, 10,000 resamples, generator seed 0) is kept for comparison with older reports; with
  three seeds it is the range of the seeds, which covers the mean only about 75% of the time, not 95%.
- Not estimable: with fewer than MIN_SEEDS (3) seeds, or paired differences that do not vary (sd 0, up to the
  float32 precision of the values), there is no usable estimate of the seed-to-seed noise. The interval, p and
  `resolved` are then left out (NaN) and `note` says why, instead of a zero-width interval and p ~ 0.
- Multiplicity: Holm's step-down correction over the variants compared with the baseline (controls the
  family-wise error rate without assuming independence). `resolved` is unadjusted; read p (Holm) for the family.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from kwlab.errors import KWLabError

RESAMPLES = 10_000
CONFIDENCE = 0.95
SEED = 0
MIN_SEEDS = 3  # fewest seeds (paired seeds for a difference) an interval or a test is estimated from
ZERO_SPREAD = 1e-6  # an sd below this fraction of the values' magnitude is rounding (float32 precision), not noise
EXCLUDED = ("stopped", "failed")  # statuses whose seeds are named in the notes as left out
SUMMARY_COLUMNS = ["variant_id", "variant", "is_baseline", "n_seeds", "seeds", "mean", "std", "ci_low", "ci_high",
                   "n_pairs", "diff", "diff_sd", "diff_low", "diff_high", "p", "p_holm", "resolved", "mean_missing",
                   "diff_missing", "note"]

FEW_SEEDS = f"fewer than {MIN_SEEDS} seeds: no interval"
FEW_PAIRS = f"fewer than {MIN_SEEDS} paired seeds: interval, p and MDD not estimable"
NO_SPREAD = "identical paired differences on every seed (sd 0): interval, p and MDD not estimable"
NO_PAIRS = "no seed shared with the baseline"
NOTHING = "no finished trial"


def t_interval(values: np.ndarray | list[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """mean +- t_{n-1,(1+confidence)/2} * sd / sqrt(n) of `values` (NaNs dropped); (nan, nan) below two values."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return float("nan"), float("nan")
    half = scipy_stats.t.ppf((1 + confidence) / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return float(x.mean() - half), float(x.mean() + half)


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


def no_spread(variant: np.ndarray | list[float], baseline: np.ndarray | list[float]) -> bool:
    """Whether the paired differences do not vary: their sd is below ZERO_SPREAD times the values' magnitude, i.e.
    they are equal but for the rounding of the stored values (e.g. 89.2 - 88.0 and 90.8 - 89.6 in floats)."""
    a, b = np.asarray(variant, dtype=float), np.asarray(baseline, dtype=float)
    if a.size < 2:
        return False
    scale = max(1.0, float(np.abs(a).max()), float(np.abs(b).max()))
    return float(np.std(a - b, ddof=1)) <= ZERO_SPREAD * scale


@dataclass(frozen=True)
class PairedDifference:
    """A variant's difference to the baseline over n paired seeds: mean, sd, t interval and paired t-test p.
    `missing` says why the interval and p are not estimable ('' when they are)."""

    n: int
    mean: float
    sd: float
    low: float
    high: float
    p: float
    missing: str

    @property
    def resolved(self) -> bool:
        """Whether the interval excludes 0 (the same as an unadjusted p below 1 - confidence)."""
        return bool(self.low > 0 or self.high < 0)


def paired_difference(variant: np.ndarray | list[float], baseline: np.ndarray | list[float],
                      confidence: float = CONFIDENCE) -> PairedDifference:
    """variant - baseline on aligned samples (one pair per seed): the mean difference always, its t interval and
    two-sided paired t-test p only from MIN_SEEDS pairs with differences that vary."""
    a, b = np.asarray(variant, dtype=float), np.asarray(baseline, dtype=float)
    d = a - b
    n = int(d.size)
    mean = float(d.mean()) if n else float("nan")
    sd = float(d.std(ddof=1)) if n > 1 else float("nan")
    nan = float("nan")
    if n == 0:
        return PairedDifference(0, mean, sd, nan, nan, nan, NO_PAIRS)
    if n < MIN_SEEDS:
        return PairedDifference(n, mean, sd, nan, nan, nan, FEW_PAIRS)
    if no_spread(a, b):
        return PairedDifference(n, mean, 0.0, nan, nan, nan, NO_SPREAD)
    se = sd / np.sqrt(n)
    low, high = t_interval(d, confidence)
    p = float(2 * scipy_stats.t.sf(abs(mean) / se, n - 1))  # the t of scipy.stats.ttest_rel
    return PairedDifference(n, mean, sd, low, high, p, "")


def compare_paired(variant: pd.Series, reference: pd.Series, confidence: float = CONFIDENCE) -> PairedDifference:
    """variant - reference (Series indexed by seed) by `paired_difference`, on the seeds both have."""
    seeds = paired_differences(variant, reference).index
    return paired_difference(variant.reindex(seeds).to_numpy(), reference.reindex(seeds).to_numpy(), confidence)


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
    values = finished[["variant_id", "seed", metric]].copy()
    values[metric] = pd.to_numeric(values[metric], errors="coerce")
    values = values.dropna()
    if values.empty:
        return pd.DataFrame()
    return values.pivot_table(index="seed", columns="variant_id", values=metric, aggfunc="mean")


def summarize(
    trials: pd.DataFrame,
    metric: str = "test_top1",
    baseline: str | None = None,
    *,
    confidence: float = CONFIDENCE,
    interval: Literal["t", "bootstrap"] = "t",
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> pd.DataFrame:
    """One row per variant (baseline first, then sweep order): seeds, mean with interval, paired difference to the
    baseline (mean, sd, t interval), p and Holm-corrected p, `resolved` (the interval excludes 0), why an interval
    is missing (`mean_missing`, `diff_missing`) and a `note` gathering those and the seeds left out.

    Only finished trials count. `baseline` is a variant_id or variant name; by default the variant marked
    is_baseline. Variants without a finished trial keep a row (n_seeds 0) so that a running sweep shows them.
    `interval` is the interval of each variant's own mean ("t" or the percentile "bootstrap"); the difference's
    interval is always the paired t interval.
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
        low = high = np.nan
        mean_missing = NOTHING if values.size == 0 else FEW_SEEDS if values.size < MIN_SEEDS else ""
        if not mean_missing:
            low, high = (t_interval(values.to_numpy(), confidence) if interval == "t" else
                         bootstrap_ci(values.to_numpy(), confidence=confidence, resamples=resamples, seed=seed))
        row = {"variant_id": variant.variant_id, "variant": variant.variant, "is_baseline": variant.is_baseline,
               "n_seeds": int(values.size), "seeds": ",".join(str(int(s)) for s in values.index),
               "mean": values.mean() if values.size else np.nan,
               "std": values.std(ddof=1) if values.size > 1 else np.nan, "ci_low": low, "ci_high": high,
               "n_pairs": 0, "diff": np.nan, "diff_sd": np.nan, "diff_low": np.nan, "diff_high": np.nan,
               "p": np.nan, "resolved": False, "mean_missing": mean_missing, "diff_missing": ""}
        notes = [mean_missing]
        if base_id is not None and not variant.is_baseline and values.size:
            result = compare_paired(values, base_values, confidence)
            row.update(n_pairs=result.n, diff=result.mean, diff_sd=result.sd, diff_low=result.low,
                       diff_high=result.high, p=result.p, resolved=result.resolved, diff_missing=result.missing)
            notes.append(result.missing)
        elif not variant.is_baseline:
            row["diff_missing"] = NOTHING if base_id is not None else "no baseline"
            notes.append(row["diff_missing"])
        notes.append(_left_out(trials, variant.variant_id, metric))
        row["note"] = "; ".join(dict.fromkeys(n for n in notes if n))
        rows.append(row)
    summary = pd.DataFrame(rows)
    summary["p_holm"] = holm(summary["p"].to_numpy())
    return summary[SUMMARY_COLUMNS]


def _left_out(trials: pd.DataFrame, variant_id: str, metric: str) -> str:
    """'left out: seed 2 stopped early, seed 1 failed, seed 0 has no test_top1' for the variant's trials that ended
    without finishing, or finished without the metric (e.g. an older trial in a store reused by a newer sweep)."""
    if "status" not in trials:
        return ""
    rows = trials[trials["variant_id"] == variant_id].sort_values("seed")
    values = pd.to_numeric(rows[metric], errors="coerce") if metric in rows else pd.Series(np.nan, index=rows.index)
    words = {"stopped": "stopped early", "failed": "failed"}
    parts = [f"seed {row['seed']} {words[row['status']]}" if row["status"] in EXCLUDED else
             f"seed {row['seed']} has no {metric}"
             for (_, row), value in zip(rows.iterrows(), values, strict=True)
             if row["status"] in EXCLUDED or (row["status"] == "finished" and np.isnan(value))]
    return f"left out: {', '.join(parts)}" if parts else ""


def _baseline_id(variants: pd.DataFrame, baseline: str | None) -> str | None:
    if baseline is None:
        marked = variants.loc[variants["is_baseline"], "variant_id"]
        return str(marked.iloc[0]) if len(marked) else None
    match = variants[(variants["variant_id"] == baseline) | (variants["variant"] == baseline)]
    if match.empty:
        names = ", ".join(repr(v) for v in variants["variant"])
        raise KWLabError(f"baseline: {baseline!r} is not a variant of this sweep ({names})")
    return str(match["variant_id"].iloc[0])
