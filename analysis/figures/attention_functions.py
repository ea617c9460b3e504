"""A method's compared setting (e.g. KernelWarehouse's attention function): the metric per value with intervals and
the paired difference to the reference value; and the distribution of attention values per value (how much is
negative, how much is near zero)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from analysis.style import BASELINE_COLOR, PAGE_WIDTH, new_figure, palette, paper_style


def _p_text(p: float) -> str:
    if not np.isfinite(p):
        return "p = n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def attention_function_comparison(
    summary: pd.DataFrame,
    *,
    reference: str,
    setting: str = "attention function",
    y_label: str = "best val. top-1 (%)",
    diff_unit: str = "pp",
    baseline_mean: float | None = None,
    baseline_label: str = "static",
    colors: dict[str, str] | None = None,
    width: float = PAGE_WIDTH,
) -> Figure:
    """Left: mean metric per value of the compared `setting` (`label`) with its interval, the static model as a
    dotted line. Right: the paired difference to the `reference` label with its interval and Holm-corrected p on the
    right.

    `summary`: one row per value with label, mean, ci_low, ci_high, diff, diff_low, diff_high, p_holm.
    """
    data = summary.reset_index(drop=True)
    labels = list(data["label"])
    colors = colors or palette(labels)
    positions = np.arange(len(data))[::-1]  # first function on top
    with paper_style():
        fig, axes = new_figure(width, 0.9 + 0.28 * max(len(data), 2), ncols=2, sharey=True)
        left, right = axes[0]
        for y, row in zip(positions, data.to_dict("records"), strict=True):
            color = colors.get(row["label"], "C0")
            err = [[row["mean"] - row["ci_low"]], [row["ci_high"] - row["mean"]]]
            left.errorbar(row["mean"], y, xerr=err if np.isfinite(err[0][0]) else None, fmt="o", color=color)
            if row["label"] == reference:
                right.plot(0, y, marker="D", color=color, markerfacecolor="white", linestyle="none")
                continue
            err = [[row["diff"] - row["diff_low"]], [row["diff_high"] - row["diff"]]]
            right.errorbar(row["diff"], y, xerr=err if np.isfinite(err[0][0]) else None, fmt="o", color=color)
        if baseline_mean is not None and np.isfinite(baseline_mean):
            left.axvline(baseline_mean, color=BASELINE_COLOR, linestyle=":", linewidth=0.9)
            left.legend([Line2D([], [], color=BASELINE_COLOR, linestyle=":")], [f"{baseline_label} (baseline)"],
                        loc="lower left", bbox_to_anchor=(0, 1), borderaxespad=0.2)
        right.axvline(0, color="0.4", linewidth=0.8)
        left.set_yticks(positions, labels)
        left.set_ylabel(setting)
        left.set_xlabel(y_label)
        left.margins(x=0.15, y=0.15)
        unit = f" ({diff_unit})" if diff_unit else ""
        right.set_xlabel(f"paired difference to {reference}{unit}")
        right.margins(x=0.15)
        p_axis = right.secondary_yaxis("right")
        p_axis.set_yticks(positions, ["reference" if label == reference else _p_text(p)
                                      for label, p in zip(labels, data["p_holm"], strict=True)])
        p_axis.tick_params(length=0)
        p_axis.set_ylabel("Holm-corrected p")
        right.tick_params(axis="y", left=False)
        return fig


def attention_value_distribution(
    values: pd.DataFrame,
    shares: pd.DataFrame,
    *,
    setting: str = "attention function",
    colors: dict[str, str] | None = None,
    width: float = PAGE_WIDTH,
    linear_range: float = 1e-3,
) -> Figure:
    """Left: the empirical CDF of mean attention values per value of the compared `setting` (`group`), x on a
    symmetric log scale (linear within +-`linear_range`), a line at 0. Right: share of negative and of near-zero
    values per value.

    `values`: tidy rows with group and alpha. `shares`: one row per group with negative_pct and near_zero_pct
    (see `analysis.attention.value_summary`).
    """
    groups = list(dict.fromkeys(shares["group"]))
    colors = colors or palette(groups)
    with paper_style():
        fig, axes = new_figure(width, 2.4, ncols=2, width_ratios=[1.4, 1])
        left, right = axes[0]
        probabilities = np.linspace(0, 1, 401)
        for group in groups:
            alpha = values.loc[values["group"] == group, "alpha"].to_numpy(dtype=float)
            alpha = alpha[np.isfinite(alpha)]
            if alpha.size:
                left.plot(np.quantile(alpha, probabilities), probabilities, color=colors.get(group), label=group,
                          drawstyle="steps-post")
        left.axvline(0, color="0.3", linewidth=0.8)
        left.set_xscale("symlog", linthresh=linear_range, linscale=0.5)
        left.set_xlabel(f"mean attention α (symmetric log scale, linear within ±{linear_range:g})")
        left.set_ylabel("share of values ≤ α")
        left.legend(title=setting, loc="upper left")
        positions = np.arange(len(groups))[::-1]
        height = 0.38
        data = shares.set_index("group").reindex(groups)
        negative = right.barh(positions + height / 2, data["negative_pct"], height,
                              color=[colors[g] for g in groups])
        near = right.barh(positions - height / 2, data["near_zero_pct"], height, color=[colors[g] for g in groups],
                          alpha=0.4, hatch="////", edgecolor="white", linewidth=0)
        for bars in (negative, near):
            right.bar_label(bars, fmt="%.0f%%", padding=2, fontsize=6)
        right.set_yticks(positions, groups)
        right.set_xlabel("share of attention values (%)")
        right.set_xlim(0, 100)
        right.grid(axis="y", visible=False)
        legend = [Patch(facecolor="0.35", label="negative (α < 0)"),
                  Patch(facecolor="0.35", alpha=0.4, hatch="////", edgecolor="white", linewidth=0,
                        label="near zero (|α| < 1% of its row's largest)")]
        right.legend(handles=legend, loc="lower left", bbox_to_anchor=(0, 1), borderaxespad=0.2, handlelength=1.2)
        return fig
