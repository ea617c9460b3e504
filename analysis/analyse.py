"""A sweep with its statistics, what every part of the report reads: the per-variant summary against the baseline,
the variant table, the comparisons at equal cost and per schedule, the variants still catching up, what an older
config of a variant changes, and the colours and markers of the variants."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis import catching_up, families, power, schedules, stats
from analysis.schedules import Schedules
from kwlab.store import CONFIG
from analysis.style import BASELINE_COLOR, palette
from analysis.families import FAMILY_TITLE
from analysis.sweep import (Sweep, config_changes, diff_unit, factor_groups, format_value, group_title, labels,
                            metric_label, variants)


@dataclass
class Analysis:
    """A sweep with its statistics: the per-variant summary, the variant table, the varying factor groups."""

    sweep: Sweep
    summary: pd.DataFrame
    variants: pd.DataFrame
    groups: list[list[str]]
    colors: dict[str, str]
    baseline: str | None  # the baseline's variant name
    interval: str = "t"  # the interval of each variant's mean: "t" or "bootstrap"
    effect: float | None = None  # the difference whose seeds the table also gives (--effect)
    # "params"/"macs" -> each variant against the static family at that cost (analysis.equal_cost.compare, with
    # the power columns, within each schedule); only the costs the sweep has a static family for
    equal_cost: dict[str, pd.DataFrame] = field(default_factory=dict)
    markers: dict[str, str] = field(default_factory=dict)  # label -> marker (families of variants; else circles)
    schedules: Schedules | None = None  # comparisons per training length, for a sweep of several
    late: pd.DataFrame = field(default_factory=pd.DataFrame)  # analysis.catching_up.catching_up's rows
    changes: dict[str, str] = field(default_factory=dict)  # variant_id of an older config -> what it changes
    heatmap_trials: tuple[str, ...] = ()  # single trials whose heatmaps the report also draws (--trial)

    @property
    def points(self) -> pd.DataFrame:
        """Summary joined with the variant table: one row per variant, what the scatter plots take."""
        info = self.variants.drop(columns=["variant", "is_baseline"])
        return self.summary.merge(info, on="variant_id", how="left")

    @property
    def hue_title(self) -> str | None:
        """Legend title: the families where the variants are coloured by family, else the first varying factor
        group."""
        if self.markers:
            return FAMILY_TITLE
        return group_title(self.groups[0]) if self.groups else None

    @property
    def methods(self) -> list[str]:
        """The convolution methods of a method comparison: every method, when the trials have more than one besides
        static (a static baseline next to one dynamic method is an ablation, not a comparison); else []."""
        dynamic = [m for m in self.sweep.methods if m != "static"]
        return self.sweep.methods if len(dynamic) > 1 else []

    @property
    def interval_words(self) -> str:
        """The interval of each variant's mean, in words."""
        return "t interval" if self.interval == "t" else "percentile-bootstrap interval"

    @property
    def better(self) -> str:
        """Which way the metric is better, in words."""
        return "lower is better" if self.sweep.goal == "minimize" else "higher is better"

    def printed_title(self, what: str, note: str = "") -> str:
        """The first line of what `kwlab report` prints for a part: 'NAME: METRIC WHAT (Δ in UNIT, 95% CI NOTE):'."""
        unit = diff_unit(self.sweep.metric)
        return (f"{self.sweep.name}: {metric_label(self.sweep.metric)} {what} (Δ{' in ' + unit if unit else ''}, "
                f"95% CI{note}):")

    @property
    def notes(self) -> dict[str, list[str]]:
        """variant_id -> what the ablation table footnotes on its name: an older config's changes, a variant still
        catching up at the end of training."""
        out: dict[str, list[str]] = {i: [text] for i, text in self.changes.items()}
        flagged = self.late.loc[self.late["flagged"], "variant_id"] if len(self.late) else []
        for variant_id in flagged:
            out.setdefault(variant_id, []).append(catching_up.FLAG)
        return out


