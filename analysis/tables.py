"""The ablation table of a sweep: one row per variant with its method (when the sweep compares several), the swept
factors, parameters, MACs, the mean metric with its interval, the paired difference to the baseline with its
interval, Holm-corrected p, the minimal detectable difference (MDD), whether the difference is resolved, the seeds
that would resolve it, and the seeds. A number that is not estimable is a dash with a footnote saying why.
Written as Markdown (GitHub pipes) and as LaTeX (booktabs, via pandas' Styler); the footnotes and notes travel in
the table's `attrs`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.power import ALPHA, POWER, seeds_text
from analysis.style import human_count
from analysis.sweep import format_value, group_title

DASH = "—"
SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _number(value: float, digits: int = 2, signed: bool = False) -> str:
    if value is None or not np.isfinite(value):
        return DASH
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return text.replace("-", "−")  # a real minus sign


def estimate(value: float, low: float, high: float, digits: int = 2, signed: bool = False,
             missing: str = "") -> str:
    """'97.13 [96.80, 97.45]'; without an interval the value alone, or 'value [—]' plus `missing` (a footnote
    marker) when the interval is not estimable."""
    if value is None or not np.isfinite(value):
        return DASH + missing
    text = _number(value, digits, signed)
    if np.isfinite(low) and np.isfinite(high):
        text += f" [{_number(low, digits, signed)}, {_number(high, digits, signed)}]"
    elif missing:
        text += f" [{DASH}]{missing}"
    return text


def p_value(p: float) -> str:
    """'0.031', '<0.001', or a dash when there is no test."""
    if p is None or not np.isfinite(p):
        return DASH
    return "<0.001" if p < 0.001 else f"{p:.3f}"


class Footnotes:
    """Numbered footnotes, one per distinct reason, in order of first use."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def mark(self, reason: str) -> str:
        """The superscript marker of `reason` ('' for no reason)."""
        if not reason:
            return ""
        if reason not in self.reasons:
            self.reasons.append(reason)
        return str(self.reasons.index(reason) + 1).translate(SUPERSCRIPTS)

    def lines(self) -> list[str]:
        """'¹ reason' for each reason."""
        return [f"{str(i + 1).translate(SUPERSCRIPTS)} {reason}" for i, reason in enumerate(self.reasons)]


