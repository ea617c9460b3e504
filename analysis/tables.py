"""The ablation table of a sweep: one row per variant with the swept factors, parameters, MACs, the mean metric
with its interval, the paired difference to the baseline with its interval and Holm-corrected p, and the seeds.
Written as Markdown (GitHub pipes) and as LaTeX (booktabs, via pandas' Styler)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.style import human_count
from analysis.sweep import format_value, group_title

DASH = "—"


def _number(value: float, digits: int = 2, signed: bool = False) -> str:
    if value is None or not np.isfinite(value):
        return DASH
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return text.replace("-", "−")  # a real minus sign


def estimate(value: float, low: float, high: float, digits: int = 2, signed: bool = False) -> str:
    """'97.13 [96.80, 97.45]'; the interval is left out when it is not defined."""
    if value is None or not np.isfinite(value):
        return DASH
    text = _number(value, digits, signed)
    if np.isfinite(low) and np.isfinite(high):
        text += f" [{_number(low, digits, signed)}, {_number(high, digits, signed)}]"
    return text


def p_value(p: float) -> str:
    """'0.031', '<0.001', or a dash when there is no test."""
    if p is None or not np.isfinite(p):
        return DASH
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def ablation_table(
    summary: pd.DataFrame,
    variant_table: pd.DataFrame,
    groups: list[list[str]],
    *,
    metric_label: str = "best val. top-1 (%)",
    diff_unit: str = "pp",
    baseline_name: str = "baseline",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """The table as display strings: variant, one column per varying factor group, params, MACs, mean [CI],
    difference to the baseline [CI], Holm p, seeds, and `note` when any row has one."""
    info = variant_table.set_index("variant_id")
    level = f"{100 * confidence:g}% CI"
    unit = f" ({diff_unit})" if diff_unit else ""
    columns = ["variant", *(group_title(g) for g in groups), "params", "MACs", f"{metric_label} [{level}]",
               f"Δ vs {baseline_name}{unit} [{level}]", "p (Holm)", "seeds", "note"]
    rows = []
    for row in summary.to_dict("records"):
        meta = info.loc[row["variant_id"]] if row["variant_id"] in info.index else pd.Series(dtype=object)
        out = {"variant": row["variant"] + (" (baseline)" if row["is_baseline"] else "")}
        for group in groups:
            out[group_title(group)] = format_value(meta.get(group[0]))
        out["params"] = human_count(meta.get("params_total", np.nan))
        out["MACs"] = human_count(meta.get("macs_per_image", np.nan))
        out[f"{metric_label} [{level}]"] = estimate(row["mean"], row["ci_low"], row["ci_high"])
        out[f"Δ vs {baseline_name}{unit} [{level}]"] = (
            "reference" if row["is_baseline"] else estimate(row["diff"], row["diff_low"], row["diff_high"], signed=True)
        )
        out["p (Holm)"] = DASH if row["is_baseline"] else p_value(row["p_holm"])
        out["seeds"] = str(row["n_seeds"])
        out["note"] = row.get("note") or ""
        rows.append(out)
    table = pd.DataFrame(rows, columns=columns)
    if not table["note"].astype(bool).any():
        table = table.drop(columns="note", errors="ignore")
    return table


def _numeric_column(table: pd.DataFrame, column: str) -> bool:
    return column not in ("variant", "note") and table[column].map(
        lambda v: v == DASH or v == "reference" or v[:1] in "+−<0123456789").all()


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (numbers right-aligned), pipes in cells escaped."""
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---:" if _numeric_column(table, c) else ":---" for c in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
LATEX_SYMBOLS = {"Δ": r"$\Delta$", "−": "$-$", "—": "--", "τ": r"$\tau$", "α": r"$\alpha$", "<": r"$<$"}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials and write the few non-ASCII symbols the tables use as math."""
    out = "".join(LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    for symbol, replacement in LATEX_SYMBOLS.items():
        out = out.replace(symbol, replacement)
    return out


def to_latex(table: pd.DataFrame, *, caption: str = "", label: str = "") -> str:
    """A booktabs LaTeX table (\\toprule, \\midrule, \\bottomrule; needs \\usepackage{booktabs})."""
    escaped = table.map(latex_escape)
    escaped.columns = [latex_escape(c) for c in table.columns]
    styler = escaped.style.hide(axis="index")
    align = "".join("r" if _numeric_column(table, c) else "l" for c in table.columns)
    return styler.to_latex(hrules=True, column_format=align, caption=latex_escape(caption) or None,
                           label=label or None, position_float="centering" if caption else None)
