"""Every variant against the static model at equal cost: the sweep's static variants at two or more costs (widths)
form a *static family*; each variant is compared, seed by seed, with that family interpolated to the variant's own
parameter count and to its own MACs per image.

For a variant of cost c, bracketed by family members of costs c_lo <= c <= c_hi, the static accuracy at cost c on
seed s is

    static_s(c) = (1 - w) * acc_lo(s) + w * acc_hi(s),   w = (ln c - ln c_lo) / (ln c_hi - ln c_lo),

and the variant's difference on seed s is acc_v(s) - static_s(c). Those differences get exactly the statistics of a
same-width difference (analysis.stats.paired_difference: paired t interval, t-test, Holm, MDD). A variant whose cost
lies outside [smallest, largest] family cost is *out of range*: it gets no number, never an extrapolation.

# NOTE: the interpolation is piecewise linear in log cost between the two nearest family members, not a fitted
# curve. Accuracy is close to linear in log(width) over a factor of two or so (the error of a width family falls
# as a power of its size), so between neighbouring widths the straight line in log cost is a small bias; a global
# fit (a power law, a spline) would let far-away widths and the fit's shape move the baseline, and would
# extrapolate. Interpolating each seed's own family keeps the pairing: a seed's data order and initialisation
# noise, shared by the static widths and the variant of that seed, cancels in the difference. The bias from the
# curvature between two widths is not in the interval; a family with widths close together keeps it small.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import stats
from analysis.style import human_count

COSTS = {"params": ("params_total", "parameters"), "macs": ("macs_per_image", "MACs per image")}
SHORT = {"params": "params", "macs": "MACs"}  # "at equal params", "at equal MACs"
STATIC = "static"
OUT_OF_RANGE = "out of range"
EQUAL_COST_COLUMNS = ["variant_id", "variant", "cost", "cost_name", "cost_value", "family_low", "family_high",
                      "in_range", "n_pairs", "diff", "diff_sd", "diff_low", "diff_high", "p", "p_holm", "resolved",
                      "diff_missing", "note"]


@dataclass(frozen=True)
class Family:
    """The static variants of a sweep ordered by one cost: their ids and costs (distinct, increasing)."""

    cost: str  # "params" or "macs"
    variant_ids: tuple[str, ...]
    costs: tuple[float, ...]

    @property
    def usable(self) -> bool:
        """Two or more distinct costs: something to interpolate between."""
        return len(self.costs) >= 2

    @property
    def span(self) -> tuple[float, float]:
        """The smallest and largest cost of the family."""
        return (self.costs[0], self.costs[-1]) if self.costs else (np.nan, np.nan)


def static_family(variants: pd.DataFrame, cost: str) -> Family:
    """The family of `variants` (one row per variant with variant_id, method and the cost columns): every variant
    whose method is static and whose cost is known. Members of equal cost keep the first (sweep order)."""
    column = COSTS[cost][0]
    if variants.empty or "method" not in variants or column not in variants:
        return Family(cost, (), ())
    members = variants[(variants["method"] == STATIC) & pd.to_numeric(variants[column], errors="coerce").gt(0)]
    members = members.assign(_cost=members[column].astype(float)).drop_duplicates("_cost").sort_values(
        "_cost", kind="stable")
    return Family(cost, tuple(members["variant_id"].astype(str)), tuple(members["_cost"]))


def interpolation_weights(costs: tuple[float, ...] | np.ndarray, cost: float) -> dict[int, float] | None:
    """Weights of the family members (by position) that interpolate `cost` linearly in log cost: one member at
    weight 1 when the cost equals its own, its two neighbours otherwise; None outside the family's span."""
    c = np.asarray(costs, dtype=float)
    if c.size == 0 or not np.isfinite(cost) or cost <= 0 or cost < c[0] or cost > c[-1]:
        return None
    exact = np.flatnonzero(np.isclose(c, cost, rtol=1e-9, atol=0.0))
    if exact.size:
        return {int(exact[0]): 1.0}
    high = int(np.searchsorted(c, cost))  # c[high - 1] < cost < c[high]
    w = (np.log(cost) - np.log(c[high - 1])) / (np.log(c[high]) - np.log(c[high - 1]))
    return {high - 1: float(1 - w), high: float(w)}


