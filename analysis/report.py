"""Write every figure and table of a sweep and a report.md that shows them in order, one sentence each.

Works on a sweep that is still running (on the trials finished so far) and lists the trials that are stopped early,
failed, unfinished or missing. A sweep of several convolution methods also gets accuracy against price coloured by
method. Several stores give one report each plus a combined parameters-vs-accuracy figure.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import attention as attn
from analysis import equal_cost, power, stats
from analysis.figures import (
    attention_function_comparison,
    attention_heatmaps,
    attention_value_distribution,
    learning_curves,
    params_accuracy,
)
from analysis.importance import importance_sections
from analysis.section import Section
from analysis.style import BASELINE_COLOR, PAGE_WIDTH, human_count, palette, save_figure
from analysis.sweep import (
    Sweep,
    describe_metric,
    diff_unit,
    factor_groups,
    format_value,
    fixed_factors,
    group_title,
    labels,
    load_sweep,
    metric_label,
    progress,
    resolution,
    short_name,
    variants,
)
from analysis.tables import ablation_table, equal_cost_table, estimate, to_latex, to_markdown
from kwlab import store
from kwlab.errors import KWLabError
from kwlab.best import natural_goal
from kwlab.store import Store

REFERENCE_ATTENTION = "caf"
ATTENTION_KEYS = ("attention", "init")  # the attention function and its initialisation (caf's one-to-one blend)
FIGURE_STEMS = ("params_accuracy", "macs_accuracy", "params_accuracy_by_method", "macs_accuracy_by_method",
                "learning_curves", "attention_functions", "attention_values")
PRICES = (("params_total", "params_accuracy", "parameter count"),  # (column, figure stem, in words)
          ("macs_per_image", "macs_accuracy", "MACs per image"))


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
    # the power columns); only the costs the sweep has a static family for
    equal_cost: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def points(self) -> pd.DataFrame:
        """Summary joined with the variant table: one row per variant, what the scatter plots take."""
        info = self.variants.drop(columns=["variant", "is_baseline"])
        return self.summary.merge(info, on="variant_id", how="left")

    @property
    def hue_title(self) -> str | None:
        """Legend title: the first varying factor group."""
        return group_title(self.groups[0]) if self.groups else None

    @property
    def methods(self) -> list[str]:
        """The convolution methods of a method comparison: every method, when the trials have more than one besides
        static (a static baseline next to one dynamic method is an ablation, not a comparison); else []."""
        dynamic = [m for m in self.sweep.methods if m != "static"]
        return self.sweep.methods if len(dynamic) > 1 else []


def analyse(sweep: Sweep, baseline: str | None = None, *, interval: str = "t", effect: float | None = None,
            resamples: int = stats.RESAMPLES, seed: int = stats.SEED) -> Analysis:
    """The statistics (with the power columns of analysis.power), labels and colours of one sweep."""
    summary = stats.summarize(sweep.trials, sweep.metric, baseline, interval=interval, resamples=resamples,
                              seed=seed)
    summary = power.with_power(summary, effect=effect, minimum=stats.MIN_SEEDS)
    table = variants(sweep)
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
    base_label = table.loc[table["is_baseline"], "label"]
    order = _palette_order(table, groups)
    colors = palette(order, ordinal=_ordinal(table, groups))
    if len(base_label):
        colors[base_label.iloc[0]] = BASELINE_COLOR
    return Analysis(sweep, summary, table, groups, colors, str(base.iloc[0]) if len(base) else None, interval,
                    effect, power.equal_cost_power(sweep.trials, table, sweep.metric, effect=effect))


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


def slug(text: str) -> str:
    """A file-name-safe version of a label."""
    return re.sub(r"[^A-Za-z0-9+-]+", "_", text).strip("_") or "variant"


def _figure_links(paths: list[Path], out: Path) -> str:
    return " · ".join(f"[{p.suffix[1:].upper()}]({p.relative_to(out).as_posix()})" for p in paths)


def _report_sweep(sweep: Sweep, out: Path, *, baseline: str | None, interval: str, effect: float | None,
                  resamples: int, seed: int, heatmap_trials: tuple[str, ...]) -> tuple[Analysis, Path]:
    out.mkdir(parents=True, exist_ok=True)
    _clear_previous(out)
    result = analyse(sweep, baseline, interval=interval, effect=effect, resamples=resamples, seed=seed)
    sections = [_equal_cost_section(result, out), _table_section(result, out), *_scatter_sections(result, out),
                *_method_sections(result, out),
                _curves_section(result, out),
                *_heatmap_sections(result, out, heatmap_trials), *_attention_function_sections(result, out),
                *importance_sections(result.sweep, result.variants, out)]
    result.summary.to_csv(out / "summary.csv", index=False)
    report = out / "report.md"
    report.write_text(_markdown(result, [s for s in sections if s is not None], out, resamples, seed))
    return result, report


def _clear_previous(out: Path) -> None:
    """Remove the figures of an earlier report in `out` (recognised by its report.md), so none is left stale."""
    if not (out / "report.md").is_file():
        return
    for pattern in ("heatmap_*", *(f"{stem}.*" for stem in FIGURE_STEMS)):
        for path in out.glob(pattern):
            if path.suffix in (".png", ".pdf"):
                path.unlink()
    for path in out.glob("equal_cost.*"):  # a report of the same store without a static family has none
        path.unlink()


def _interval_words(result: Analysis) -> str:
    return "t interval" if result.interval == "t" else "percentile-bootstrap interval"


def _table_section(result: Analysis, out: Path) -> Section:
    sweep = result.sweep
    base = result.baseline or "the baseline"
    table = ablation_table(result.summary, result.variants, result.groups, metric_label=metric_label(sweep.metric),
                           diff_unit=diff_unit(sweep.metric), baseline_name=result.baseline or "baseline",
                           methods=bool(result.methods) and not any("method" in g for g in result.groups),
                           effect=result.effect, resolution=resolution(sweep), equal_cost=result.equal_cost)
    markdown = to_markdown(table)
    (out / "ablation.md").write_text(markdown)
    caption = (f"{sweep.name}: {metric_label(sweep.metric)} per variant, mean over seeds with 95% "
               f"{_interval_words(result)}; paired difference to {base} with its 95% t interval, Holm-corrected "
               f"paired t-test p-values and the minimal detectable difference (MDD).")
    (out / "ablation.tex").write_text(to_latex(table, caption=caption, label=f"tab:{slug(sweep.name)}"))
    what = " and ".join(group_title(g) for g in result.groups) or "the sweep"
    sentence = (f"Every variant of {what} against the {result.baseline or 'baseline'} model: parameters, MACs per "
                f"image, mean {metric_label(sweep.metric)} over seeds, and the difference to the baseline paired by seed, with "
                f"what those seeds can detect. Also as [Markdown](ablation.md), [LaTeX](ablation.tex) and "
                f"[CSV](summary.csv).")
    return Section("Ablation table", sentence, text=markdown)


def _better(sweep: Sweep) -> str:
    return "lower is better" if sweep.goal == "minimize" else "higher is better"


def _scatter_sections(result: Analysis, out: Path) -> list[Section]:
    sweep, points = result.sweep, result.points
    sections = []
    for x, stem, what in PRICES:
        if x == "macs_per_image" and points.get(x, pd.Series(dtype=float)).isna().all():
            continue
        family = _family_curve(result, x)
        fig = params_accuracy(points, x=x, hue="label", hue_title=result.hue_title, colors=result.colors,
                              y_label=metric_label(sweep.metric), maximize=sweep.goal != "minimize", family=family)
        paths = save_figure(fig, out / stem)
        curve = (" The static family is the solid curve with its 95% band: the static model at each width, "
                 "joined linearly in log cost, which is what the equal-cost differences compare against."
                 if family is not None else "")
        sections.append(Section(
            f"Accuracy against {what}", f"Each variant's mean {metric_label(sweep.metric)} (bars: 95% "
            f"{_interval_words(result)} over seeds; {_better(sweep)}) against its {what}, coloured by "
            f"{result.hue_title or 'variant'}, with the {result.baseline or 'baseline'} model as a star and the "
            f"Pareto front dashed.{curve}", paths))
    return sections


def _family_curve(result: Analysis, column: str) -> pd.DataFrame | None:
    """The static family's points (mean and interval per width) along the cost `column`, or None without one."""
    cost = next(c for c, (name, _) in equal_cost.COSTS.items() if name == column)
    if cost not in result.equal_cost:
        return None
    return equal_cost.family_points(result.points, equal_cost.static_family(result.variants, cost))


