"""The report over several stores: one report.md linking each store's own report, with accuracy against price over
all of their variants, one colour and marker per sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.analyse import Analysis
from analysis.figures.params_accuracy import params_accuracy
from analysis.section import Section
from analysis.sections.prices import PRICES
from analysis.style import PAGE_WIDTH, human_count, marker_cycle, save_figure
from analysis.sweep import describe_metric, metric_label
from analysis.tables import estimate, to_markdown
from kwlab.best import natural_goal


def write_combined(results: list[tuple[str, Analysis]], reports: list[tuple[str, Path]], out: Path) -> Path:
    """OUT/report.md over the sweeps `results` (name, analysis), whose own reports are `reports`."""
    frames = [r.points.assign(sweep=name) for name, r in results]
    points = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not points.empty:  # a baseline shared by several sweeps (same config) is drawn once
        shared = points["is_baseline"] & points.duplicated("variant_id")
        points = points[~shared]
    metrics = {r.sweep.metric for _, r in results}
    metric = next(iter(metrics)) if len(metrics) == 1 else "metric"
    lines = ["# Sweeps compared", "", "Reports: " + ", ".join(
        f"[{name}]({path.relative_to(out).as_posix()})" for name, path in reports) + ".", ""]
    if len(metrics) > 1:
        lines += ["The sweeps compare different metrics (" + "; ".join(
            f"{name}: {describe_metric(r.sweep.metric)}" for name, r in results) + "), so the figures below put "
            "different numbers on one axis; rerun with `--metric` to compare them.", ""]
    names = [name for name, _ in results]
    for x, stem, what in PRICES:
        if points.empty or x not in points or points[x].isna().all():
            continue
        fig = params_accuracy(points, x=x, hue="sweep", hue_title="sweep", markers=marker_cycle(names),
                              y_label=metric_label(metric), maximize=natural_goal(metric) != "minimize",
                              width=PAGE_WIDTH / 1.6, height=3.0)
        lines += Section(f"Accuracy against {what}", f"Every variant of the sweeps {', '.join(names)}: mean "
                         f"{metric_label(metric)} over seeds (bars: 95% interval) against its {what}, one colour and "
                         f"marker per sweep, baselines as stars, the Pareto front over all of them dashed.",
                         save_figure(fig, out / stem)).markdown(out)
    rows = [{"sweep": name, "variant": r["variant"], "params": human_count(r.get("params_total", np.nan)),
             f"{metric_label(metric)} [95% CI]": estimate(r["mean"], r["ci_low"], r["ci_high"]),
             "seeds": str(r["n_seeds"])} for name, result in results for r in result.points.to_dict("records")]
    if rows:
        lines += Section("The points", "The variants plotted above, sweep by sweep.",
                         text=to_markdown(pd.DataFrame(rows))).markdown(out)
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return report