def ablation_table(
    summary: pd.DataFrame,
    variant_table: pd.DataFrame,
    groups: list[list[str]],
    *,
    metric_label: str = "test top-1 (%)",
    diff_unit: str = "pp",
    baseline_name: str = "baseline",
    confidence: float = 0.95,
    methods: bool = False,
    effect: float | None = None,
    resolution: str | None = None,
) -> pd.DataFrame:
    """The table as display strings: variant, `method` (with `methods`), one column per varying factor group,
    params, MACs, mean [CI], difference to the baseline [CI], Holm p, MDD, resolved, seeds for the observed
    difference (when unresolved), seeds for `effect` (when given) and seeds. `summary` is
    `analysis.power.with_power(analysis.stats.summarize(...))`. table.attrs["notes"] holds the lines under the
    table (the resolution, what MDD means), table.attrs["footnotes"] why a number is a dash."""
    info = variant_table.set_index("variant_id")
    level = f"{100 * confidence:g}% CI"
    unit = f" ({diff_unit})" if diff_unit else ""
    mean_column, diff_column = f"{metric_label} [{level}]", f"Δ vs {baseline_name}{unit} [{level}]"
    effect_column = f"seeds for ±{abs(effect):g}{' ' + diff_unit if diff_unit else ''}" if effect else None
    columns = ["variant", *(["method"] if methods else []), *(group_title(g) for g in groups), "params", "MACs",
               mean_column, diff_column, "p (Holm)", f"MDD{unit}", "resolved", "seeds for Δ",
               *([effect_column] if effect_column else []), "seeds"]
    footnotes = Footnotes()
    rows = []
    for row in summary.to_dict("records"):
        meta = info.loc[row["variant_id"]] if row["variant_id"] in info.index else pd.Series(dtype=object)
        out = {"variant": row["variant"] + (" (baseline)" if row["is_baseline"] else "")}
        if methods:
            out["method"] = format_value(meta.get("method"))
        for group in groups:
            out[group_title(group)] = format_value(meta.get(group[0]))
        out["params"] = human_count(meta.get("params_total", np.nan))
        out["MACs"] = human_count(meta.get("macs_per_image", np.nan))
        out[mean_column] = estimate(row["mean"], row["ci_low"], row["ci_high"],
                                    missing=footnotes.mark(row.get("mean_missing") or ""))
        estimable = np.isfinite(row["diff_low"]) and np.isfinite(row["diff_high"])
        if row["is_baseline"]:
            out |= {diff_column: "reference", "p (Holm)": DASH, f"MDD{unit}": DASH, "resolved": "",
                    "seeds for Δ": ""}
        else:
            out[diff_column] = estimate(row["diff"], row["diff_low"], row["diff_high"], signed=True,
                                        missing=footnotes.mark(row.get("diff_missing") or ""))
            out["p (Holm)"] = p_value(row["p_holm"])
            out[f"MDD{unit}"] = _number(row.get("mdd", np.nan))
            out["resolved"] = ("yes" if row["resolved"] else "no") if estimable else DASH
            out["seeds for Δ"] = "" if row["resolved"] else seeds_text(row.get("seeds_for_diff", np.nan))
        if effect_column:
            out[effect_column] = "" if row["is_baseline"] else seeds_text(row.get("seeds_for_effect", np.nan))
        pairs = row.get("n_pairs", 0)
        out["seeds"] = str(row["n_seeds"]) + (f" ({pairs} paired)" if not row["is_baseline"] and
                                              row["n_seeds"] and pairs != row["n_seeds"] else "")
        rows.append(out)
    table = pd.DataFrame(rows, columns=columns)
    notes = [f"Resolution: {resolution}." if resolution else "",
             f"MDD: the smallest true difference the paired seeds detect with {POWER:.0%} power (two-sided paired "
             f"t-test, α = {ALPHA:g}), from the observed sd of the differences; resolved: the {level} excludes 0; "
             f"seeds for Δ: paired seeds that would resolve the observed difference with {POWER:.0%} power."]
    table.attrs["notes"] = [n for n in notes if n]
    table.attrs["footnotes"] = footnotes.lines()
    return table


def _numeric_column(table: pd.DataFrame, column: str) -> bool:
    return column not in ("variant", "method", "resolved", "note") and table[column].map(
        lambda v: v.startswith(DASH) or v == "reference" or v[:1] in "+−<>0123456789").all()


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (numbers right-aligned), pipes in cells escaped."""
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---:" if _numeric_column(table, c) else ":---" for c in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    below = [*table.attrs.get("notes", []), *table.attrs.get("footnotes", [])]
    return "\n".join([header, rule, *body]) + "\n" + "".join(f"\n{line}\n" for line in below)


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
LATEX_SYMBOLS = {"Δ": r"$\Delta$", "−": "$-$", "—": "--", "τ": r"$\tau$", "α": r"$\alpha$", "<": r"$<$",
                 ">": r"$>$", "±": r"$\pm$", **{s: f"$^{{{d}}}$" for d, s in zip("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")}}


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
    latex = styler.to_latex(hrules=True, column_format=align, caption=latex_escape(caption) or None,
                            label=label or None, position_float="centering" if caption else None)
    below = [latex_escape(line) for line in (*table.attrs.get("notes", []), *table.attrs.get("footnotes", []))]
    if not below:
        return latex
    notes = "\\par\\smallskip\n{\\footnotesize\n" + "\\\\\n".join(below) + "\n}\n"
    head, tail = latex.rsplit("\\end{tabular}\n", 1)
    return f"{head}\\end{{tabular}}\n{notes}{tail}"
