"""What the seeds of a sweep can detect: the minimal detectable difference (MDD) of the paired t-test, the seeds
needed to detect a given difference, and `kwlab power RESULTS`, that table for every comparison of a pilot store.

The paired t-test on n seed-wise differences (mean d, sd s) rejects "no difference" at level alpha when
|t| = |d| / (s / sqrt(n)) > t_{n-1, 1 - alpha/2}. When the true mean difference is delta and the true sd sigma, t
follows a noncentral t distribution with n - 1 degrees of freedom and noncentrality delta * sqrt(n) / sigma, so the
power is P(|T| > t_crit), both tails counted (as statsmodels' `TTestPower` does). Then
- the MDD at n seeds is s * e(n), where e(n) is the standardised effect whose power is the target (0.8), solved
  with brentq and with sigma set to the observed s;
- the seeds needed for a difference delta are the smallest n (at least `minimum`) whose power reaches the target.
Both take the observed s for sigma: with few pilot seeds that s is itself uncertain (`sd_range` says how much).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import optimize
from scipy import stats as scipy_stats

from kwlab.errors import KWLabError
from kwlab.store import Store

if TYPE_CHECKING:  # imported where used: analysis.schedules draws on matplotlib's styles
    from analysis.schedules import Schedules

ALPHA = 0.05  # two-sided, the level of the paired test and of the 95% interval
POWER = 0.8
MAX_SEEDS = 10_000  # seeds_needed gives up (returns inf) beyond this
POWER_COLUMNS = ["mdd", "seeds_for_diff", "seeds_for_effect"]


def paired_power(effect_size: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test with n pairs at the standardised effect delta / sigma; nan below 2."""
    if n < 2 or not np.isfinite(effect_size):
        return float("nan")
    df = n - 1
    critical = scipy_stats.t.ppf(1 - alpha / 2, df)
    shift = abs(effect_size) * math.sqrt(n)  # the noncentrality
    upper = scipy_stats.nct.sf(critical, df, shift)
    if not np.isfinite(upper):
        upper = 1 - scipy_stats.nct.cdf(critical, df, shift)
    lower = scipy_stats.nct.cdf(-critical, df, shift)
    # NOTE: scipy's nct gives nan far in its lower tail (e.g. df 99, noncentrality 22); there P(T < -c) is below
    # P(T < c), itself ~1e-87, so it counts as 0
    return float(upper + (lower if np.isfinite(lower) else 0.0))


