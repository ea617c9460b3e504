"""The report's learning curves: validation top-1 and the temperature per epoch for each variant."""

from __future__ import annotations

from pathlib import Path

from analysis.analyse import Analysis
from analysis.figures.curves import learning_curves
from analysis.section import Part, Section
from analysis.style import save_figure
from analysis.sweep import metric_label


def write(result: Analysis, out: Path) -> list[Section]:
    """The curves of the finished trials, in the variants' colours and markers."""
    sweep = result.sweep
    if sweep.epochs.empty or "val_top1" not in sweep.epochs:
        return []
    epochs = sweep.epochs[sweep.epochs["trial_id"].isin(set(sweep.finished["trial_id"]))]
    epochs = epochs.merge(result.variants[["variant_id", "label"]], on="variant_id", how="left")
    present = set(epochs["label"])
    order = [label for label in result.variants["label"] if label in present]
    drawn = order if len(order) <= MOST_CURVES else _best(result, order)
    fig = learning_curves(epochs[epochs["label"].isin(set(drawn))], order=drawn, hue_title=result.hue_title,
                          colors=result.colors, markers=result.markers, metric="val_top1",
                          y_label=metric_label("val_top1"))
    which = ("each variant" if drawn == order else f"the baseline and the {len(drawn) - 1} best of {len(order):,} "
             f"variants by {metric_label(sweep.metric)}")
    return [Section("Learning curves", f"Validation top-1 and the temperature τ per epoch for {which}, mean over "
                    "its finished seeds with the band from the lowest to the highest seed.",
                    save_figure(fig, out / "learning_curves"))]


MOST_CURVES = 30  # a sweep of more variants draws its baseline and best ones: hundreds of curves read as one


def _best(result: Analysis, order: list[str]) -> list[str]:
    """The baseline and the best variants by the report's metric (in its direction), MOST_CURVES in all, in sweep
    order."""
    points = result.points.dropna(subset=["mean"])
    ranked = points.sort_values("mean", ascending=result.sweep.goal == "minimize")["label"].tolist()
    baseline = [label for label in points.loc[points["is_baseline"], "label"] if label in order]
    chosen = set(baseline) | set([label for label in ranked if label in order][: MOST_CURVES - len(baseline)])
    return [label for label in order if label in chosen]


PART = Part("learning curves", write, figures=("learning_curves",))