def _equal_cost_section(result: Analysis, out: Path) -> Section | None:
    """Every variant against the static model at equal parameters and at equal MACs (equal_cost.md/.csv); a sweep
    with one static width gets a sentence saying what is missing; a sweep without a static model, nothing."""
    sweep = result.sweep
    statics = result.variants[result.variants["method"] == equal_cost.STATIC] if "method" in result.variants \
        else result.variants.iloc[0:0]
    if not result.equal_cost:
        if statics.empty or equal_cost.static_family(result.variants, "params").usable:
            return None  # no static model, or only static models
        return Section("Equal cost", "The sweep has the static model at one cost only, so no variant can be "
                       "compared with the static model at equal parameters or MACs: the differences below are at "
                       "equal width, whatever each variant costs. Add the static model at other widths (cases "
                       "with `model.kwargs.width`) spanning the variants' parameters and MACs.")
    table = equal_cost_table(result.equal_cost, diff_unit=diff_unit(sweep.metric))
    markdown = to_markdown(table)
    (out / "equal_cost.md").write_text(markdown)
    pd.concat(result.equal_cost.values(), ignore_index=True).to_csv(out / "equal_cost.csv", index=False)
    members = ", ".join(statics["variant"].astype(str))
    sentence = (f"Each variant against the static model at equal cost: its {metric_label(sweep.metric)} minus the "
                f"static family ({members}) interpolated to its parameter count and to its MACs per image, seed by "
                f"seed, with the same paired statistics as the ablation table. A variant whose cost lies outside "
                f"the family's span is out of range and gets no number. Also as [Markdown](equal_cost.md) and "
                f"[CSV](equal_cost.csv).")
    return Section("Equal cost", sentence, text=markdown)


