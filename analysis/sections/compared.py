"""The report's comparison of a method's compared setting (`Method.compared`, e.g. KernelWarehouse's attention
function against caf, with its init): the metric per value with the paired difference to the reference value, and
how attention values are distributed per value. Any method that declares one gets it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis import attention as attn
from analysis import declared, stats
from analysis.analyse import Analysis
from analysis.figures.attention_functions import attention_function_comparison, attention_value_distribution
from analysis.section import Part, Section
from analysis.style import save_figure
from analysis.sweep import diff_unit, format_value, metric_label
from kwlab.methods.protocol import ComparedSetting


def settings(result: Analysis) -> list[tuple[str, ComparedSetting]]:
    """(method, setting) for each method of the sweep that declares a compared setting which the sweep varies."""
    found = [(method, declared.compared(method)) for method in result.sweep.methods]
    return [(m, s) for m, s in found if s is not None and f"{m}.{s.key}" in result.sweep.factors]


def compared_variants(result: Analysis, method: str, setting: ComparedSetting) -> pd.DataFrame:
    """The variants of the comparison: those that set the setting's key, and the method's variants that leave it to
    the config but are otherwise set like one of them (but for the setting and its companions); the key of the
    latter is read from their trials' resolved config and named in their label. A spec's reference is often such
    a case, e.g. `budget=4` (labelled 'caf (budget=4)') beside `{kw.budget: 4, kw.attention: softmax}`."""
    key = f"{method}.{setting.key}"
    own = {f"{method}.{name}" for name in (setting.key, *setting.companions)}
    table = result.variants
    others = [c for c in result.sweep.factors if c in table and c not in own]
    signature = pd.Series([tuple(format_value(row[c]) for c in others) for row in table.to_dict("records")],
                          index=table.index)
    setting_it = table[key].notna()
    wanted = set(signature[setting_it])
    implicit = ~setting_it & (table["method"] == method) & signature.map(lambda s: s in wanted)
    resolved = table.loc[implicit, "variant_id"].map(lambda v: result.sweep.resolved(str(v), key))
    table = table.assign(**{key: table[key].where(setting_it, resolved)})
    unnamed = implicit & pd.Series([str(f) not in label for f, label in zip(table[key], table["label"])],
                                   index=table.index, dtype=bool)
    table = table.assign(label=table["label"].where(~unnamed, table[key].astype(str) + " (" + table["label"] + ")"))
    return table[setting_it | (implicit & table[key].notna())]


def _reference(chosen: pd.DataFrame, method: str, setting: ComparedSetting, factors: list[str]) -> pd.DataFrame:
    """The reference variant: labelled by the reference value alone, else the one at that value with none of the
    companions set, else any at that value."""
    key = f"{method}.{setting.key}"
    reference = chosen[chosen["label"] == setting.reference]
    if reference.empty:
        companions = chosen[[c for c in factors if c in chosen and c in {f"{method}.{n}" for n in setting.companions}]]
        reference = chosen[(chosen[key] == setting.reference) & companions.isna().all(axis=1)]
    return reference if len(reference) else chosen[chosen[key] == setting.reference]


def _sections(result: Analysis, method: str, setting: ComparedSetting, stem: str, out: Path) -> list[Section]:
    sweep = result.sweep
    key = f"{method}.{setting.key}"
    chosen = compared_variants(result, method, setting)
    if chosen[key].map(format_value).nunique() < 2:
        return []
    # a renamed variant ('caf (budget=4)') keeps the colour of its name in the other figures ('budget=4')
    colors = {**result.colors, **{label: result.colors.get(old, "C0") for label, old in
                                  zip(chosen["label"], result.variants.loc[chosen.index, "label"])}}
    reference = _reference(chosen, method, setting, sweep.factors)
    reference_id = str(reference["variant_id"].iloc[0]) if len(reference) else None
    trials = sweep.trials[sweep.trials["variant_id"].isin(chosen["variant_id"])]
    versus = stats.summarize(trials, sweep.metric, reference_id, interval=result.interval)
    versus = chosen[["variant_id", "label"]].merge(versus, on="variant_id")  # sweep order
    versus = pd.concat([versus[versus["variant_id"] == reference_id], versus[versus["variant_id"] != reference_id]])
    versus.insert(2, setting.key, versus["variant_id"].map(chosen.set_index("variant_id")[key]))
    versus.drop(columns=["variant_id"]).rename(columns={"is_baseline": "is_reference"}).to_csv(
        out / f"{stem}_functions.csv", index=False)
    reference_label = str(reference["label"].iloc[0]) if len(reference) else setting.reference
    base = result.summary[result.summary["is_baseline"]]
    fig = attention_function_comparison(
        versus, reference=reference_label, setting=key, y_label=metric_label(sweep.metric),
        diff_unit=diff_unit(sweep.metric), baseline_mean=float(base["mean"].iloc[0]) if len(base) else None,
        baseline_label=result.baseline or "baseline", colors=colors)
    sections = [Section(f"Compared: {key}", f"Mean {metric_label(sweep.metric)} per `{key}` and the difference of "
                        f"each to {reference_label}, paired by seed (95% t interval, Holm-corrected paired t-test "
                        f"across the settings), with the {result.baseline or 'baseline'} model dotted "
                        f"([CSV]({stem}_functions.csv)).", save_figure(fig, out / f"{stem}_functions"))]
    finished = sweep.finished
    maps = {}
    for row in chosen.set_index("variant_id").loc[versus["variant_id"]].reset_index().to_dict("records"):
        ids = finished.loc[finished["variant_id"] == row["variant_id"], "trial_id"]
        found = {t: m for t in ids if (m := attn.trial_attention(sweep.trial_dir(t))) is not None}
        if found:
            maps[row["label"]] = found
    if maps:
        values = attn.attention_values(maps)
        fig = attention_value_distribution(values, attn.value_summary(values), setting=key, colors=colors)
        sections.append(Section(f"Attention values per {key}", f"The distribution of mean attention values α per "
                                f"`{key}` over all of its groups and seeds, with the share that is negative and the "
                                f"share that is near zero (below 1% of its row's largest |α|).",
                                save_figure(fig, out / f"{stem}_values")))
    return sections


def write(result: Analysis, out: Path) -> list[Section]:
    """The sections of each compared setting the sweep varies, its files named by the setting's key (prefixed by
    the method where several methods compare one)."""
    found = settings(result)
    return [section for method, setting in found for section in _sections(
        result, method, setting, setting.key if len(found) == 1 else f"{method}_{setting.key}", out)]


PART = Part("compared settings", write, figures=("*_functions", "*_values"), files=("*_functions.csv",))
