"""The ablation table of a sweep: one row per variant with its method (when the sweep compares several), the swept
factors, parameters, MACs, the mean metric with its interval, the paired difference to the baseline with its
interval, Holm-corrected p, the minimal detectable difference (MDD), whether the difference is resolved, the seeds
that would resolve it, and the seeds. A number that is not estimable is a dash with a footnote saying why.
Written as Markdown (GitHub pipes) and as LaTeX (booktabs, via pandas' Styler); the footnotes and notes travel in
the table's `attrs`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.equal_cost import OUT_OF_RANGE
from analysis.equal_cost import SHORT as COST_WORDS
from analysis.power import ALPHA, POWER, seeds_text
from analysis.schedules import COMPARISONS, Schedules
from analysis.style import human_count
from analysis.sweep import format_value, group_title

DASH = "—"
OUT_OF_RANGE_NOTE = f"{OUT_OF_RANGE}: the variant's cost lies outside the static family's span (not extrapolated)"
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
    equal_cost: dict[str, pd.DataFrame] | None = None,
    notes: dict[str, list[str]] | None = None,
) -> pd.DataFrame:
    """The table as display strings: variant (with a footnote for each of its `notes`, variant_id -> reasons),
    `method` (with `methods`), one column per varying factor group,
    params, MACs, mean [CI], difference to the baseline [CI], Holm p, MDD, resolved, seeds for the observed
    difference (when unresolved), seeds for `effect` (when given), the difference to the static family at equal
    parameters and at equal MACs [CI] (`equal_cost`: analysis.equal_cost.compare's table per cost, when the sweep
    has a family) and seeds. `summary` is `analysis.power.with_power(analysis.stats.summarize(...))`.
    table.attrs["notes"] holds the lines under the table (the resolution, what MDD means), table.attrs["footnotes"]
    why a number is a dash."""
    info = variant_table.set_index("variant_id")
    level = f"{100 * confidence:g}% CI"
    unit = f" ({diff_unit})" if diff_unit else ""
    mean_column, diff_column = f"{metric_label} [{level}]", f"Δ vs {baseline_name}{unit} [{level}]"
    effect_column = f"seeds for ±{abs(effect):g}{' ' + diff_unit if diff_unit else ''}" if effect else None
    equal_cost = {cost: rows.set_index("variant_id") for cost, rows in (equal_cost or {}).items()}
    cost_columns = {cost: f"Δ vs static at equal {COST_WORDS[cost]}{unit} [{level}]" for cost in equal_cost}
    columns = ["variant", *(["method"] if methods else []), *(group_title(g) for g in groups), "params", "MACs",
               mean_column, diff_column, "p (Holm)", f"MDD{unit}", "resolved", "seeds for Δ",
               *([effect_column] if effect_column else []), *cost_columns.values(), "seeds"]
    footnotes = Footnotes()
    rows = []
    for row in summary.to_dict("records"):
        meta = info.loc[row["variant_id"]] if row["variant_id"] in info.index else pd.Series(dtype=object)
        marks = "".join(footnotes.mark(reason) for reason in (notes or {}).get(row["variant_id"], []))
        out = {"variant": row["variant"] + (" (baseline)" if row["is_baseline"] else "") + marks}
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
        for cost, column in cost_columns.items():
            out[column] = _equal_cost_cell(equal_cost[cost], row["variant_id"], footnotes)
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


def _equal_cost_cell(rows: pd.DataFrame, variant_id: str, footnotes: Footnotes) -> str:
    """A variant's difference to the static family at equal cost, 'static family' for a member of it, or why
    there is no number (out of range, too few pairs) as a dash with a footnote."""
    if variant_id not in rows.index:
        return "static family"
    row = rows.loc[variant_id]
    if not row["in_range"]:
        reason = row["diff_missing"]
        return DASH + footnotes.mark(OUT_OF_RANGE_NOTE if reason.startswith(OUT_OF_RANGE) else reason)
    return estimate(row["diff"], row["diff_low"], row["diff_high"], signed=True,
                    missing=footnotes.mark(row["diff_missing"] or ""))


def equal_cost_table(comparisons: dict[str, pd.DataFrame], *, diff_unit: str = "pp",
                     confidence: float = 0.95) -> pd.DataFrame:
    """Every variant against the static family at equal parameters and at equal MACs, as display strings: the
    variant, the cost it is matched at, its cost, the family's span, the difference [CI], Holm p (across the
    variants at that cost), MDD, resolved, seeds for Δ and the pairs. `comparisons` maps "params"/"macs" to
    `analysis.power.with_power(analysis.equal_cost.compare(...))`."""
    level = f"{100 * confidence:g}% CI"
    unit = f" ({diff_unit})" if diff_unit else ""
    diff_column = f"Δ vs static{unit} [{level}]"
    schedules = any("epochs" in table for table in comparisons.values())
    footnotes = Footnotes()
    rows = []
    for cost, table in comparisons.items():
        for row in table.to_dict("records"):
            estimable = np.isfinite(row["diff_low"]) and np.isfinite(row["diff_high"])
            missing = footnotes.mark(row["diff_missing"] or "")
            rows.append({
                "variant": row["variant"], **({"epochs": format_value(row["epochs"])} if schedules else {}),
                "at equal": COST_WORDS[cost], "cost": human_count(row["cost_value"]),
                "static family": f"{human_count(row['family_low'])}–{human_count(row['family_high'])}",
                diff_column: (estimate(row["diff"], row["diff_low"], row["diff_high"], signed=True, missing=missing)
                              if row["in_range"] else f"out of range{missing}"),
                "p (Holm)": p_value(row["p_holm"]), f"MDD{unit}": _number(row.get("mdd", np.nan)),
                "resolved": ("yes" if row["resolved"] else "no") if estimable else DASH,
                "seeds for Δ": "" if row["resolved"] else seeds_text(row.get("seeds_for_diff", np.nan)),
                "pairs": str(row["n_pairs"])})
    columns = ["variant", *(["epochs"] if schedules else []), "at equal", "cost", "static family", diff_column,
               "p (Holm)", f"MDD{unit}", "resolved", "seeds for Δ", "pairs"]
    out = pd.DataFrame(rows, columns=columns)
    within = (" (the static family of the variant's own schedule: the family is never interpolated across training "
              "lengths)" if schedules else "")
    out.attrs["notes"] = [f"Δ vs static: the variant minus the static family interpolated to its cost{within}, "
                          f"linearly in log cost between the two nearest static widths, seed by seed; p (Holm) across "
                          f"the variants at each cost{' and schedule' if schedules else ''}; out of range: the "
                          f"variant's cost lies outside the family's span."]
    out.attrs["footnotes"] = footnotes.lines()
    return out


def schedule_table(found: Schedules, *, diff_unit: str = "pp", confidence: float = 0.95) -> pd.DataFrame:
    """Every comparison per training length as display strings: one row per variant and comparison (same width,
    equal params, equal MACs) with its difference [CI] at each schedule, and the change of that difference from the
    shortest to the longest schedule, paired by seed [CI], with its Holm p (across the variants of a comparison),
    resolved and pairs. `found` is analysis.schedules.compare's result (with analysis.power.schedule_power's
    columns)."""
    level = f"{100 * confidence:g}% CI"
    unit = f" ({diff_unit})" if diff_unit else ""
    shortest, longest = found.lengths[0], found.longest
    change_column = f"change {shortest}→{longest} epochs{unit} [{level}]"
    columns = ["variant", "versus", *(f"Δ at {n} epoch{'s' * (n != 1)}{unit} [{level}]" for n in found.lengths),
               change_column,
               "p (Holm)", "resolved", "pairs"]
    rows = found.rows.set_index(["group", "comparison", "epochs"])
    changes = found.changes.set_index(["group", "comparison"])
    compared = set(zip(found.rows["group"], found.rows["comparison"], strict=True))
    footnotes = Footnotes()
    out = []
    for group in dict.fromkeys(found.rows["group"]):
        for comparison, words in COMPARISONS.items():
            if (group, comparison) not in compared:
                continue
            line = {"variant": group, "versus": words}
            for n, column in zip(found.lengths, columns[2:-4], strict=True):
                line[column] = _cell(rows.loc[(group, comparison, n)] if (group, comparison, n) in rows.index
                                     else None, footnotes)
            change = changes.loc[(group, comparison)] if (group, comparison) in changes.index else None
            line[change_column] = _cell(change, footnotes)
            line["p (Holm)"] = p_value(change["p_holm"]) if change is not None else DASH
            estimable = change is not None and np.isfinite(change["diff_low"])
            line["resolved"] = ("yes" if change["resolved"] else "no") if estimable else DASH
            line["pairs"] = str(change["n_pairs"]) if change is not None else DASH
            out.append(line)
    table = pd.DataFrame(out, columns=columns)
    table.attrs["notes"] = [
        f"Δ at n epochs: the variant at that training length against the baseline's match at the same length (same "
        f"width) or the static family of that length interpolated to its cost (equal params, equal MACs); change: "
        f"each seed's Δ at {longest} epochs minus its Δ at {shortest}, paired t interval, p (Holm) across the "
        f"variants of each comparison; resolved: the {level} of the change excludes 0, i.e. the gap moves with the "
        f"training length."]
    table.attrs["footnotes"] = footnotes.lines()
    return table


def _cell(row: pd.Series | None, footnotes: Footnotes) -> str:
    """A difference [CI] with a footnote where it is not estimable; a dash where the comparison was not made."""
    if row is None:
        return DASH
    return estimate(row["diff"], row["diff_low"], row["diff_high"], signed=True, missing=footnotes.mark(row["note"]))


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
