"""The trackers a sweep runner keeps up to date from the trial records: the Optuna study (always) and MLflow (when
the spec asks). Built before launch, so an unreachable MLflow server is one line before any trial runs; during the
sweep a tracker that fails says so in one line and the sweep goes on (the store holds everything, and the next sync,
or the rerun, catches the tracker up)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.distributions import BaseDistribution

from kwlab import store
from kwlab.tracking.optuna_store import OptunaMirror, optuna_value


@dataclass(frozen=True)
class Tracking:
    """What the trackers need to know of a sweep, as plain values: its name, metric and goal, the swept keys'
    distributions, the cases' names, where optuna.db is, and the MLflow server and experiment (if any)."""

    name: str
    metric: str
    goal: str
    space: dict[str, BaseDistribution]
    cases: list[str]
    optuna_db: Path
    mlflow_uri: str | None = None
    mlflow_experiment: str | None = None
    wandb: bool = False  # the trials write W&B runs (checked here: installed)


class Trackers:
    """The Optuna mirror and, with an MLflow server, the MLflow tracker of one sweep run."""

    def __init__(self, tracking: Tracking, results: store.Store) -> None:
        self.results, self.optuna_db = results, tracking.optuna_db
        self.optuna = OptunaMirror(tracking.optuna_db, tracking.name, tracking.metric, tracking.goal, tracking.space,
                                   tracking.cases, say=lambda text: print(text, flush=True))
        self.mlflow = None
        if tracking.wandb:
            from kwlab.tracking.wandb import check_installed

            check_installed()
        if tracking.mlflow_uri is not None:
            from kwlab.tracking.mlflow import MLflowTracker

            self.mlflow = MLflowTracker(tracking.mlflow_uri, tracking.mlflow_experiment or tracking.name,
                                        tracking.name, tracking.metric)
        self.say: Callable[[str], None] = print
        self.failing: set[str] = set()  # the trackers whose last sync failed (said once until they recover)

    def sync(self, records: list[store.TrialRecord], mirrored: bool = True) -> None:
        """Bring the trackers up to date with these trial records; `mirrored`: also as Optuna trials of their own
        (grid, random and cases; a bayes suggestion is OptunaSearch's trial)."""
        for record in records:
            if mirrored:
                self._guard("optuna", self.optuna.sync, record)
            if self.mlflow is not None:
                self._guard(f"MLflow ({self.mlflow.uri})", self.mlflow.sync, record,
                            self.results.trial(record.trial_id))

    def suggestion(self, point: dict[str, Any], records: list[store.TrialRecord]) -> None:
        """Name the OptunaSearch trial of a bayes suggestion by the kwlab trials that train it."""
        named = [record for record in records if record.identified]
        if not named:
            return
        method = next((m for record in named if (m := record.method)), None)
        attrs = {"variant_id": named[0].meta["variant_id"], "variant": named[0].meta["variant"],
                 "seeds": [record.meta["seed"] for record in named], "trial_ids": [r.trial_id for r in named],
                 "status": "/".join(sorted({record.status for record in records})),
                 **({"method": method} if method else {})}
        self._guard("optuna", self.optuna.tag_suggestion, {k: optuna_value(v) for k, v in point.items()}, attrs)

    def _guard(self, name: str, action: Callable[..., None], *args: Any) -> None:
        try:
            action(*args)
        except Exception as error:  # a tracker never stops the sweep: the store holds everything
            if name not in self.failing:
                self.failing.add(name)
                self.say(f"{name}: {type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"
                         " (the sweep goes on; the store has everything, and the rerun catches the tracker up)")
        else:
            self.failing.discard(name)
