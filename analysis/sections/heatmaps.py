"""The report's attention heatmaps: per variant with an attention.npz, its mean attention averaged over its seeds,
and per trial asked for with `--trial`; rows and columns named by the method's own declaration."""

from __future__ import annotations

from pathlib import Path
from analysis import attention as attn
from analysis import declared
from analysis.analyse import Analysis
from analysis.figures.heatmaps import attention_heatmaps
from analysis.section import Part, Section, slug
from analysis.style import plural, save_figure
from analysis.sweep import format_value, short_name
from kwlab import store


def write(result: Analysis, out: Path) -> list[Section]:
    """A figure per variant with attention, then per trial of `result.heatmap_trials`."""
    sweep = result.sweep
    if sweep.store is not None and sweep.store.tables_only():
        return [Section("Attention heatmaps", "This store is a study's tables without its trial folders; the attention "
                                              "statistics are kept in the trial folders, so there are no heatmaps.")]
    finished = sweep.finished
    sections, used = [], set()
    for row in result.variants.to_dict("records"):
        dirs = [sweep.trial_dir(t) for t in finished.loc[finished["variant_id"] == row["variant_id"], "trial_id"]]
        maps = attn.variant_attention(dirs)
        if not maps:
            continue
        seeds = plural(next(iter(maps.values())).trials, "seed")
        primary = result.groups[0][0] if result.groups else None
        named = primary is not None and row["label"] == format_value(row.get(primary))
        stem = f"heatmap_{slug((short_name(primary) + '_' if named else '') + row['label'])}"
        stem = stem if stem not in used else f"{stem}_{row['variant_id']}"
        used.add(stem)
        axes = declared.attention_axes(row.get("method"))
        title = f"{sweep.name}: {row['variant']}, mean α over the validation set and {seeds}"
        paths = save_figure(attention_heatmaps(maps, title=title, **declared.heatmap_labels(axes)), out / stem)
        sections.append(Section(f"Attention heatmaps: {row['variant']}",
                                f"Mean attention α of variant {row['variant']} {axes.sentence}, averaged over "
                                f"{seeds}; red is positive, blue negative, white zero (a sequential scale when "
                                f"every α is positive).", paths))
    return sections + [_trial_section(result, trial_id, out) for trial_id in result.heatmap_trials
                       if trial_id in set(sweep.trials["trial_id"])]


def _trial_section(result: Analysis, trial_id: str, out: Path) -> Section:
    """The heatmaps of one trial, or why it has none."""
    sweep = result.sweep
    maps = attn.trial_attention(sweep.trial_dir(trial_id))
    if maps is None:
        return Section(f"Attention heatmaps: trial {trial_id}",
                       f"Trial {trial_id} has no {store.ATTENTION} (a static or unfinished trial).")
    meta = sweep.trials.loc[sweep.trials["trial_id"] == trial_id]
    name = f"{meta['variant'].iloc[0]} seed {meta['seed'].iloc[0]}" if len(meta) else trial_id
    axes = declared.attention_axes(meta["method"].iloc[0] if "method" in meta and len(meta) else None)
    paths = save_figure(attention_heatmaps(maps, title=f"{sweep.name}: {name} [{trial_id}]",
                                           **declared.heatmap_labels(axes)), out / f"heatmap_trial_{slug(trial_id)}")
    return Section(f"Attention heatmaps: trial {trial_id}", f"Mean attention α of the single trial {name} "
                   f"{axes.sentence}.", paths)


PART = Part("attention heatmaps", write, figures=("heatmap_*",))
