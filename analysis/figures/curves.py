"""Learning curves: validation top-1 and the temperature tau over epochs, mean and min-max band over seeds, per
variant."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.style import COLUMN_WIDTH, figure_legend, new_figure, palette, paper_style


def learning_curves(
    epochs: pd.DataFrame,
    *,
    hue: str = "label",
    order: list[str] | None = None,
    hue_title: str | None = None,
    colors: dict[str, str] | None = None,
    markers: dict[str, str] | None = None,
    metric: str = "val_top1",
    y_label: str = "val. top-1 (%)",
    width: float = COLUMN_WIDTH,
) -> Figure:
    """Per `hue` value: the mean over seeds of `metric` (top panel) and of tau (bottom panel, when recorded) per
    epoch, with a band from the lowest to the highest seed, in its colour and marker (`colors`, `markers`; at most
    about ten marks a line). `epochs`: tidy rows with hue, seed, epoch, metric, tau."""
    order = order or (list(dict.fromkeys(epochs[hue])) if not epochs.empty else [])
    colors = colors or palette(order)
    has_tau = "tau" in epochs and pd.to_numeric(epochs["tau"], errors="coerce").notna().any()
    with paper_style():
        fig, axes = new_figure(width, 3.9 if has_tau else 2.6, nrows=2 if has_tau else 1, sharex=True,
                               height_ratios=[2, 1] if has_tau else None)
        panels = [(axes[0, 0], metric, y_label)] + ([(axes[1, 0], "tau", "temperature τ")] if has_tau else [])
        if epochs.empty:
            axes[0, 0].text(0.5, 0.5, "no epoch recorded yet", ha="center", va="center",
                            transform=axes[0, 0].transAxes)
        count = epochs["epoch"].nunique() if not epochs.empty else 0
        few = count <= 12
        for ax, column, label in panels:
            curves = {name: _over_seeds(epochs[epochs[hue] == name], column) for name in order}
            curves = {name: stats for name, stats in curves.items() if not stats.empty}
            if column == "tau" and len(curves) > 1 and _identical(list(curves.values())):
                # one schedule for every variant with a temperature: one line, instead of lines hiding each other
                stats = next(iter(curves.values()))
                ax.plot(stats.index, stats["mean"], color="0.3", marker="o" if few else None, markersize=2.5)
                ax.text(0.98, 0.92, "same schedule for every variant", transform=ax.transAxes, ha="right",
                        va="top", fontsize=6.5, color="0.3")
                curves = {}
            for name, stats in curves.items():
                x = stats.index.to_numpy(dtype=float)
                ax.plot(x, stats["mean"], color=colors.get(name), label=str(name),
                        marker=(markers or {}).get(name, "o"), markevery=max(1, count // 10), markersize=2.5)
                if (stats["count"] > 1).any():
                    ax.fill_between(x, stats["min"], stats["max"], color=colors.get(name), alpha=0.18, linewidth=0)
            ax.set_ylabel(label)
        axes[0, 0].set_title("mean over seeds; band: lowest to highest seed", loc="left", fontsize=7)
        if has_tau:
            axes[1, 0].set_ylim(-0.05, 1.05)
        axes[-1, 0].set_xlabel("epoch")
        if not epochs.empty and few:
            axes[-1, 0].set_xticks(np.unique(epochs["epoch"].to_numpy(dtype=int)))
        handles, names = axes[0, 0].get_legend_handles_labels()
        figure_legend(fig, dict(zip(names, handles, strict=True)), hue_title)
        return fig


def _over_seeds(rows: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per epoch: mean, min, max and count of `column` over the rows (seeds)."""
    values = pd.to_numeric(rows[column], errors="coerce")
    return values.groupby(rows["epoch"]).agg(["mean", "min", "max", "count"]).dropna(subset=["mean"])


def _identical(curves: list[pd.DataFrame]) -> bool:
    first = curves[0]["mean"]
    return all(c["mean"].index.equals(first.index) and np.allclose(c["mean"], first) for c in curves[1:])