def equal_cost_lines(result: Analysis) -> list[str]:
    """What `kwlab report` prints: each variant's difference to the static family at equal parameters and MACs."""
    if not result.equal_cost:
        return []
    unit = diff_unit(result.sweep.metric)
    lines = [f"{result.sweep.name}: {metric_label(result.sweep.metric)} against the static model at equal cost "
             f"(Δ{' in ' + unit if unit else ''}, 95% CI):"]
    names = dict.fromkeys(v for rows in result.equal_cost.values() for v in rows["variant"])
    for name in names:
        parts = []
        for cost, rows in result.equal_cost.items():
            if name not in set(rows["variant"]):  # a member of this cost's family only
                continue
            row = rows[rows["variant"] == name].iloc[0]
            value = (estimate(row["diff"], row["diff_low"], row["diff_high"], signed=True) if row["in_range"]
                     else "out of range")
            mark = " (resolved)" if row["resolved"] else ""
            parts.append(f"{value}{mark} at equal {equal_cost.SHORT[cost]} ({human_count(row['cost_value'])})")
        lines.append(f"  {name}: " + "; ".join(parts))
    return lines


def _method_sections(result: Analysis, out: Path) -> list[Section]:
    """With several convolution methods: accuracy against parameters and MACs, one colour and marker per method."""
    if not result.methods:
        return []
    sweep = result.sweep
    points = result.points.assign(method=lambda p: p["method"].fillna("—"))
    colors = palette([m for m in result.methods if m in set(points.loc[~points["is_baseline"], "method"])])
    sections = []
    for x, stem, what in PRICES:
        if points.get(x, pd.Series(dtype=float)).isna().all():
            continue
        fig = params_accuracy(points, x=x, hue="method", hue_title="method", colors=colors, markers=True,
                              y_label=metric_label(sweep.metric), maximize=sweep.goal != "minimize",
                              family=_family_curve(result, x))
        paths = save_figure(fig, out / f"{stem}_by_method")
        sections.append(Section(
            f"Methods: accuracy against {what}", f"The same points coloured by convolution method "
            f"({', '.join(result.methods)}): each variant's mean {metric_label(sweep.metric)} against its {what}, "
            f"the {result.baseline or 'baseline'} model as a star; the paired differences to it are in the ablation "
            f"table.", paths))
    return sections


