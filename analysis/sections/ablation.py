"""The report's ablation table: every variant against the baseline (ablation.md, ablation.tex, summary.csv)."""

from __future__ import annotations

from pathlib import Path

from analysis.analyse import Analysis
from analysis.section import Part, Section, slug
from analysis.sweep import diff_unit, group_title, metric_label, resolution
from analysis.tables import ablation_table, to_latex, to_markdown


def write(result: Analysis, out: Path) -> list[Section]:
    """The table as Markdown and LaTeX, the raw numbers as CSV, and the section showing the Markdown."""
    sweep = result.sweep
    base = result.baseline or "the baseline"
    table = ablation_table(result.summary, result.variants, result.groups, metric_label=metric_label(sweep.metric),
                           diff_unit=diff_unit(sweep.metric), baseline_name=result.baseline or "baseline",
                           methods=bool(result.methods) and not any("method" in g for g in result.groups),
                           effect=result.effect, resolution=resolution(sweep), equal_cost=result.equal_cost,
                           notes=result.notes)
    markdown = to_markdown(table)
    (out / "ablation.md").write_text(markdown)
    caption = (f"{sweep.name}: {metric_label(sweep.metric)} per variant, mean over seeds with 95% "
               f"{result.interval_words}; paired difference to {base} with its 95% t interval, Holm-corrected "
               f"paired t-test p-values and the minimal detectable difference (MDD).")
    (out / "ablation.tex").write_text(to_latex(table, caption=caption, label=f"tab:{slug(sweep.name)}"))
    result.summary.to_csv(out / "summary.csv", index=False)
    what = " and ".join(group_title(g) for g in result.groups) or "the sweep"
    lengths = (f" With several training lengths, every variant is compared here with {base} whatever its length; "
               f"Training length compares each with the baseline's match at its own length."
               if result.schedules is not None else "")
    sentence = (f"Every variant of {what} against the {result.baseline or 'baseline'} model: parameters, MACs per "
                f"image, mean {metric_label(sweep.metric)} over seeds, and the difference to the baseline paired by "
                f"seed, with what those seeds can detect.{lengths} Also as [Markdown](ablation.md), "
                f"[LaTeX](ablation.tex) and [CSV](summary.csv).")
    return [Section("Ablation table", sentence, text=markdown)]


PART = Part("ablation table", write, files=("ablation.md", "ablation.tex", "summary.csv"))
