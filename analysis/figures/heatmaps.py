"""Attention heatmaps: per warehouse, the mean attention matrix (mixtures x cells), layer boundaries on the rows.

The colour map is diverging and centred at zero wherever attentions take negative values (the contrasting-driven
function does). All-positive attentions (softmax, sigmoid) get a sequential map over their own range instead:
there a zero-centred map would paint every cell the same red."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.colors import CenteredNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analysis.attention import WarehouseAttention
from analysis.style import PAGE_WIDTH, new_figure, paper_style

LAYER_FONT = 5.5  # pt, the layer names on the rows


def _limit(alphas: Sequence[np.ndarray]) -> float:
    values = np.concatenate([np.abs(a).ravel() for a in alphas])
    values = values[np.isfinite(values)]
    limit = float(np.percentile(values, 99.5)) if values.size else 1.0
    return limit if limit > 0 else 1.0


def _signed(alphas: Sequence[np.ndarray]) -> bool:
    """Whether the attentions take negative values (at least 1% of them), so that a zero-centred map is needed."""
    values = np.concatenate([a.ravel() for a in alphas])
    return bool(values.size) and float(np.mean(values < 0)) >= 0.01


def _norm(alpha: np.ndarray, signed: bool, limit: float | None) -> tuple[Normalize, str, str]:
    """Colour scaling of one panel: zero-centred and symmetric when signed, else the 0.5-99.5th percentile range."""
    if signed:
        vmax = limit or _limit([alpha])
        extend = "both" if float(np.nanmax(np.abs(alpha))) > vmax else "neither"
        return CenteredNorm(vcenter=0.0, halfrange=vmax), "RdBu_r", extend
    low, high = (0.0, limit) if limit else np.nanpercentile(alpha, [0.5, 99.5])
    high = high if high > low else low + 1e-12
    extend = {(True, True): "both", (True, False): "min", (False, True): "max", (False, False): "neither"}[
        (float(np.nanmin(alpha)) < low, float(np.nanmax(alpha)) > high)]
    return Normalize(vmin=low, vmax=high), "Reds", extend


def _layer_ticks(w: WarehouseAttention, points_per_row: float) -> tuple[list[float], list[str]]:
    """Row positions and names of the layers whose labels fit without touching the previous label."""
    ticks, names, last = [], [], -math.inf
    for layer, start, stop in w.blocks():
        centre = (start + stop - 1) / 2
        if (centre - last) * points_per_row >= 1.2 * LAYER_FONT:
            ticks.append(centre)
            names.append(layer)
            last = centre
    return ticks, names


def attention_heatmaps(
    warehouses: Mapping[str, WarehouseAttention] | Sequence[WarehouseAttention],
    *,
    title: str | None = None,
    columns: int = 2,
    width: float = PAGE_WIDTH,
    panel_height: float = 2.3,
    limit: float | None = None,
    row_label: str = "mixture i (grouped by layer)",
    column_label: str = "cell j of the warehouse",
    column_noun: str = "cells",
) -> Figure:
    """One panel per group (a KW warehouse, or a method's routing group): rows = mixtures grouped by layer (lines at
    layer boundaries; one row per layer for routing), columns = cells (or experts), colour = mean alpha per panel
    scale; diverging and white at zero when alpha takes negative values, else sequential."""
    items = list(warehouses.values()) if isinstance(warehouses, Mapping) else list(warehouses)
    with paper_style():
        if not items:
            fig, axes = new_figure(width / 2, 1.0)
            axes[0, 0].text(0.5, 0.5, "no attention recorded", ha="center", va="center")
            axes[0, 0].set_axis_off()
            return fig
        cols = min(columns, len(items))
        rows = math.ceil(len(items) / cols)
        fig, axes = new_figure(width if cols > 1 else width / 1.6, panel_height * rows + (0.25 if title else 0),
                               nrows=rows, ncols=cols)
        signed = _signed([w.alpha for w in items])
        for ax, w in zip(axes.flat, items, strict=False):
            n_rows, n_cells = w.shape
            norm, cmap, extend = _norm(w.alpha, signed, limit)
            image = ax.imshow(w.alpha, aspect="auto", interpolation="auto", cmap=cmap, norm=norm)
            one_row_per_layer = len(w.blocks()) == n_rows  # e.g. a routing group: no boundaries to draw
            for _, start, _ in [] if one_row_per_layer else w.blocks()[1:]:
                ax.axhline(start - 0.5, color="black", linewidth=0.5)
            points_per_row = panel_height * 72 * 0.72 / n_rows  # roughly the axes' share of the panel height
            ticks, names = _layer_ticks(w, points_per_row)
            ax.set_yticks(ticks, names, fontsize=LAYER_FONT)
            ax.tick_params(axis="y", length=0, pad=2)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
            ax.set_xlabel(column_label)
            ax.grid(False)
            rows_noun = "layers" if one_row_per_layer else "mixtures"
            ax.set_title(f"{w.name}: {n_rows} {rows_noun} × {n_cells} {column_noun}", loc="left")
            colorbar = fig.colorbar(image, ax=ax, pad=0.02, aspect=25, extend=extend)
            colorbar.set_label("mean attention α", labelpad=2)
            colorbar.ax.tick_params(labelsize=6)
        for ax in axes.flat[len(items):]:
            ax.set_axis_off()
        for ax in axes[:, 0]:
            ax.set_ylabel(row_label)
        if title:
            fig.suptitle(title, x=0.0, ha="left")
        return fig
