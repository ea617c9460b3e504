"""Training length as an axis: a sweep whose variants train for different numbers of epochs (`epochs` swept, or set
by cases) compared schedule by schedule, and whether each gap moves with the length.

Variants are matched across schedules by their config without `epochs`: their method and every other swept value.
At each schedule, each variant is compared with the baseline's match at that schedule (same width:
analysis.stats.summarize) and with that schedule's static family at equal parameters and at equal MACs
(analysis.equal_cost.compare on that schedule's variants alone: the family is never interpolated across schedules).

The change of a gap with length is taken seed by seed: the seed's gap at the longest schedule minus its gap at the
shortest, where a gap is the seed's difference to what the variant is compared with at that schedule. The changes
get the paired statistics of any difference (analysis.stats.compare_paired: t interval, two-sided t-test; "resolved"
when the interval excludes 0), with Holm's correction across the variants of each comparison.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import equal_cost, stats
from analysis.sweep import format_value

SCHEDULE = "epochs"  # the trial-config key of the training length
WIDTH = "width"  # the comparison with the baseline's match at the same schedule
COMPARISONS = {WIDTH: "same width", "params": "equal params", "macs": "equal MACs"}
ROW_COLUMNS = ["group", "comparison", "epochs", "variant_id", "variant", "versus", "n_pairs", "diff", "diff_sd",
               "diff_low", "diff_high", "p", "p_holm", "resolved", "note"]
CHANGE_COLUMNS = ["group", "comparison", "shortest", "longest", "n_pairs", "diff", "diff_sd", "diff_low", "diff_high",
                  "p", "p_holm", "resolved", "note"]


@dataclass(frozen=True)
class Schedules:
    """A sweep's comparisons per schedule and the change of each gap from the shortest to the longest schedule."""

    lengths: tuple[int, ...]  # the schedules in epochs, shortest first
    schedule: pd.Series  # each compared variant's schedule (index: variant_id)
    group: pd.Series  # each compared variant's group: its name across schedules (index: variant_id)
    rows: pd.DataFrame  # one row per group, comparison and schedule (ROW_COLUMNS)
    changes: pd.DataFrame  # one row per group and comparison: longest minus shortest, paired by seed (CHANGE_COLUMNS)

    @property
    def longest(self) -> int:
        """The longest schedule."""
        return self.lengths[-1]


def schedule_of(variants: pd.DataFrame, trials: pd.DataFrame) -> pd.Series:
    """Each variant's training length in epochs (index: variant_id): its swept `epochs`, else what its trials
    record (a case that leaves the length to the base config); NaN where neither says."""
    recorded = (pd.to_numeric(trials[SCHEDULE], errors="coerce").groupby(trials["variant_id"]).max()
                if SCHEDULE in trials else pd.Series(dtype=float))
    swept = (pd.to_numeric(variants[SCHEDULE], errors="coerce") if SCHEDULE in variants
             else pd.Series(np.nan, index=variants.index))
    return pd.Series(swept.to_numpy(dtype=float), index=variants["variant_id"]).fillna(recorded)


def lengths(schedule: pd.Series) -> tuple[int, ...]:
    """The distinct known schedules, shortest first."""
    return tuple(sorted({int(v) for v in schedule.dropna()}))


def matched(variants: pd.DataFrame, factors: list[str]) -> pd.Series:
    """A key per variant (index: variant_id), equal for variants that differ in their training length alone: the
    method and every other swept value."""
    keys = [k for k in dict.fromkeys(["method", *factors]) if k in variants and k != SCHEDULE]
    return pd.Series([json.dumps([format_value(row[k]) for k in keys]) for row in variants.to_dict("records")],
                     index=variants["variant_id"])


