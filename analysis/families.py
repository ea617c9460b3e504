"""Variant families, so that a figure of twenty or more variants stays readable: one colour map per family, a
shade and a marker per variant within it.

A variant's family is its convolution method and, within a method whose variants set two or more different swept
keys, the key it sets: the method's compared setting (`Method.compared`, with its companions) first, else the key
that the most of the method's variants set. So a study's static widths, KW budgets, sharing ranges, attention
functions and each other method form one family each, read from the variant table alone (its `method` column and
which swept keys a variant sets), whatever the method. Each family has a hue (the static model's grey), its members
shades of it from light to dark in the order of the family key's values (numbers) or of the table, and markers in
turn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import declared
from analysis.equal_cost import STATIC
from analysis.style import MARKERS, shades
from analysis.sweep import format_value, short_name

STATIC_HUE = "#8a8a8a"  # grey: its darkest shade stays lighter than the baseline's near-black
# one hue per other family, in order of first appearance, far apart (colour-blind safe where it can be)
HUES = ("#0173b2", "#de8f05", "#029e73", "#cc3311", "#7e57c2", "#e377c2", "#bcbd22", "#17becf", "#8c564b")
NONE = "—"  # a variant without a method recorded
FAMILY_TITLE = "family (colour) and variant (shade, marker)"  # a legend's title


def families(variants: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    """One row per variant (the table's index): `family` ('kw: budget', or the method alone) and `key`, the dotted
    swept key that names it (for a method alone, its one swept key, if any), which orders the family's shades."""
    methods = (variants["method"].map(lambda m: m if isinstance(m, str) else NONE) if "method" in variants
               else pd.Series(NONE, index=variants.index))
    keys = [k for k in factors if k in variants and k != "method" and not declared.is_section(k)]
    sets = variants[keys].map(lambda value: format_value(value) != "—")  # which swept keys each variant sets
    out = pd.DataFrame({"family": methods, "key": None}, index=variants.index)
    for method, rows in variants.groupby(methods, sort=False):
        used = [k for k in keys if sets.loc[rows.index, k].any()]
        if len(used) < 2:  # one family: the method; its one key, if any, orders the shades
            out.loc[rows.index, "key"] = next(iter(used), None)
            continue
        setting = declared.compared(method)
        own = {f"{method}.{name}" for name in (setting.key, *setting.companions)} if setting else set()
        common = sorted(used, key=lambda k: -int(sets.loc[rows.index, k].sum()))  # stable: ties keep spec order
        for index in rows.index:
            mine = [k for k in common if sets.at[index, k]]
            key = f"{method}.{setting.key}" if setting and own & set(mine) else next(iter(mine), None)
            if key is not None:
                out.loc[index, ["family", "key"]] = [f"{method}: {short_name(key)}", key]
    return out


def styles(variants: pd.DataFrame, factors: list[str]) -> tuple[dict[str, str], dict[str, str]] | None:
    """A colour and a marker per `label` of the variants other than the baseline, by family (`families`); None when
    they form one family (a plain ablation keeps analysis.style.palette's colours)."""
    others = variants[~variants["is_baseline"]]
    found = families(others, factors)
    names = list(dict.fromkeys(found["family"]))
    if len(names) < 2:
        return None
    colors, markers = {}, {}
    hues = iter(HUES * (len(names) // len(HUES) + 1))
    for name in names:
        members = others[found["family"] == name]
        key = found.loc[members.index, "key"].iloc[0]
        if key is not None:
            values = pd.to_numeric(members[key], errors="coerce")
            members = members.iloc[np.argsort(values.to_numpy(), kind="stable")] if values.notna().all() else members
        static = bool(members["method"].eq(STATIC).all()) if "method" in members else False
        for i, (label, color) in enumerate(zip(members["label"], shades(STATIC_HUE if static else next(hues),
                                                                         len(members)), strict=True)):
            colors[label], markers[label] = color, MARKERS[i % len(MARKERS)]
    return colors, markers
