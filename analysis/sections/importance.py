"""The report's 'Which setting mattered': the importance of each swept key (analysis.importance), with its bars, a
parallel-coordinates figure and slice plots, for a sweep of two or more swept keys."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.analyse import Analysis
from analysis.figures.importance import importance_bars, parallel_coordinates, slices
from analysis.importance import EVALUATOR, SEED, parameter_importance, swept_groups
from analysis.section import Part, Section
from analysis.style import plural, save_figure
from analysis.sweep import metric_label
from analysis.tables import to_markdown


def _left_out_words(left_out: dict[str, int]) -> str:
    if not left_out:
        return "none left out"
    return "left out: " + ", ".join(f"{n} {reason}" for reason, n in left_out.items())


def write(result: Analysis, out: Path) -> list[Section]:
    """The importance table and bars, the parallel-coordinates figure and the slice plots, or why there are too few
    trials for them; nothing for a sweep of fewer than two swept keys."""
    sweep = result.sweep
    groups = swept_groups(sweep, result.variants)
    if len(groups) < 2:
        return []
    found = parameter_importance(sweep, groups)
    counted = (f"{plural(len(found.study.trials), 'finished trial')} (one per seed; "
               f"{_left_out_words(found.left_out)})")
    titles = ", ".join(found.titles.values())
    label = metric_label(sweep.metric)
    if found.missing is not None:
        return [Section("Which setting mattered", f"No parameter importance of {titles} yet: it uses the finished "
                        f"trials with a finite {label}, and this sweep has {counted}: {found.missing}.")]
    found.importances.to_csv(out / "importance.csv", index=False)
    table = to_markdown(pd.DataFrame({"swept key": found.importances["title"],
                                      "importance": found.importances["importance"].map("{:.3f}".format)}))
    top = found.importances.iloc[0]
    sentence = (f"How much of the variation of {label} over {counted} each swept key explains, by Optuna's "
                f"{EVALUATOR} evaluator (`optuna.importance.FanovaImportanceEvaluator`, seed {SEED}; named, because "
                f"Optuna 5 changed the default to PED-ANOVA); the importances sum to 1 "
                f"([CSV](importance.csv)). {top['title']} mattered most ({top['importance']:.2f}).")
    bars = importance_bars(found.importances.assign(key=found.importances["title"]), EVALUATOR)
    return [
        Section("Which setting mattered", sentence, save_figure(bars, out / "importance"), text=table),
        Section("Parallel coordinates", f"Every trial counted above as a line through its swept values to its "
                f"{label} (colour: {label}).", save_figure(parallel_coordinates(found.study, found.keys, label),
                                                           out / "parallel_coordinates")),
        Section("Slices", f"{label} of every trial counted above against each swept key.",
                save_figure(slices(found.study, found.keys, label), out / "slices")),
    ]


PART = Part("which setting mattered", write, figures=("importance", "parallel_coordinates", "slices"),
            files=("importance.csv",))
