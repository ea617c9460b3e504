"""Which swept setting mattered: importance bars (from a tidy table), and Optuna's parallel-coordinates and slice
plots of a study built from the store's trials. Each returns a Figure; the caller saves it."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import optuna
import pandas as pd
from matplotlib.figure import Figure

from analysis.style import COLUMN_WIDTH, PAGE_WIDTH, new_figure, paper_style


def importance_bars(importances: pd.DataFrame, evaluator: str) -> Figure:
    """Horizontal bars of `importance` per `key` (largest on top), titled with the evaluator that computed them."""
    with paper_style():
        fig, axes = new_figure(COLUMN_WIDTH, 0.6 + 0.3 * len(importances))
        ax = axes[0, 0]
        ordered = importances.sort_values("importance")
        ax.barh(ordered["key"], ordered["importance"], color="#0173b2")
        ax.set_xlabel(f"importance ({evaluator}, sums to 1)")
        ax.set_xlim(0, 1)
    return fig


def _optuna_figure(draw: object, study: optuna.Study, params: list[str], target_name: str) -> Figure:
    """One of Optuna's matplotlib plots, in an rc context (they set the ggplot style globally)."""
    with plt.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        axes = draw(study, params=params, target_name=target_name)
        fig = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
    return fig


def parallel_coordinates(study: optuna.Study, params: list[str], target_name: str) -> Figure:
    """Optuna's parallel-coordinates plot: one line per trial through its swept values to its metric."""
    fig = _optuna_figure(optuna.visualization.matplotlib.plot_parallel_coordinate, study, params, target_name)
    fig.set_size_inches(PAGE_WIDTH, 3.0)
    fig.set_layout_engine("tight")  # the axis names below the axes stay inside the figure
    return fig


def slices(study: optuna.Study, params: list[str], target_name: str) -> Figure:
    """Optuna's slice plots: the metric of every trial against each swept key."""
    return _optuna_figure(optuna.visualization.matplotlib.plot_slice, study, params, target_name)  # Optuna's size
