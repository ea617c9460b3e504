"""A difference against the training length: one panel per comparison (same width, equal parameters, equal MACs),
epochs on a log axis, one line per variant with its 95% intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from analysis.style import PAGE_WIDTH, figure_legend, new_figure, palette, paper_style

SPREAD = 0.012  # the variants at one schedule sit this share of the log axis apart, so their intervals do not hide


def gap_by_schedule(
    rows: pd.DataFrame,
    *,
    titles: dict[str, str] | None = None,
    colors: dict[str, str] | None = None,
    markers: dict[str, str] | None = None,
    y_label: str = "difference (pp)",
    width: float = PAGE_WIDTH,
) -> Figure:
    """Per `comparison` (a panel titled by `titles`, in order of appearance): each `group`'s `diff` against `epochs`
    on a log axis, joined by a line, with its interval (diff_low, diff_high) as error bar (hollow without one), and
    a line at 0. `rows`: tidy rows with group, comparison, epochs, diff, diff_low, diff_high."""
    comparisons = list(dict.fromkeys(rows["comparison"]))
    groups = list(dict.fromkeys(rows["group"]))
    colors = colors or palette(groups)
    lengths = np.unique(rows["epochs"].to_numpy(dtype=float))
    span = np.log10(lengths.max() / lengths.min()) if len(lengths) > 1 else 1.0
    with paper_style():
        fig, axes = new_figure(width, 2.4, ncols=max(len(comparisons), 1))
        for ax, comparison in zip(axes[0], comparisons, strict=False):
            panel = rows[rows["comparison"] == comparison]
            for i, group in enumerate(groups):
                line = panel[panel["group"] == group].sort_values("epochs")
                if line.empty:
                    continue
                shift = 10 ** ((i - (len(groups) - 1) / 2) * SPREAD * span)
                x = line["epochs"].to_numpy(dtype=float) * shift
                y = line["diff"].to_numpy(dtype=float)
                low, high = line["diff_low"].to_numpy(dtype=float), line["diff_high"].to_numpy(dtype=float)
                color, marker = colors.get(group, "C0"), (markers or {}).get(group, "o")
                interval = np.isfinite(low) & np.isfinite(high)
                ax.errorbar(x[interval], y[interval], yerr=[y[interval] - low[interval], high[interval] - y[interval]],
                            fmt="none", ecolor=color, elinewidth=0.9)
                ax.plot(x, y, color=color, linewidth=1.0, marker=marker, markersize=4, label=group,
                        markerfacecolor=color if interval.all() else "white")
                ax.plot(x[interval], y[interval], marker, color=color, markersize=4)  # filled where it has one
            ax.axhline(0, color="0.4", linewidth=0.8)
            ax.set_xscale("log")
            ax.set_xticks(lengths, [f"{v:g}" for v in lengths])
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("training length (epochs)")
            ax.set_title((titles or {}).get(comparison, comparison), loc="left")
            pad = 10 ** (0.1 * span)  # set, not from the data: a panel with no difference yet has none
            ax.set_xlim(lengths.min() / pad, lengths.max() * pad)
            if not np.isfinite(panel["diff"].to_numpy(dtype=float)).any():
                ax.text(0.5, 0.5, "no paired seeds yet", transform=ax.transAxes, ha="center", va="center",
                        color="0.4")
        axes[0, 0].set_ylabel(y_label)
        handles: dict[str, Artist] = {}  # a variant compared at equal cost only (a static width) is in a later panel
        for ax in axes[0]:
            for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
                handles.setdefault(name, handle)
        figure_legend(fig, handles, "mean paired difference over seeds; bars: 95% t interval")
        return fig
