"""Which swept setting mattered: the importance of each swept key on the report's metric (the report's section and
figures: analysis.sections.importance), for a sweep of two or more swept keys.

Built from the store's trials (not from optuna.db, so any store, however old, gets it): every finished trial with a
finite metric and a value for every swept key is one trial of an in-memory Optuna study, with the spec's
distributions. Failed, stopped and unfinished trials, trials with a NaN metric and cases (variants outside the swept
keys) are left out and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd

from analysis.sweep import Sweep, factor_groups, group_title
from kwlab.sweep.spec import Parameter
from kwlab.sweep.space import optuna_distributions
from kwlab.tracking.optuna_store import optuna_value

EVALUATOR = "fANOVA"  # NOTE: named, not Optuna's default: Optuna 5 changed the default from fANOVA to PED-ANOVA
MOST_TRIALS = 2000  # importance from at most this many trials
SEED = 0  # fANOVA's random forest
# NOTE: below four trials fANOVA's forest fits noise; Optuna itself refuses fewer than two
MIN_TRIALS = 4


@dataclass
class Importance:
    """The importance of a sweep's swept keys: the study it was computed from and what was left out."""

    keys: list[str]  # one dotted key per swept group (keys zipped in lock-step are one group)
    titles: dict[str, str]  # key -> its group's title
    study: optuna.Study
    importances: pd.DataFrame  # key, title, importance (empty when not estimable)
    left_out: dict[str, int]  # reason -> trials
    missing: str | None  # why the importances are not estimable, or None


def swept_groups(sweep: Sweep, variants: pd.DataFrame) -> list[list[str]]:
    """The spec's parameters that take two values or more across the variants, zipped keys grouped."""
    keys = [key for key in (sweep.spec.get("parameters") or {}) if key in variants]
    return factor_groups(variants, keys)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def parameter_importance(sweep: Sweep, groups: list[list[str]]) -> Importance:
    """Optuna's fANOVA importance of each group's key on the sweep's metric, over the usable finished trials; an
    empty table, and why, when they cannot say (fewer than MIN_TRIALS, one value of the metric, or of a key)."""
    keys = [group[0] for group in groups]
    trials, metric = sweep.trials, sweep.metric
    left_out = {status: int(n) for status, n in trials["status"].value_counts().items() if status != "finished"}
    finished = sweep.finished
    outside = finished[keys].isna().any(axis=1)
    values = pd.to_numeric(finished[metric], errors="coerce") if metric in finished else pd.Series(np.nan,
                                                                                                   finished.index)
    nan = ~outside & ~np.isfinite(values.astype(float))
    left_out |= {"cases outside the swept keys": int(outside.sum()), f"NaN {metric}": int(nan.sum())}
    space = optuna_distributions({key: Parameter(**{k: v for k, v in sweep.spec["parameters"][key].items() if v is not None})
                           for key in keys})
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=sweep.goal)
    usable_rows = finished[~outside & ~nan]
    if len(usable_rows) > MOST_TRIALS:  # fANOVA's forest grows with the trials: a seeded sample explains as much
        left_out |= {f"not in the seeded sample of {MOST_TRIALS:,}": len(usable_rows) - MOST_TRIALS}
        usable_rows = usable_rows.sample(MOST_TRIALS, random_state=SEED)
    for (_, row), value in zip(usable_rows.iterrows(), values[usable_rows.index], strict=True):
        study.add_trial(optuna.trial.create_trial(params={k: optuna_value(_plain(row[k])) for k in keys},
                                                  distributions=space, value=float(value)))
    titles = {group[0]: group_title(group) for group in groups}
    table = pd.DataFrame(columns=["key", "title", "importance"])
    usable = study.trials
    single = [titles[k] for k in keys if len({t.params[k] for t in usable}) < 2]
    missing = (f"too few so far (it needs at least {MIN_TRIALS})" if len(usable) < MIN_TRIALS
               else f"every one has the same {metric}, so there is nothing to explain"
               if len({t.value for t in usable}) < 2
               else f"{', '.join(single)} took one value among them" if single else None)
    if missing is None:
        found = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=SEED), params=keys)
        table = pd.DataFrame([{"key": k, "title": titles[k], "importance": v} for k, v in found.items()])
    return Importance(keys, titles, study, table, {k: v for k, v in left_out.items() if v}, missing)
