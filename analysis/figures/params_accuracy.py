"""Parameters (or MACs) against accuracy: one point per variant with its interval, the baseline marked, the
Pareto front drawn."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from analysis.stats import MIN_SEEDS
from analysis.style import BASELINE_COLOR, COLUMN_WIDTH, count_scale, figure_legend, new_figure, palette, paper_style

X_LABELS = {"params_total": "parameters", "macs_per_image": "MACs per image"}
FAMILY_COLOR = "#6a6a6a"  # the static family's curve and band


def pareto_front(cost: np.ndarray, value: np.ndarray, maximize: bool = True) -> np.ndarray:
    """Mask of the points no other point beats: none has lower-or-equal cost and better-or-equal value, one strictly."""
    cost, value = np.asarray(cost, dtype=float), np.asarray(value, dtype=float)
    value = value if maximize else -value
    front = np.zeros(cost.shape, dtype=bool)
    for i in range(cost.size):
        if not (np.isfinite(cost[i]) and np.isfinite(value[i])):
            continue
        dominated = (cost <= cost[i]) & (value >= value[i]) & ((cost < cost[i]) | (value > value[i]))
        front[i] = not dominated.any()
    return front


def params_accuracy(
    points: pd.DataFrame,
    *,
    x: str = "params_total",
    hue: str = "label",
    hue_title: str | None = None,
    colors: dict[str, str] | None = None,
    y_label: str = "best val. top-1 (%)",
    maximize: bool = True,
    markers: dict[str, str] | None = None,
    width: float = COLUMN_WIDTH,
    height: float = 2.7,
    family: pd.DataFrame | None = None,
) -> Figure:
    """Mean metric per variant against `x` (params_total or macs_per_image) with the interval as error bar.

    `points`: one row per variant with `x`, mean, ci_low, ci_high, `hue`, label and is_baseline. `colors` and
    `markers` map a `hue` value to its colour and marker (default: a palette, circles). The baseline is a dark star; hollow markers have no interval (fewer than analysis.stats.MIN_SEEDS seeds); the dashed staircase is
    the Pareto front (no other variant is as small and at least as good, in the metric's direction: `maximize`).
    Variants of equal size are spread apart a little. `family` (rows of `points`, increasing in `x`): the static
    family, drawn as a solid curve through its means with its intervals as a band, on a log axis (the curve is the
    interpolation the equal-cost differences use: linear in log cost).
    """
    with paper_style():
        fig, axes = new_figure(width, height)
        ax = axes[0, 0]
        data = points.dropna(subset=[x, "mean"]).reset_index(drop=True)
        ax.set_ylabel(y_label)
        if data.empty:
            ax.text(0.5, 0.5, "no finished trial yet", ha="center", va="center", transform=ax.transAxes)
            ax.set_xlabel(X_LABELS.get(x, x))
            return fig
        scale, unit = count_scale(data[x].tolist())
        xs = data[x].to_numpy(dtype=float) / scale
        ys = data["mean"].to_numpy(dtype=float)
        baseline = data["is_baseline"].astype(bool).to_numpy()
        hues = list(dict.fromkeys(data.loc[~baseline, hue]))
        colors = colors or palette(hues)
        handles: dict[str, Line2D] = {}
        drawn = family is not None and len(family.dropna(subset=[x, "mean"])) >= 2
        log = xs.min() > 0 and (drawn or xs.max() / xs.min() > 20)
        shown = dodge(xs, log=log)
        if drawn:
            curve = family.dropna(subset=[x, "mean"])
            fx = curve[x].to_numpy(dtype=float) / scale
            ax.plot(fx, curve["mean"], color=FAMILY_COLOR, linewidth=1.1, zorder=2.5)
            band = curve.dropna(subset=["ci_low", "ci_high"])
            if len(band) >= 2:
                ax.fill_between(band[x].to_numpy(dtype=float) / scale, band["ci_low"], band["ci_high"],
                                color=FAMILY_COLOR, alpha=0.18, linewidth=0, zorder=1)
            handles["static family (95% band)"] = Line2D([], [], color=FAMILY_COLOR, linewidth=1.1)
        for i, row in data.iterrows():
            lower, upper = row["mean"] - row["ci_low"], row["ci_high"] - row["mean"]
            has_ci = np.isfinite(lower) and np.isfinite(upper)
            filled = has_ci
            if baseline[i]:
                color, marker, size, name = BASELINE_COLOR, "*", 9, f"{row['label']} (baseline)"
            else:
                color = colors.get(row[hue], "C0")
                marker = (markers or {}).get(row[hue], "o")
                size, name = 5, str(row[hue])
            ax.errorbar(shown[i], ys[i], yerr=[[lower], [upper]] if has_ci else None, fmt=marker, color=color,
                        markersize=size, markerfacecolor=color if filled else "white", markeredgewidth=0.9,
                        elinewidth=0.9, zorder=3)
            handles.setdefault(name, Line2D([], [], marker=marker, color=color, linestyle="none", markersize=size,
                                            markerfacecolor=color))
        front = pareto_front(xs, ys, maximize)
        if front.any():  # the staircase of what is attainable at each size, out to the largest variant
            order = np.argsort(xs[front])
            fx, fy = list(xs[front][order]), list(ys[front][order])
            if xs.max() > fx[-1]:
                fx, fy = [*fx, float(xs.max())], [*fy, fy[-1]]
            ax.plot(fx, fy, drawstyle="steps-post", linestyle="--", color="0.55", linewidth=0.9, zorder=2)
            handles["Pareto front"] = Line2D([], [], linestyle="--", color="0.55", linewidth=0.9)
        if log:  # labels at 1, 2, 5 x 10^k written plainly; no minor labels to collide
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"{X_LABELS.get(x, x)} ({unit})" if unit else X_LABELS.get(x, x))
        ax.margins(x=0.08, y=0.12)
        if not (np.isfinite(data["ci_low"]) & np.isfinite(data["ci_high"])).all():
            handles[f"< {MIN_SEEDS} seeds (no interval)"] = Line2D([], [], marker="o", color="0.3", linestyle="none",
                                                        markersize=5, markerfacecolor="white")
        figure_legend(fig, handles, hue_title)
        return fig


def dodge(x: np.ndarray, log: bool = False, width: float = 0.012, total: float = 0.04) -> np.ndarray:
    """Spread points that share an x value (within 0.5% of the axis range) `width` of the range apart, a group
    spanning at most `total` of the range."""
    position = np.log10(x) if log else np.asarray(x, dtype=float)
    span = float(np.ptp(position)) or 1.0
    shifted = position.copy()
    order = np.argsort(position, kind="stable")
    start = 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and position[order[stop]] - position[order[start]] <= 0.005 * span:
            stop += 1
        members = order[start:stop]
        step = min(width, total / max(len(members) - 1, 1)) * span
        shifted[members] = position[members].mean() + (np.arange(len(members)) - (len(members) - 1) / 2) * step
        start = stop
    return 10**shifted if log else shifted