def _curves_section(result: Analysis, out: Path) -> Section | None:
    sweep = result.sweep
    finished = set(sweep.finished["trial_id"])
    if sweep.epochs.empty or "val_top1" not in sweep.epochs:
        return None
    epochs = sweep.epochs[sweep.epochs["trial_id"].isin(finished)]
    epochs = epochs.merge(result.variants[["variant_id", "label"]], on="variant_id", how="left")
    fig = learning_curves(epochs, order=[label for label in result.variants["label"] if label in set(epochs["label"])],
                          hue_title=result.hue_title, colors=result.colors, metric="val_top1",
                          y_label=metric_label("val_top1"))
    paths = save_figure(fig, out / "learning_curves")
    return Section("Learning curves", "Validation top-1 and the temperature τ per epoch for each variant, mean over "
                   "its finished seeds with the band from the lowest to the highest seed.", paths)


def _heatmap_sections(result: Analysis, out: Path, trial_ids: tuple[str, ...]) -> list[Section]:
    sweep = result.sweep
    finished = sweep.finished
    sections, used = [], set()
    for row in result.variants.to_dict("records"):
        dirs = [sweep.trial_dir(t) for t in finished.loc[finished["variant_id"] == row["variant_id"], "trial_id"]]
        maps = attn.variant_attention(dirs)
        if not maps:
            continue
        seeds = _plural(next(iter(maps.values())).trials, "seed")
        primary = result.groups[0][0] if result.groups else None
        named = primary is not None and row["label"] == format_value(row.get(primary))
        stem = f"heatmap_{slug((short_name(primary) + '_' if named else '') + row['label'])}"
        stem = stem if stem not in used else f"{stem}_{row['variant_id']}"
        used.add(stem)
        title = f"{sweep.name}: {row['variant']}, mean α over the validation set and {seeds}"
        words = _heatmap_words(row.get("method"))
        paths = save_figure(attention_heatmaps(maps, title=title, **words["labels"]), out / stem)
        sections.append(Section(f"Attention heatmaps: {row['variant']}",
                                f"Mean attention α of variant {row['variant']} {words['sentence']}, averaged over "
                                f"{seeds}; red is positive, blue negative, white zero (a sequential scale when "
                                f"every α is positive).", paths))
    for trial_id in [t for t in trial_ids if t in set(sweep.trials["trial_id"])]:
        maps = attn.trial_attention(sweep.trial_dir(trial_id))
        if maps is None:
            sections.append(Section(f"Attention heatmaps: trial {trial_id}",
                                    f"Trial {trial_id} has no {store.ATTENTION} (a static or unfinished trial)."))
            continue
        meta = sweep.trials.loc[sweep.trials["trial_id"] == trial_id]
        name = f"{meta['variant'].iloc[0]} seed {meta['seed'].iloc[0]}" if len(meta) else trial_id
        words = _heatmap_words(meta["method"].iloc[0] if "method" in meta and len(meta) else None)
        paths = save_figure(attention_heatmaps(maps, title=f"{sweep.name}: {name} [{trial_id}]", **words["labels"]),
                            out / f"heatmap_trial_{slug(trial_id)}")
        sections.append(Section(f"Attention heatmaps: trial {trial_id}",
                                f"Mean attention α of the single trial {name} {words['sentence']}.", paths))
    return sections


def _heatmap_words(method: object) -> dict[str, Any]:
    """Axis labels and the sentence of a heatmap: KW warehouses (mixtures x cells), or another method's routing
    groups (layers x experts)."""
    if method is None or (isinstance(method, float) and np.isnan(method)) or method == "kw":
        return {"labels": {}, "sentence": "per warehouse (rows: the mixtures of its layers, lines between layers; "
                                          "columns: the warehouse's cells)"}
    return {"labels": {"row_label": "layer", "column_label": "expert (kernel) k",
                       "column_noun": "experts"},
            "sentence": f"per {method} routing group (rows: its layers, or their mixtures; columns: the experts, "
                        f"i.e. the kernels a layer mixes)"}


def _attention_key(result: Analysis) -> str | None:
    """The swept key of the attention function (e.g. kw.attention), if any."""
    return next((key for key in result.sweep.factors if short_name(key) == "attention"), None)


