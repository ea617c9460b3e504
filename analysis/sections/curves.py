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
    fig = learning_curves(epochs, order=[label for label in result.variants["label"] if label in set(epochs["label"])],
                          hue_title=result.hue_title, colors=result.colors, markers=result.markers,
                          metric="val_top1", y_label=metric_label("val_top1"))
    return [Section("Learning curves", "Validation top-1 and the temperature τ per epoch for each variant, mean over "
                    "its finished seeds with the band from the lowest to the highest seed.",
                    save_figure(fig, out / "learning_curves"))]


PART = Part("learning curves", write, figures=("learning_curves",))
