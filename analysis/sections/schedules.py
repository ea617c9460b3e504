"""The report's training-length section, for a sweep of several schedules (analysis.schedules): each comparison per
schedule and the change of each gap from the shortest to the longest (schedules.md/.csv, schedules.png), and the
lines `kwlab report` prints for it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.analyse import Analysis
from analysis.figures.schedules import gap_by_schedule
from analysis.schedules import COMPARISONS, Schedules
from analysis.section import Part, Section
from analysis.style import plural, save_figure
from analysis.sweep import diff_unit
from analysis.tables import estimate, schedule_table, to_markdown


def group_styles(result: Analysis, found: Schedules) -> tuple[dict[str, str], dict[str, str]]:
    """A colour and a marker per group: those of its variant at the longest schedule it has (the other figures')."""
    label = dict(zip(result.variants["variant_id"], result.variants["label"], strict=True))
    last = found.rows.sort_values("epochs").drop_duplicates("group", keep="last")
    labels = {row["group"]: label.get(row["variant_id"]) for row in last.to_dict("records")}
    return ({g: result.colors.get(lab, "C0") for g, lab in labels.items()},
            {g: result.markers.get(lab, "o") for g, lab in labels.items()})


def _change_words(row: dict) -> str:
    return estimate(row["diff"], row["diff_low"], row["diff_high"], signed=True) + (
        " (resolved)" if row["resolved"] else "")


def write(result: Analysis, out: Path) -> list[Section]:
    """The table, its CSV and the figure of the differences against the training length."""
    found = result.schedules
    if found is None:
        return []
    sweep = result.sweep
    unit = diff_unit(sweep.metric)
    markdown = to_markdown(schedule_table(found, diff_unit=unit))
    (out / "schedules.md").write_text(markdown)
    pd.concat([found.rows.assign(kind="at"), found.changes.assign(kind="change")], ignore_index=True).to_csv(
        out / "schedules.csv", index=False)
    colors, markers = group_styles(result, found)
    fig = gap_by_schedule(found.rows, titles=COMPARISONS, colors=colors, markers=markers,
                          y_label=f"difference{' (' + unit + ')' if unit else ''}")
    resolved = found.changes[found.changes["resolved"]]
    moved = ("; ".join(f"{row['group']} at {COMPARISONS[row['comparison']]}: {_change_words(row)}"
                       for row in resolved.to_dict("records")) if len(resolved) else "none")
    lengths = ", ".join(str(n) for n in found.lengths)
    sentence = (f"The sweep trains at {len(found.lengths)} training lengths ({lengths} epochs). Each variant at each "
                f"length against the {result.baseline or 'baseline'} model's match at that length (same width) and "
                f"against that length's static family interpolated to its parameters and MACs (equal cost; never "
                f"across lengths), paired by seed. Whether the gap moves with the length: each seed's difference at "
                f"{found.longest} epochs minus its difference at {found.lengths[0]}, with its paired t interval and "
                f"Holm-corrected p. Resolved changes: {moved}. Variants are matched across lengths by their config "
                f"without `epochs`. Also as [Markdown](schedules.md) and [CSV](schedules.csv).")
    return [Section("Training length", sentence, save_figure(fig, out / "schedules"), text=markdown)]


def lines(result: Analysis) -> list[str]:
    """What `kwlab report` prints: each comparison's difference per schedule and its change with length."""
    found = result.schedules
    if found is None:
        return []
    out = [result.printed_title("per training length", f"; change: each seed's Δ at {found.longest} epochs minus "
                                                       f"at {found.lengths[0]}")]
    changes = found.changes.set_index(["group", "comparison"])
    for (group, comparison), rows in found.rows.groupby(["group", "comparison"], sort=False):
        parts = [f"{estimate(r['diff'], r['diff_low'], r['diff_high'], signed=True)} at {plural(r['epochs'], 'epoch')}"
                 for r in rows.sort_values("epochs").to_dict("records")]
        if (group, comparison) in changes.index:
            parts.append(f"change {_change_words(changes.loc[(group, comparison)].to_dict())}")
        out.append(f"  {group} at {COMPARISONS[comparison]}: " + "; ".join(parts))
    return out


PART = Part("training length", write, figures=("schedules",), files=("schedules.md", "schedules.csv"), lines=lines)
