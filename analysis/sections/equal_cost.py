"""The report's equal-cost section: every variant against the static model at equal parameters and at equal MACs
(equal_cost.md/.csv), and the lines `kwlab report` prints for it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis import equal_cost
from analysis.analyse import Analysis
from analysis.section import Part, Section
from analysis.style import human_count
from analysis.sweep import diff_unit, metric_label
from analysis.tables import equal_cost_table, estimate, to_markdown


def write(result: Analysis, out: Path) -> list[Section]:
    """Every variant against the static model at equal cost; a sweep with one static width gets a sentence saying
    what is missing; a sweep without a static model, nothing."""
    sweep = result.sweep
    statics = result.variants[result.variants["method"] == equal_cost.STATIC] if "method" in result.variants \
        else result.variants.iloc[0:0]
    if not result.equal_cost:
        if statics.empty or equal_cost.static_family(result.variants, "params").usable:
            return []  # no static model, or only static models
        return [Section("Equal cost", "The sweep has the static model at one cost only, so no variant can be "
                        "compared with the static model at equal parameters or MACs: the differences below are at "
                        "equal width, whatever each variant costs. Add the static model at other widths (cases "
                        "with `model.kwargs.width`) spanning the variants' parameters and MACs.")]
    table = equal_cost_table(result.equal_cost, diff_unit=diff_unit(sweep.metric))
    markdown = to_markdown(table)
    (out / "equal_cost.md").write_text(markdown)
    pd.concat(result.equal_cost.values(), ignore_index=True).to_csv(out / "equal_cost.csv", index=False)
    members = ", ".join(statics["variant"].astype(str))
    within = (" Each variant is compared with the static family of its own training length, never across lengths."
              if result.schedules else "")
    sentence = (f"Each variant against the static model at equal cost: its {metric_label(sweep.metric)} minus the "
                f"static family ({members}) interpolated to its parameter count and to its MACs per image, seed by "
                f"seed, with the same paired statistics as the ablation table. A variant whose cost lies outside "
                f"the family's span is out of range and gets no number.{within} Also as [Markdown](equal_cost.md) "
                f"and [CSV](equal_cost.csv).")
    return [Section("Equal cost", sentence, text=markdown)]


def lines(result: Analysis) -> list[str]:
    """What `kwlab report` prints: each variant's difference to the static family at equal parameters and MACs."""
    if not result.equal_cost:
        return []
    out = [result.printed_title("against the static model at equal cost")]
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
        out.append(f"  {name}: " + "; ".join(parts))
    return out


PART = Part("equal cost", write, files=("equal_cost.md", "equal_cost.csv"), lines=lines)