def static_at(per_seed: pd.DataFrame, family: Family, cost: float) -> pd.Series:
    """The family's metric interpolated to `cost`, per seed (index: seed): only seeds on which every member used
    finished; empty outside the span."""
    weights = interpolation_weights(family.costs, cost)
    if weights is None:
        return pd.Series(dtype=float)
    ids = [family.variant_ids[i] for i in weights]
    if any(i not in per_seed for i in ids):
        return pd.Series(dtype=float)
    values = sum(per_seed[family.variant_ids[i]] * w for i, w in weights.items())
    return values.dropna()


def compare(trials: pd.DataFrame, variants: pd.DataFrame, metric: str, cost: str,
            confidence: float = stats.CONFIDENCE) -> pd.DataFrame:
    """One row per variant that is not a family member (EQUAL_COST_COLUMNS): its cost, the family's span, and its
    paired difference to the static family interpolated to its cost (mean, sd, t interval, p, Holm across the
    variants compared, `resolved`); `diff_missing` says why a number is missing (out of range, too few pairs).
    Empty without a usable family."""
    family = static_family(variants, cost)
    if not family.usable:
        return pd.DataFrame(columns=EQUAL_COST_COLUMNS)
    column, name = COSTS[cost]
    table = stats.per_seed(trials, metric)
    low, high = family.span
    rows = []
    for row in variants.to_dict("records"):
        if row["variant_id"] in family.variant_ids:
            continue
        value = float(row.get(column, np.nan))
        nan = float("nan")
        out = {"variant_id": row["variant_id"], "variant": row["variant"], "cost": cost, "cost_name": name,
               "cost_value": value, "family_low": low, "family_high": high, "in_range": False, "n_pairs": 0,
               "diff": nan, "diff_sd": nan, "diff_low": nan, "diff_high": nan, "p": nan, "resolved": False}
        values = table[row["variant_id"]].dropna() if row["variant_id"] in table else pd.Series(dtype=float)
        if not np.isfinite(value):
            out["diff_missing"] = f"no {name} recorded"
        elif value < low or value > high:
            out["diff_missing"] = out_of_range(value, family, name)
        elif values.empty:
            out |= {"in_range": True, "diff_missing": stats.NOTHING}
        else:
            result = stats.compare_paired(values, static_at(table, family, value), confidence)
            out |= {"in_range": True, "n_pairs": result.n, "diff": result.mean, "diff_sd": result.sd,
                    "diff_low": result.low, "diff_high": result.high, "p": result.p, "resolved": result.resolved,
                    "diff_missing": result.missing if result.n else "no seed shared with the static family"}
        out["note"] = out["diff_missing"]
        rows.append(out)
    result = pd.DataFrame(rows, columns=[c for c in EQUAL_COST_COLUMNS if c != "p_holm"])
    result["p_holm"] = stats.holm(result["p"].to_numpy()) if len(result) else []
    return result[EQUAL_COST_COLUMNS]


def out_of_range(value: float, family: Family, name: str) -> str:
    """Why a variant has no equal-cost number: its cost and the family's span."""
    low, high = family.span
    side = "below" if value < low else "above"
    return (f"{OUT_OF_RANGE}: {human_count(value)} {name} is {side} the static family's "
            f"{human_count(low)}–{human_count(high)} (not extrapolated)")


def family_points(points: pd.DataFrame, family: Family) -> pd.DataFrame:
    """The family's members from `points` (one row per variant: variant_id, mean, ci_low, ci_high and the cost
    column), in increasing cost: what a figure draws as the static curve with its band."""
    column = COSTS[family.cost][0]
    rows = points[points["variant_id"].isin(family.variant_ids)]
    return rows.assign(_cost=rows[column].astype(float)).sort_values("_cost").drop(columns="_cost")
