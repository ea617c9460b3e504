"""Plot functions: each takes tidy DataFrames (or attention matrices) and returns a matplotlib Figure; the caller
saves it (`analysis.style.save_figure` writes PNG and PDF)."""

from analysis.figures.attention_functions import attention_function_comparison, attention_value_distribution
from analysis.figures.curves import learning_curves
from analysis.figures.heatmaps import attention_heatmaps
from analysis.figures.params_accuracy import params_accuracy, pareto_front

__all__ = ["attention_function_comparison", "attention_heatmaps", "attention_value_distribution",
           "learning_curves", "params_accuracy", "pareto_front"]