def group_name(names: list[str], epochs: list[int]) -> str:
    """The name of variants matched across schedules (each name trained for its `epochs`): their names without the
    'epochs=N' a grid point's name holds (kwlab.sweep.expand.label), or, where cases still differ, without the last
    mention of their own length ('budget=1@10' and 'budget=1@40' are 'budget=1'); else joined by ' / '."""
    stripped = [",".join(p for p in n.split(",") if not p.startswith(f"{SCHEDULE}=")) or "base" for n in names]
    bare = {_without_length(name, length) for name, length in zip(stripped, epochs, strict=True)}
    if len(set(stripped)) > 1 and len(bare) == 1 and "" not in bare:
        return bare.pop()
    return " / ".join(dict.fromkeys(stripped))


def _without_length(name: str, length: int) -> str:
    """`name` without its last standalone mention of `length` and the separator before it."""
    found = list(re.finditer(rf"[@_:/ -]*(?<![\d.]){length}(?![\d.])", name))
    return name if not found else name[:found[-1].start()] + name[found[-1].end():]


def baselines(variants: pd.DataFrame, trials: pd.DataFrame, factors: list[str], baseline: str | None) -> dict[str, str]:
    """The baseline each variant is compared with (variant_id -> variant_id): the `baseline` variant's match at the
    variant's own schedule (itself where the sweep has one schedule); a variant whose schedule has none is absent."""
    if baseline is None or baseline not in set(variants["variant_id"]):
        return {}
    schedule = schedule_of(variants, trials)
    if len(lengths(schedule)) < 2:
        return dict.fromkeys(variants["variant_id"], baseline)
    key = matched(variants, factors)
    at = {schedule[i]: i for i in key.index[key == key[baseline]]} | {schedule[baseline]: baseline}
    return {i: at[schedule[i]] for i in variants["variant_id"] if schedule[i] in at}


def at_length(trials: pd.DataFrame, variants: pd.DataFrame, schedule: pd.Series,
              length: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The trials and the variants of one schedule."""
    ids = set(schedule.index[schedule == length])
    return trials[trials["variant_id"].isin(ids)], variants[variants["variant_id"].isin(ids)]


def within(trials: pd.DataFrame, variants: pd.DataFrame, schedule: pd.Series,
           compare: Callable[[pd.DataFrame, pd.DataFrame, int], pd.DataFrame]) -> pd.DataFrame:
    """`compare(trials, variants, epochs)` on each schedule's own trials and variants, its rows tagged `epochs`."""
    parts = [compare(*at_length(trials, variants, schedule, length), length).assign(epochs=length)
             for length in lengths(schedule)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def equal_cost_within(trials: pd.DataFrame, variants: pd.DataFrame, metric: str, cost: str,
                      confidence: float = stats.CONFIDENCE) -> pd.DataFrame:
    """analysis.equal_cost.compare at each schedule, against that schedule's static family (Holm within each), rows
    tagged `epochs`; the whole sweep at once where it has one schedule."""
    schedule = schedule_of(variants, trials)
    if len(lengths(schedule)) < 2:
        return equal_cost.compare(trials, variants, metric, cost, confidence)
    found = within(trials, variants, schedule, lambda t, v, _: equal_cost.compare(t, v, metric, cost, confidence))
    return found if len(found) else pd.DataFrame(columns=[*equal_cost.EQUAL_COST_COLUMNS, "epochs"])


def compare(trials: pd.DataFrame, variants: pd.DataFrame, metric: str, baseline: str | None, factors: list[str],
            confidence: float = stats.CONFIDENCE) -> Schedules | None:
    """Every comparison per schedule and the change of each gap from the shortest to the longest schedule, for a
    sweep of two or more schedules where some variant is trained at two of them (else None). `variants` is analysis.sweep.variants' table (other configs of a
    variant, `stale`, are left out); `baseline` the baseline's variant_id."""
    table = variants[~variants["stale"]] if "stale" in variants else variants
    schedule = schedule_of(table, trials).dropna()
    if len(lengths(schedule)) < 2:
        return None
    table = table[table["variant_id"].isin(schedule.index)]
    key = matched(table, factors)
    if schedule.groupby(key).nunique().max() < 2:  # no variant trained at two lengths: no axis to compare along
        return None
    names = {k: group_name(list(rows["variant"]), [int(schedule[i]) for i in rows["variant_id"]])
             for k, rows in table.groupby(key.to_numpy(), sort=False)}
    group = key.map(names)
    base = baselines(table, trials, factors, baseline)
    names_of = dict(zip(table["variant_id"], table["variant"], strict=True))

    def width(sub_trials: pd.DataFrame, sub_variants: pd.DataFrame, length: int) -> pd.DataFrame:
        reference = next((base[i] for i in sub_variants["variant_id"] if i in base), None)
        if reference is None:
            return pd.DataFrame(columns=stats.SUMMARY_COLUMNS)
        rows = stats.summarize(sub_trials, metric, reference, confidence=confidence)
        return rows[~rows["is_baseline"]].assign(versus=names_of[reference])

    parts = [within(trials, table, schedule, width).assign(comparison=WIDTH)]
    parts += [equal_cost_within(trials, table, metric, cost, confidence).assign(comparison=cost, versus="static family")
              for cost in equal_cost.COSTS]
    parts = [p for p in parts if len(p)]
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*ROW_COLUMNS, "diff_missing"])
    rows = rows.assign(group=rows["variant_id"].map(group), note=rows["diff_missing"].fillna(""))[ROW_COLUMNS]
    changes = _changes(trials, table, metric, rows, base, schedule, confidence)
    return Schedules(lengths(schedule), schedule, group, rows, changes)


