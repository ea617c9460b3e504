"""Variants still catching up when training stopped: a comparison that a longer schedule may change.

For a variant whose finished trials ran E epochs (E >= 2), its *late gain* on a seed is its validation top-1 at
epoch E minus at epoch floor(3E/4) (at least 1): what it gained over the last quarter of its epochs. The baseline's
late gain is taken over the same epochs on the same seed. The variant is flagged, *still catching up*, when it was
gaining faster than its baseline as training stopped: the paired 95% t interval of (variant's late gain - baseline's
late gain) over the seeds both finished lies above 0 (analysis.stats.compare_paired, so at least three paired seeds
with gains that vary; unadjusted, like "resolved"). The means over seeds are reported beside it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import stats

METRIC = "val_top1"  # the validation metric whose late gain is compared
FLAG = "still catching up at the end: a longer schedule may change this comparison"
LATE_COLUMNS = ["variant_id", "variant", "baseline", "start", "end", "gain", "baseline_gain", "n_pairs", "diff",
                "diff_low", "diff_high", "p", "flagged", "note"]


def quarter_start(end: int) -> int:
    """The epoch 3/4 of the way through `end` epochs, where the last quarter starts: floor(3 * end / 4), at least 1."""
    return max(1, (3 * end) // 4)


def values_at(epochs: pd.DataFrame, variant_id: str, epoch: int, metric: str = METRIC) -> pd.Series:
    """A variant's metric at one epoch, per seed (a repeated seed averaged), from the epochs table's rows."""
    rows = epochs[(epochs["variant_id"] == variant_id) & (epochs["epoch"] == epoch)]
    return pd.to_numeric(rows[metric], errors="coerce").groupby(rows["seed"]).mean().dropna()


def late_gain(epochs: pd.DataFrame, variant_id: str, start: int, end: int, metric: str = METRIC) -> pd.Series:
    """A variant's gain from epoch `start` to epoch `end`, per seed."""
    return stats.paired_differences(values_at(epochs, variant_id, end, metric),
                                    values_at(epochs, variant_id, start, metric))


def catching_up(epochs: pd.DataFrame, finished: pd.DataFrame, baselines: dict[str, str],
                names: dict[str, str], confidence: float = stats.CONFIDENCE) -> pd.DataFrame:
    """One row per variant with a baseline (`baselines`: variant_id -> its baseline's) and two or more epochs
    (LATE_COLUMNS): the last quarter's epochs, its mean late gain and the baseline's over the same epochs, the paired
    difference of the two with its t interval, and `flagged` when that interval lies above 0. `epochs` is the epochs
    table, `finished` the finished trials (only their epochs count), `names` variant_id -> name."""
    if METRIC not in epochs:
        return pd.DataFrame(columns=LATE_COLUMNS)
    done = epochs[epochs["trial_id"].isin(set(finished["trial_id"]))]
    last = done.groupby("variant_id")["epoch"].max()
    rows = []
    for variant_id, baseline in baselines.items():
        if variant_id == baseline or last.get(variant_id, 0) < 2:
            continue
        end = int(last[variant_id])
        start = quarter_start(end)
        mine, theirs = late_gain(done, variant_id, start, end), late_gain(done, baseline, start, end)
        result = stats.compare_paired(mine, theirs, confidence)
        note = result.missing if len(theirs) else f"the baseline has no epoch {end}"
        rows.append({"variant_id": variant_id, "variant": names[variant_id], "baseline": names[baseline],
                     "start": start, "end": end, "gain": mine.mean() if len(mine) else np.nan,
                     "baseline_gain": theirs.mean() if len(theirs) else np.nan, "n_pairs": result.n,
                     "diff": result.mean, "diff_low": result.low, "diff_high": result.high, "p": result.p,
                     "flagged": bool(result.low > 0), "note": note})
    return pd.DataFrame(rows, columns=LATE_COLUMNS)