def _attention_variants(result: Analysis, key: str) -> pd.DataFrame:
    """The variants of the attention-function comparison: those that set `key`, and the KW variants that leave it
    to the config but are otherwise set like one of them (except for ATTENTION_KEYS); `key` of the latter is read
    from their trials' resolved config and named in their label. A spec's caf reference is often such a case, e.g.
    `budget=4` (labelled 'caf (budget=4)') beside `{kw.budget: 4, kw.attention: softmax}`."""
    table = result.variants
    others = [c for c in result.sweep.factors if c in table and short_name(c) not in ATTENTION_KEYS]
    signature = pd.Series([tuple(format_value(row[c]) for c in others) for row in table.to_dict("records")],
                          index=table.index)
    setting = table[key].notna()
    wanted = set(signature[setting])
    implicit = ~setting & (table["method"] == "kw") & signature.map(lambda s: s in wanted)
    resolved = table.loc[implicit, "variant_id"].map(lambda v: result.sweep.resolved(str(v), key))
    table = table.assign(**{key: table[key].where(setting, resolved)})
    unnamed = implicit & pd.Series([str(f) not in label for f, label in zip(table[key], table["label"])],
                                   index=table.index, dtype=bool)
    table = table.assign(label=table["label"].where(~unnamed, table[key].astype(str) + " (" + table["label"] + ")"))
    return table[setting | (implicit & table[key].notna())]


def _attention_function_sections(result: Analysis, out: Path) -> list[Section]:
    key = _attention_key(result)
    if key is None:
        return []
    sweep = result.sweep
    kw = _attention_variants(result, key)
    if kw[key].map(format_value).nunique() < 2:
        return []
    # a renamed variant ('caf (budget=4)') keeps the colour of its name in the other figures ('budget=4')
    colors = {**result.colors, **{label: result.colors.get(old, "C0") for label, old in
                                  zip(kw["label"], result.variants.loc[kw.index, "label"])}}
    reference = kw[kw["label"] == REFERENCE_ATTENTION]
    if reference.empty:  # the function's own variant: caf without another attention key (e.g. kw.init) set
        plain = kw[[c for c in sweep.factors if c in kw and c != key and short_name(c) in ATTENTION_KEYS]]
        reference = kw[(kw[key] == REFERENCE_ATTENTION) & plain.isna().all(axis=1)]
    if reference.empty:
        reference = kw[kw[key] == REFERENCE_ATTENTION]
    reference_id = str(reference["variant_id"].iloc[0]) if len(reference) else None
    trials = sweep.trials[sweep.trials["variant_id"].isin(kw["variant_id"])]
    versus = stats.summarize(trials, sweep.metric, reference_id, interval=result.interval)
    versus = kw[["variant_id", "label"]].merge(versus, on="variant_id")  # sweep order
    versus = pd.concat([versus[versus["variant_id"] == reference_id], versus[versus["variant_id"] != reference_id]])
    versus.insert(2, "attention", versus["variant_id"].map(kw.set_index("variant_id")[key]))
    versus.drop(columns=["variant_id"]).rename(columns={"is_baseline": "is_reference"}).to_csv(
        out / "attention_functions.csv", index=False)
    reference_label = str(reference["label"].iloc[0]) if len(reference) else REFERENCE_ATTENTION
    base = result.summary[result.summary["is_baseline"]]
    fig = attention_function_comparison(
        versus, reference=reference_label, y_label=metric_label(sweep.metric), diff_unit=diff_unit(sweep.metric),
        baseline_mean=float(base["mean"].iloc[0]) if len(base) else None, baseline_label=result.baseline or "baseline",
        colors=colors)
    sections = [Section("Attention functions", f"Mean {metric_label(sweep.metric)} per attention function and the "
                        f"difference of each to {reference_label}, paired by seed (95% t interval, Holm-corrected "
                        f"paired t-test across the functions), with the {result.baseline or 'baseline'} model "
                        f"dotted ([CSV](attention_functions.csv)).",
                        save_figure(fig, out / "attention_functions"))]
    finished = sweep.finished
    maps = {}
    for row in kw.set_index("variant_id").loc[versus["variant_id"]].reset_index().to_dict("records"):
        ids = finished.loc[finished["variant_id"] == row["variant_id"], "trial_id"]
        found = {t: m for t in ids if (m := attn.trial_attention(sweep.trial_dir(t))) is not None}
        if found:
            maps[row["label"]] = found
    if maps:
        values = attn.attention_values(maps)
        shares = attn.value_summary(values)
        fig = attention_value_distribution(values, shares, colors=colors)
        sections.append(Section("Attention values per function", "The distribution of mean attention values α "
                                "per attention function over all warehouses and seeds, with the share that is "
                                "negative and the share that is near zero (below 1% of its row's largest |α|).",
                                save_figure(fig, out / "attention_values")))
    return sections


