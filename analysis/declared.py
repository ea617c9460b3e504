"""What the report reads from a convolution method's own declaration (kwlab.methods.protocol), so that no part of
the analysis asks "is this KW?": how its attention heatmaps read (`Method.attention_axes`), which of its settings is
compared against a reference (`Method.compared`), and which config keys are method sections (`kw: null`).

A method this process does not know (a plugin not imported, an old store without a method) gets the protocol's
defaults: generic heatmap words and no compared setting.
"""

from __future__ import annotations

from typing import Any

from kwlab.errors import KWLabError
from kwlab.methods import METHODS
from kwlab.methods.protocol import AttentionAxes, ComparedSetting, Method


def method(name: Any) -> Method | None:
    """The registered method of that name; None for a missing name (None, NaN) or one not registered here."""
    if not isinstance(name, str):
        return None
    try:
        return METHODS.get(name)
    except KWLabError:
        return None


def attention_axes(name: Any) -> AttentionAxes:
    """How the method's attention.npz reads (rows, columns and the sentence of its heatmaps)."""
    found = method(name)
    return found.attention_axes if found is not None else AttentionAxes()


def heatmap_labels(axes: AttentionAxes) -> dict[str, str]:
    """The keyword arguments of `analysis.figures.attention_heatmaps` for those axes: rows grouped by layer unless a
    row is a layer, the columns' label and plural."""
    rows = axes.rows if axes.rows == "layer" else f"{axes.rows} (grouped by layer)"
    return {"row_label": rows, "column_label": axes.columns, "column_noun": axes.columns_plural}


def compared(name: Any) -> ComparedSetting | None:
    """The setting the method compares against a reference value (KW: attention against caf, with init), or None."""
    found = method(name)
    return found.compared if found is not None else None


def is_section(key: str) -> bool:
    """Whether a config key is a method's whole section (`kw`, set to null for the static model), not a setting."""
    return key in METHODS.names()