def detectable_effect_size(n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The standardised effect (delta / sigma) that n pairs detect with the given power; nan below 2 pairs."""
    if n < 2:
        return float("nan")
    if not 0 < alpha < power < 1:
        raise KWLabError(f"power: expected alpha < power < 1, got alpha {alpha} and power {power}")
    high = 1.0
    while paired_power(high, n, alpha) < power:  # bracket the root: power grows with the effect
        high *= 2
    return float(optimize.brentq(lambda e: paired_power(e, n, alpha) - power, 0.0, high, xtol=1e-10))


def minimal_detectable_difference(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true mean difference that n paired seeds with differences of sd `sd` detect (two-sided test at
    `alpha`) with probability `power`; nan below 2 pairs or without a positive sd (no estimate of the noise)."""
    if n < 2 or not np.isfinite(sd) or sd <= 0:
        return float("nan")
    return sd * detectable_effect_size(n, alpha, power)


def seeds_needed(difference: float, sd: float, alpha: float = ALPHA, power: float = POWER, *, minimum: int = 2,
                 limit: int = MAX_SEEDS) -> float:
    """The fewest paired seeds (at least `minimum`) whose paired t-test detects a true mean difference `difference`
    with probability `power`, the differences' sd being `sd`; inf for a zero difference or beyond `limit`, nan
    without a positive sd."""
    if not (np.isfinite(sd) and sd > 0 and np.isfinite(difference)):
        return float("nan")
    effect = abs(difference) / sd
    low = max(2, minimum)
    if paired_power(effect, low, alpha) >= power:
        return float(low)
    if effect == 0:
        return math.inf
    high = low  # power grows with n: double until it reaches the target, then bisect on the integers
    while paired_power(effect, high, alpha) < power:
        if high >= limit:
            return math.inf
        low, high = high, min(2 * high, limit)
    while high - low > 1:  # power(low) < target <= power(high)
        middle = (low + high) // 2
        if paired_power(effect, middle, alpha) >= power:
            high = middle
        else:
            low = middle
    return float(high)


def sd_range(n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Factors (low, high): with n pairs, the true sd lies within [low * s, high * s] of the observed s with the
    given confidence (chi-square interval of a normal sample's sd); nan below 2."""
    if n < 2:
        return float("nan"), float("nan")
    df, tail = n - 1, (1 - confidence) / 2
    return (math.sqrt(df / scipy_stats.chi2.ppf(1 - tail, df)), math.sqrt(df / scipy_stats.chi2.ppf(tail, df)))


def with_power(summary: pd.DataFrame, *, effect: float | None = None, alpha: float = ALPHA, power: float = POWER,
               minimum: int = 3) -> pd.DataFrame:
    """`analysis.stats.summarize`'s table with three columns more, for the rows whose difference is estimable (a
    finite interval): `mdd` (the minimal detectable difference at the pairs run), `seeds_for_diff` (paired seeds to
    detect the observed difference) and `seeds_for_effect` (to detect `effect`, nan without one). `minimum` is
    the fewest seeds the report estimates from (analysis.stats.MIN_SEEDS)."""
    out = summary.copy()
    for column in POWER_COLUMNS:
        out[column] = np.nan
    for index, row in out.iterrows():
        if not (np.isfinite(row["diff_low"]) and np.isfinite(row["diff_sd"])):
            continue
        out.loc[index, "mdd"] = minimal_detectable_difference(row["diff_sd"], int(row["n_pairs"]), alpha, power)
        out.loc[index, "seeds_for_diff"] = seeds_needed(row["diff"], row["diff_sd"], alpha, power, minimum=minimum)
        if effect is not None:
            out.loc[index, "seeds_for_effect"] = seeds_needed(effect, row["diff_sd"], alpha, power, minimum=minimum)
    return out


def equal_cost_power(trials: pd.DataFrame, variants: pd.DataFrame, metric: str, *, effect: float | None = None,
                     alpha: float = ALPHA, power: float = POWER) -> dict[str, pd.DataFrame]:
    """analysis.equal_cost.compare, within each schedule of a sweep of several training lengths, with the power
    columns (`with_power`) for each cost that has a static family and a variant outside it: what `kwlab report` and
    `kwlab power` show."""
    from analysis import equal_cost, schedules  # imported here, like main's imports: they draw on matplotlib's styles
    from analysis.stats import MIN_SEEDS

    out = {}
    for cost in equal_cost.COSTS:
        rows = schedules.equal_cost_within(trials, variants, metric, cost, confidence=1 - alpha)
        if len(rows):
            out[cost] = with_power(rows, effect=effect, alpha=alpha, power=power, minimum=MIN_SEEDS)
    return out


def schedule_power(found: Schedules, *, effect: float | None = None, alpha: float = ALPHA,
                   power: float = POWER) -> Schedules:
    """analysis.schedules.compare's comparisons per schedule and changes with the power columns (`with_power`)."""
    from analysis.stats import MIN_SEEDS

    return dataclasses.replace(found, **{name: with_power(getattr(found, name), effect=effect, alpha=alpha,
                                                           power=power, minimum=MIN_SEEDS)
                                         for name in ("rows", "changes")})


def seeds_text(seeds: float) -> str:
    """'12', or '> 10,000' (a zero difference, or beyond MAX_SEEDS); a dash when not estimable."""
    if not np.isfinite(seeds):
        return "—" if np.isnan(seeds) else f"> {MAX_SEEDS:,}"
    return f"{int(seeds)}"


# -- `kwlab power`


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `kwlab power`."""
    parser.add_argument("results", metavar="RESULTS_DIR", help="a pilot results store written by `kwlab sweep`")
    parser.add_argument("--effect", type=float, metavar="PP",
                        help="also the seeds needed to detect a difference of this size (in the metric's unit: "
                             "percentage points for accuracies)")
    parser.add_argument("--power", type=float, default=POWER, help="target power (default %(default)s)")
    parser.add_argument("--alpha", type=float, default=ALPHA, help="two-sided test level (default %(default)s)")
    parser.add_argument("--metric", help="trials column to compare (default: test_top1, the final model on the test "
                                         "split; best_val_top1 for a store without test metrics)")
    parser.add_argument("--baseline", help="variant name or id to compare against (default: the spec's baseline)")
    parser.add_argument("--json", action="store_true", help="print the table as JSON instead")


def main(args: argparse.Namespace) -> int:
    """Print the seeds needed per comparison of a pilot store."""
    # imported here: analysis.stats builds on this module, and `kwlab` imports every command's module for its parser
    from analysis import equal_cost, schedules
    from analysis.stats import MIN_SEEDS, summarize
    from analysis.sweep import diff_unit, load_sweep, metric_label, resolution, variants

    if not 0 < args.alpha < args.power < 1:
        raise KWLabError(f"--power, --alpha: expected 0 < alpha < power < 1, got alpha {args.alpha} and power "
                         f"{args.power}")
    if args.effect is not None and not (np.isfinite(args.effect) and args.effect != 0):
        raise KWLabError(f"--effect: expected a nonzero difference, got {args.effect}")
    if not Store(args.results).exists():
        raise KWLabError(f"{args.results}: no such results store; run `kwlab sweep SPEC` first")
    sweep = load_sweep(args.results, args.metric)
    summary = summarize(sweep.trials, sweep.metric, args.baseline, confidence=1 - args.alpha)
    table = with_power(summary, effect=args.effect, alpha=args.alpha, power=args.power, minimum=MIN_SEEDS)
    baseline = summary.loc[summary["is_baseline"], "variant"]
    rows = [table[~table["is_baseline"]].assign(versus=str(baseline.iloc[0]) if len(baseline) else None,
                                                comparison=lambda t: t["variant"])]
    table = variants(sweep)
    versus_static = equal_cost_power(sweep.trials, table, sweep.metric, effect=args.effect, alpha=args.alpha,
                                     power=args.power)
    for cost, versus in versus_static.items():  # against the static family at equal cost, when there is one
        at = equal_cost.SHORT[cost]
        rows.append(versus.assign(versus=f"static at equal {at}", comparison=versus["variant"] + f" @ equal {at}"))
    base_id = summary.loc[summary["is_baseline"], "variant_id"]
    found = schedules.compare(sweep.trials, table, sweep.metric, str(base_id.iloc[0]) if len(base_id) else None,
                              sweep.factors, confidence=1 - args.alpha)
    if found is not None:  # per training length, and the change of each gap with it
        rows += _schedule_rows(schedule_power(found, effect=args.effect, alpha=args.alpha, power=args.power))
    rows = pd.concat(rows, ignore_index=True)
    unit = diff_unit(sweep.metric)
    report = {"store": str(sweep.path), "sweep": sweep.name, "metric": sweep.metric, "metric_note": sweep.metric_note,
              "baseline": str(baseline.iloc[0]) if len(baseline) else None, "alpha": args.alpha,
              "power": args.power, "effect": args.effect, "unit": unit, "resolution": resolution(sweep),
              "comparisons": [_json_row(row) for row in rows.to_dict("records")]}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _print_table(report, rows, metric_label(sweep.metric))
    return 0


def _schedule_rows(found: Schedules) -> list[pd.DataFrame]:
    """`kwlab power`'s rows of a sweep of several training lengths: each comparison at each length
    ('budget=1 @ 3 epochs', 'budget=1 @ equal params, 3 epochs') and the change of each gap from the shortest length
    to the longest ('budget=1: change 1→3 epochs, same width', versus its gap at the shortest)."""
    from analysis.schedules import COMPARISONS, WIDTH
    from analysis.style import plural

    rows, changes = found.rows, found.changes
    cost = rows["comparison"] != WIDTH
    words, epochs = rows["comparison"].map(COMPARISONS) + ", ", rows["epochs"].map(lambda n: plural(n, "epoch"))
    at = rows.assign(variant=rows["group"], versus=rows["versus"].where(~cost, "static at " + words + epochs),
                     comparison=rows["group"] + " @ " + words.where(cost, "") + epochs)
    words = changes["comparison"].map(COMPARISONS)
    change = changes.assign(variant=changes["group"], versus=f"its gap at {found.lengths[0]} epochs, " + words,
                            comparison=changes["group"] + f": change {found.lengths[0]}→{found.longest} epochs, "
                            + words)
    return [at, change]


def _json_value(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    return value


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("variant", "variant_id", "versus", "n_pairs", "diff", "diff_sd", "diff_low", "diff_high", "p", "p_holm",
            "resolved", "mdd", "seeds_for_diff", "seeds_for_effect", "note")
    out = {key: _json_value(row.get(key)) for key in keys}
    for key in ("seeds_for_diff", "seeds_for_effect"):  # whole seeds; null: not estimable, or beyond MAX_SEEDS
        out[key] = None if out[key] is None else int(out[key])
    return out


def _print_table(report: dict[str, Any], rows: pd.DataFrame, label: str) -> None:
    from rich.console import Console
    from rich.table import Table

    unit = f" ({report['unit']})" if report["unit"] else ""
    effect = report["effect"]
    title = (f"{report['sweep']}: {label} vs {report['baseline'] or 'no baseline'}; paired two-sided "
             f"t-test, alpha {report['alpha']:g}, power {report['power']:g}")
    table = Table(title=title, title_justify="left")
    columns = ["comparison", "pairs", f"Δ{unit}", "sd of Δ", f"MDD now{unit}", "resolved", "seeds for Δ"]
    if effect is not None:
        columns.append(f"seeds for ±{abs(effect):g}{report['unit'] and ' ' + report['unit']}")
    for column in columns:
        table.add_column(column, justify="left" if column == "comparison" else "right")
    for row in rows.to_dict("records"):
        estimable = np.isfinite(row["diff_low"])
        cells = [str(row["comparison"]), str(row["n_pairs"]), _number(row["diff"], signed=True), _number(row["diff_sd"]),
                 _number(row["mdd"]), ("yes" if row["resolved"] else "no") if estimable else "—",
                 seeds_text(row["seeds_for_diff"])]
        if effect is not None:
            cells.append(seeds_text(row["seeds_for_effect"]))
        table.add_row(*cells)
    console = Console()
    console.width = max(console.width, 120)
    console.print(table)
    lines = [report["metric_note"], f"Resolution: {report['resolution']}." if report["resolution"] else ""]
    missing = rows.loc[~np.isfinite(rows["diff_low"].astype(float)), ["comparison", "note"]]
    lines += [f"{row['comparison']}: {row['note']}" for row in missing.to_dict("records") if row["note"]]
    pairs = rows.loc[np.isfinite(rows["diff_low"].astype(float)), "n_pairs"]
    if len(pairs):
        n = int(pairs.min())
        low, high = sd_range(n)
        fewest = " (the fewest here)" if pairs.nunique() > 1 else ""
        lines.append(f"MDD and seeds take the pilot's sd of the paired differences as the truth; with {n} pairs{fewest} "
                     f"the true sd may be {low:.2f} to {high:.2f} times the observed one (95%), so read them as rough.")
    for line in filter(None, lines):
        console.print(line, highlight=False, soft_wrap=True)


def _number(value: float, signed: bool = False) -> str:
    if value is None or not np.isfinite(value):
        return "—"
    return f"{value:+.2f}" if signed else f"{value:.2f}"