def analyse(sweep: Sweep, baseline: str | None = None, *, interval: str = "t", effect: float | None = None,
            resamples: int = stats.RESAMPLES, seed: int = stats.SEED,
            heatmap_trials: tuple[str, ...] = ()) -> Analysis:
    """The statistics (with the power columns of analysis.power), labels and colours of one sweep."""
    summary = stats.summarize(sweep.trials, sweep.metric, baseline, interval=interval, resamples=resamples,
                              seed=seed)
    summary = power.with_power(summary, effect=effect, minimum=stats.MIN_SEEDS)
    table = every = variants(sweep)
    if not summary.empty:  # another config of a variant with nothing finished is listed in the status only
        empty = set(summary.loc[summary["n_seeds"] == 0, "variant_id"])
        table = table[~(table["stale"] & table["variant_id"].isin(empty))].reset_index(drop=True)
        summary = summary[summary["variant_id"].isin(set(table["variant_id"]))]
    if not summary.empty:  # the baseline may have been chosen on the command line
        marked = dict(zip(summary["variant_id"], summary["is_baseline"], strict=True))
        table["is_baseline"] = table["variant_id"].map(marked).fillna(False).astype(bool)
        table = pd.concat([table[table["is_baseline"]], table[~table["is_baseline"]]]).reset_index(drop=True)
        table["label"] = labels(table, factor_groups(table, sweep.factors))
    groups = factor_groups(table, sweep.factors)
    rank = {variant_id: i for i, variant_id in enumerate(table["variant_id"])}
    summary = summary.sort_values("variant_id", key=lambda ids: ids.map(rank), kind="stable").reset_index(drop=True)
    base = table.loc[table["is_baseline"], "variant"]
    base_id = str(table.loc[table["is_baseline"], "variant_id"].iloc[0]) if len(base) else None
    colors, markers = variant_styles(table, groups, sweep.factors)
    found = schedules.compare(sweep.trials, table, sweep.metric, base_id, sweep.factors)
    names = dict(zip(table["variant_id"], table["variant"], strict=True))
    late = catching_up.catching_up(sweep.epochs, sweep.finished,
                                   schedules.baselines(table, sweep.trials, sweep.factors, base_id), names)
    return Analysis(sweep, summary, table, groups, colors, str(base.iloc[0]) if len(base) else None,
                    interval=interval, effect=effect,
                    equal_cost=power.equal_cost_power(sweep.trials, table, sweep.metric, effect=effect),
                    markers=markers, schedules=power.schedule_power(found, effect=effect) if found else None,
                    late=late, changes=older_configs(sweep, every), heatmap_trials=heatmap_trials)


def variant_styles(table: pd.DataFrame, groups: list[list[str]],
                   factors: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """A colour and a marker per label: by family (analysis.families) where the variants form several, else the
    palette of the first varying factor (ordered when numeric) and circles; the baseline dark."""
    styled = families.styles(table, factors)
    colors, markers = styled if styled is not None else (
        palette(_palette_order(table, groups), ordinal=_ordinal(table, groups)), {})
    base_label = table.loc[table["is_baseline"], "label"]
    if len(base_label):
        colors[base_label.iloc[0]] = BASELINE_COLOR
    return colors, markers


def _ordinal(table: pd.DataFrame, groups: list[list[str]]) -> bool:
    if not groups:
        return False
    values = table.loc[~table["is_baseline"], groups[0][0]].dropna()
    return bool(len(values)) and values.map(lambda v: isinstance(v, int | float | np.number)).all()


def _palette_order(table: pd.DataFrame, groups: list[list[str]]) -> list[str]:
    others = table[~table["is_baseline"]]
    if _ordinal(table, groups):
        others = others.assign(_key=pd.to_numeric(others[groups[0][0]], errors="coerce")).sort_values(
            "_key", kind="stable", na_position="last")
    return list(others["label"])


def older_configs(sweep: Sweep, table: pd.DataFrame) -> dict[str, str]:
    """variant_id of each older config of a variant ('name [variant_id]') -> what its resolved config changes from
    the current config of that name, in words: 'another config of static: epochs = 2 where the current has 3'."""
    current = dict(zip(table["variant"], table["variant_id"], strict=True))
    out = {}
    for row in table[table["stale"]].to_dict("records"):
        name = row["variant"].removesuffix(f" [{row['variant_id']}]")
        out[row["variant_id"]] = f"another config of {name}: " + change_words(
            sweep.config(row["variant_id"]), sweep.config(current[name]) if name in current else {})
    return out


def change_words(old: dict, new: dict) -> str:
    """What an older resolved config changes from the current one: 'epochs = 2 where the current has 3, ...', or
    why that is not known."""
    if not old or not new:
        return f"what differs is not known (no {CONFIG} of {'the current' if not new else 'the older'} config yet)"
    changed = config_changes(old, new)
    if not changed:
        return "the same resolved config (its sweep metadata differs)"
    return ", ".join(f"{key} = {format_value(was)} where the current has {format_value(now)}"
                     for key, (was, now) in changed.items())