def gap(trials: pd.DataFrame, variants: pd.DataFrame, metric: str, variant_id: str, comparison: str,
        baseline: str | None) -> pd.Series:
    """A variant's difference to what it is compared with, per seed, among `trials` and `variants` (one schedule's):
    the `baseline` (same width), or the static family interpolated to the variant's cost (`comparison` "params" or
    "macs"); empty where there is none (out of the family's range, no baseline)."""
    per_seed = stats.per_seed(trials, metric)
    values = per_seed[variant_id] if variant_id in per_seed else pd.Series(dtype=float)
    if comparison == WIDTH:
        reference = per_seed[baseline] if baseline in per_seed else pd.Series(dtype=float)
    else:
        family = equal_cost.static_family(variants, comparison)
        cost = variants.set_index("variant_id").loc[variant_id, equal_cost.COSTS[comparison][0]]
        reference = equal_cost.static_at(per_seed, family, float(cost))
    return stats.paired_differences(values, reference)


def _changes(trials: pd.DataFrame, variants: pd.DataFrame, metric: str, rows: pd.DataFrame, base: dict[str, str],
             schedule: pd.Series, confidence: float) -> pd.DataFrame:
    """Per group and comparison compared at both the shortest and the longest schedule: the gap at the longest minus
    the gap at the shortest, paired by seed; Holm across the groups of each comparison."""
    shortest, longest = lengths(schedule)[0], lengths(schedule)[-1]
    out = []
    for (name, comparison), pair in rows[rows["epochs"].isin([shortest, longest])].groupby(["group", "comparison"],
                                                                                            sort=False):
        at = {int(r["epochs"]): r for r in pair.to_dict("records")}
        if set(at) != {shortest, longest}:
            continue
        gaps = [gap(*at_length(trials, variants, schedule, length), metric, at[length]["variant_id"], comparison,
                    base.get(at[length]["variant_id"])) for length in (longest, shortest)]
        result = stats.compare_paired(*gaps, confidence)
        note = result.missing if result.n else "; ".join(
            f"{r['note']} at {length} epochs" for length, r in at.items() if r["note"]) or result.missing
        out.append({"group": name, "comparison": comparison, "shortest": shortest, "longest": longest,
                    "n_pairs": result.n, "diff": result.mean, "diff_sd": result.sd, "diff_low": result.low,
                    "diff_high": result.high, "p": result.p, "resolved": result.resolved, "note": note})
    changes = pd.DataFrame(out, columns=[c for c in CHANGE_COLUMNS if c != "p_holm"])
    changes["p_holm"] = (changes.groupby("comparison")["p"].transform(lambda p: stats.holm(p.to_numpy()))
                         if len(changes) else pd.Series(dtype=float))
    return changes[CHANGE_COLUMNS]