def _status_lines(sweep: Sweep, order: list[str]) -> list[str]:
    state = progress(sweep)
    rank = {name: i for i, name in enumerate(order)}
    state.unfinished = state.unfinished.assign(_rank=state.unfinished["variant"].map(rank)).sort_values(
        ["_rank", "seed"], kind="stable")
    total = len(sweep.trials)
    counts = state.counts
    lines = [f"{counts['finished']} of {total} trials finished, {counts['stopped']} stopped early, "
             f"{counts['failed']} failed, {counts['running']} running, {counts['pending']} pending."]
    if counts["finished"] < total or state.missing:
        lines[0] += " Every number below uses the finished trials only."
    trials = sweep.trials
    stale = trials[[v.endswith(f"[{i}]") for v, i in zip(trials["variant"], trials["variant_id"], strict=True)]]
    if len(stale):
        lines[0] += (f" {_plural(len(stale), 'trial')} of the store belong to another config of a variant (same "
                     f"name, different variant_id: shown as 'name [variant_id]'), e.g. from an earlier run with "
                     f"other settings.")
    if len(state.stopped):
        lines += ["", "Stopped early by the scheduler (left out of the statistics, which pair finished seeds only):",
                  ""]
        for row in state.stopped.to_dict("records"):
            after = f" after epoch {int(row['epoch'])}" if row["epoch"] is not None else ""
            lines.append(f"- `{row['trial_id']}` {row['variant']}, seed {row['seed']}: {row['reason']}{after}")
    if len(state.failed):
        lines += ["", "Failed trials:", ""]
        for row in state.failed.to_dict("records"):
            error = str(row["error"] or "no error recorded").splitlines()[0][:200]
            lines.append(f"- `{row['trial_id']}` {row['variant']}, seed {row['seed']}: {error}")
    if len(state.unfinished):
        lines += ["", "Not finished yet:", ""]
        for row in state.unfinished.to_dict("records"):
            done = row.get("epochs_done")
            running = row["status"] == "running" and done is not None and np.isfinite(done)
            epochs = f", {_plural(int(done), 'epoch')} done" if running else ""
            lines.append(f"- `{row['trial_id']}` {row['variant']}, seed {row['seed']} ({row['status']}{epochs})")
    if state.missing:
        lines += ["", "Missing (seeds the spec lists with no trial in the store):", ""]
        lines += [f"- {variant}, seed {seed}" for variant, seed in state.missing]
    return lines


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _provenance(sweep: Sweep) -> str:
    manifest = sweep.manifest
    git = manifest.get("git") or {}
    commit = git.get("commit")
    version = (manifest.get("versions") or {}).get("kwlab")
    parts = [f"kwlab {version}"] if version else [f"no {store.MANIFEST}"] if not manifest else []
    if commit:
        parts.append(f"git {commit[:10]}{' (dirty)' if git.get('dirty') else ''}")
    if manifest.get("command"):
        parts.append(f"`{manifest['command']}`")
    if manifest.get("profile"):
        parts.append(f"profile {manifest['profile']}")
    return ", ".join(parts)


