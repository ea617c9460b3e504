"""The report's accuracy against price: each variant's mean metric against its parameter count and against its MACs
per image, with the static family as a curve."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis import equal_cost
from analysis.analyse import Analysis
from analysis.figures.params_accuracy import params_accuracy
from analysis.section import Part, Section
from analysis.style import save_figure
from analysis.sweep import metric_label

PRICES = (("params_total", "params_accuracy", "parameter count"),  # (column, figure stem, in words)
          ("macs_per_image", "macs_accuracy", "MACs per image"))


def priced(points: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The PRICES to draw: parameters always (a sweep with nothing finished says so in the figure), MACs where the
    points have them (an old store may not)."""
    return [p for p in PRICES if p[0] != "macs_per_image" or not points.get(p[0], pd.Series(dtype=float)).isna().all()]


def family_curve(result: Analysis, column: str) -> pd.DataFrame | None:
    """The static family's points (mean and interval per width) along the cost `column`, or None without one; in a
    sweep of several training lengths, the family of the longest."""
    cost = next(c for c, (name, _) in equal_cost.COSTS.items() if name == column)
    if cost not in result.equal_cost:
        return None
    members = result.variants
    if result.schedules is not None:
        longest = result.schedules.schedule[result.schedules.schedule == result.schedules.longest].index
        members = members[members["variant_id"].isin(longest)]
    return equal_cost.family_points(result.points, equal_cost.static_family(members, cost))


def write(result: Analysis, out: Path) -> list[Section]:
    """One figure per price, coloured by the first varying factor (or by family)."""
    sweep, points = result.sweep, result.points
    sections = []
    longest = f" at {result.schedules.longest} epochs" if result.schedules is not None else ""
    for x, stem, what in priced(points):
        family = family_curve(result, x)
        fig = params_accuracy(points, x=x, hue="label", hue_title=result.hue_title, colors=result.colors,
                              markers=result.markers, y_label=metric_label(sweep.metric),
                              maximize=sweep.goal != "minimize", family=family)
        curve = (f" The static family{longest} is the solid curve with its 95% band: the static model at each "
                 f"width, joined linearly in log cost, which is what the equal-cost differences compare against."
                 if family is not None else "")
        sections.append(Section(
            f"Accuracy against {what}", f"Each variant's mean {metric_label(sweep.metric)} (bars: 95% "
            f"{result.interval_words} over seeds; {result.better}) against its {what}, coloured by "
            f"{result.hue_title or 'variant'}, with the {result.baseline or 'baseline'} model as a star and the "
            f"Pareto front dashed.{curve}", save_figure(fig, out / stem)))
    return sections


PART = Part("accuracy against price", write, figures=tuple(stem for _, stem, _ in PRICES))
