"""The report's method comparison: accuracy against parameters and MACs, one colour and marker per convolution
method, when a sweep compares several."""

from __future__ import annotations

from pathlib import Path

from analysis.analyse import Analysis
from analysis.figures.params_accuracy import params_accuracy
from analysis.section import Part, Section
from analysis.sections.prices import PRICES, family_curve, priced
from analysis.style import marker_cycle, palette, save_figure
from analysis.sweep import metric_label


def write(result: Analysis, out: Path) -> list[Section]:
    """With several convolution methods: accuracy against parameters and MACs by method."""
    if not result.methods:
        return []
    sweep = result.sweep
    points = result.points.assign(method=lambda p: p["method"].fillna("—"))
    shown = [m for m in result.methods if m in set(points.loc[~points["is_baseline"], "method"])]
    sections = []
    for x, stem, what in priced(points):
        fig = params_accuracy(points, x=x, hue="method", hue_title="method", colors=palette(shown),
                              markers=marker_cycle(shown), y_label=metric_label(sweep.metric),
                              maximize=sweep.goal != "minimize", family=family_curve(result, x))
        sections.append(Section(
            f"Methods: accuracy against {what}", f"The same points coloured by convolution method "
            f"({', '.join(result.methods)}): each variant's mean {metric_label(sweep.metric)} against its {what}, "
            f"the {result.baseline or 'baseline'} model as a star; the paired differences to it are in the ablation "
            f"table.", save_figure(fig, out / f"{stem}_by_method")))
    return sections


PART = Part("methods", write, figures=tuple(f"{stem}_by_method" for _, stem, _ in PRICES))