def _method_text(result: Analysis, resamples: int, seed: int) -> str:
    """The Method paragraph: metric, direction, resolution, intervals, test, correction, MDD, what is not
    estimable."""
    sweep = result.sweep
    compared = int(result.summary["p"].notna().sum()) if not result.summary.empty else 0
    unit = diff_unit(sweep.metric) or "the metric's unit"
    found = resolution(sweep)
    interval = ("a 95% t interval (mean ± t(n−1, 0.975)·sd/√n)" if result.interval == "t" else
                f"a 95% percentile-bootstrap interval ({resamples:,} resamples, generator seed {seed}; with three "
                f"seeds it is the range of the seeds)")
    scaled = " The store holds it as fractions; it is shown in percent." if sweep.scaled_to_percent else ""
    text = (f"{sweep.metric_note}{scaled} For {metric_label(sweep.metric)} {_better(sweep)}"
            f"{', so a negative difference is an improvement' if sweep.goal == 'minimize' else ''}. "
            + (f"Resolution: {found}; a difference smaller than that is within one image. " if found else "")
            + f"Each variant's mean over its seeds comes with {interval}. Differences to the baseline "
            f"({result.baseline or 'none'}) are taken seed by seed on the seeds both finished (stopped and failed "
            f"trials are left out), with the paired 95% t interval and the two-sided paired t-test on the same t, "
            f"so a difference is *resolved* exactly when its interval excludes 0 (unadjusted p < 0.05); p (Holm) is "
            f"Holm-corrected across the variants tested against the baseline ({compared} so far). With fewer than "
            f"{stats.MIN_SEEDS} paired seeds, or paired differences identical on every seed, there is no estimate "
            f"of the seed-to-seed noise: the interval, p and MDD are not estimable and shown as a dash with a "
            f"footnote. MDD is the minimal detectable difference: the smallest true difference (in {unit}) that "
            f"the paired seeds detect with {power.POWER:.0%} power at α = {power.ALPHA:g} (two-sided), from the "
            f"observed sd of the paired differences (noncentral t); for an unresolved difference, 'seeds for Δ' "
            f"is how many paired seeds would resolve the observed difference with that power (`kwlab power` "
            f"prints the same for any effect).")
    if result.equal_cost:
        text += (" At equal cost: the sweep's static variants (the static family) are interpolated, seed by seed and "
                 "linearly in log cost between the two nearest widths, to each variant's parameter count and to "
                 "its MACs per image, and the variant is compared with that interpolated static model with the "
                 "same paired t interval, test, Holm correction (across the variants at each cost) and MDD; a "
                 "variant whose cost lies outside the family's span is out of range and never extrapolated.")
    fixed = fixed_factors(result.variants, sweep.factors) if not result.variants.empty else {}
    fixed = {k: v for k, v in fixed.items() if short_name(k) != "kw"}
    if fixed:
        text += " Fixed wherever set: " + ", ".join(f"{short_name(k)} = {v}" for k, v in fixed.items()) + "."
    return text


def _markdown(result: Analysis, sections: list[Section], out: Path, resamples: int, seed: int) -> str:
    sweep = result.sweep
    lines = [f"# {sweep.name}", ""]
    if sweep.description:
        lines += [sweep.description, ""]
    lines += [f"Results store `{sweep.path}` ({_provenance(sweep)}); report written "
              f"{dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')} by `kwlab report`.", ""]
    lines += ["## Status", "", *_status_lines(sweep, list(result.variants.get("variant", []))), ""]
    notes = result.summary.loc[result.summary["note"].astype(bool), ["variant", "note"]] \
        if not result.summary.empty else pd.DataFrame()
    lines += ["## Method", "", _method_text(result, resamples, seed)]
    if len(notes):
        lines += ["", "Numbers left out, and why:", ""]
        lines += [f"- {row['variant']}: {row['note']}" for row in notes.to_dict("records")]
    lines.append("")
    for section in sections:
        lines += [f"## {section.heading}", "", section.sentence, ""]
        if section.text:
            lines += [section.text, ""]
        for png in [p for p in section.images if p.suffix == ".png"]:
            lines += [f"![{section.heading}]({png.relative_to(out).as_posix()})", "",
                      _figure_links(section.images, out), ""]
    return "\n".join(lines)


def write_report(
    stores: list[str | Path],
    out: str | Path | None = None,
    *,
    metric: str | None = None,
    baseline: str | None = None,
    interval: str = "t",
    effect: float | None = None,
    resamples: int = stats.RESAMPLES,
    seed: int = stats.SEED,
    heatmap_trials: tuple[str, ...] = (),
    echo: Callable[[str], None] | None = None,
) -> Path:
    """One store: its report (in `out`, default STORE/report). Several: each in OUT/<name>/ and a combined
    report.md with one parameters-vs-accuracy figure over all of them (OUT defaults to the stores' parent/report).

    `metric` defaults to test_top1 (best_val_top1 for a store without test metrics); `interval` is the interval of
    each variant's mean ("t" or "bootstrap", with `resamples` and `seed`); `effect` adds the seeds needed to
    resolve a difference of that size; `echo` receives the lines of each sweep's equal-cost differences (what
    `kwlab report` prints)."""
    if heatmap_trials:
        known = set().union(*(_trial_ids(Path(store)) for store in stores))
        unknown = [t for t in heatmap_trials if t not in known]
        if unknown:
            raise KWLabError(f"--trial: {', '.join(unknown)} is not a trial of {', '.join(map(str, stores))}")
    say = echo or (lambda line: None)
    if len(stores) == 1:
        sweep = load_sweep(stores[0], metric)
        result, report = _report_sweep(sweep, Path(out) if out is not None else sweep.path / "report",
                                       baseline=baseline, interval=interval, effect=effect, resamples=resamples,
                                       seed=seed, heatmap_trials=heatmap_trials)
        for line in equal_cost_lines(result):
            say(line)
        return report
    paths = [Path(s) for s in stores]
    out = Path(out) if out is not None else _common_parent(paths) / "report"
    out.mkdir(parents=True, exist_ok=True)
    results, reports, used = [], [], set()
    for path in paths:
        sweep = load_sweep(path, metric)
        name = sweep.name if sweep.name not in used else f"{sweep.name}_{len(used)}"
        used.add(name)
        result, report = _report_sweep(sweep, out / name, baseline=baseline, interval=interval, effect=effect,
                                       resamples=resamples, seed=seed, heatmap_trials=heatmap_trials)
        results.append((name, result))
        reports.append((name, report))
        for line in equal_cost_lines(result):
            say(line)
    return _write_combined(results, reports, out)


def _trial_ids(store: Path) -> set[str]:
    return set(Store(store).trial_ids()) if Store(store).exists() else set()


def _common_parent(paths: list[Path]) -> Path:
    return Path(os.path.commonpath([p.resolve().parent for p in paths]))


def _write_combined(results: list[tuple[str, Analysis]], reports: list[tuple[str, Path]], out: Path) -> Path:
    frames = [r.points.assign(sweep=name) for name, r in results]
    points = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not points.empty:  # a baseline shared by several sweeps (same config) is drawn once
        shared = points["is_baseline"] & points.duplicated("variant_id")
        points = points[~shared]
    metrics = {r.sweep.metric for _, r in results}
    metric = next(iter(metrics)) if len(metrics) == 1 else "metric"
    lines = ["# Sweeps compared", "", "Reports: " + ", ".join(
        f"[{name}]({path.relative_to(out).as_posix()})" for name, path in reports) + ".", ""]
    if len(metrics) > 1:
        lines += ["The sweeps compare different metrics (" + "; ".join(
            f"{name}: {describe_metric(r.sweep.metric)}" for name, r in results) + "), so the figures below put "
            "different numbers on one axis; rerun with `--metric` to compare them.", ""]
    for x, stem, what in PRICES:
        if points.empty or x not in points or points[x].isna().all():
            continue
        fig = params_accuracy(points, x=x, hue="sweep", hue_title="sweep", markers=True, y_label=metric_label(metric),
                              maximize=natural_goal(metric) != "minimize", width=PAGE_WIDTH / 1.6, height=3.0)
        paths = save_figure(fig, out / stem)
        lines += [f"## Accuracy against {what}", "",
                  f"Every variant of the sweeps {', '.join(n for n, _ in results)}: mean {metric_label(metric)} "
                  f"over seeds (bars: 95% interval) against its {what}, one colour and marker per sweep, baselines "
                  f"as stars, the Pareto front over all of them dashed.", "",
                  f"![Accuracy against {what}]({paths[0].relative_to(out).as_posix()})", "",
                  _figure_links(paths, out), ""]
    rows = [{"sweep": name, "variant": r["variant"], "params": human_count(r.get("params_total", np.nan)),
             f"{metric_label(metric)} [95% CI]": estimate(r["mean"], r["ci_low"], r["ci_high"]),
             "seeds": str(r["n_seeds"])} for name, result in results for r in result.points.to_dict("records")]
    if rows:
        lines += ["## The points", "", "The variants plotted above, sweep by sweep.", "",
                  to_markdown(pd.DataFrame(rows)), ""]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return report
