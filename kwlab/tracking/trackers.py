"""The trackers a sweep runner keeps up to date from the results store: the Optuna study (always) and MLflow (when
the spec asks). Built before launch, so an unreachable MLflow server is one line before any trial runs; during the
sweep a tracker that fails says so in one line and the sweep goes on (the store holds everything, and the next sync,
or the rerun, catches the tracker up)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kwlab import store
from kwlab.sweep.spec import SweepSpec
from kwlab.tracking import trial_method
from kwlab.tracking.optuna_store import OptunaMirror, optuna_value


class Trackers:
    """The Optuna mirror and, with `tracking.mlflow`, the MLflow tracker of one sweep run."""

    def __init__(self, spec: SweepSpec, store_path: Path) -> None:
        self.optuna = OptunaMirror(spec, store_path)
        self.mlflow = None
        if spec.tracking.mlflow is not None:
            from kwlab.tracking.mlflow import MLflowTracker

            settings = spec.tracking.mlflow
            self.mlflow = MLflowTracker(settings.uri, settings.experiment or spec.name, spec.name, spec.metric.name)
        self.say: Callable[[str], None] = print
        self.failing: set[str] = set()  # the trackers whose last sync failed (said once until they recover)

    def sync(self, dirs: list[store.TrialDir], mirrored: bool = True) -> None:
        """Bring the trackers up to date with these trial directories; `mirrored`: also as Optuna trials of their
        own (grid, random and cases; a bayes suggestion is OptunaSearch's trial)."""
        for trial in dirs:
            if mirrored:
                self._guard("optuna", self.optuna.sync, trial)
            if self.mlflow is not None:
                self._guard(f"MLflow ({self.mlflow.uri})", self.mlflow.sync, trial)

    def suggestion(self, point: dict[str, Any], dirs: list[store.TrialDir]) -> None:
        """Name the OptunaSearch trial of a bayes suggestion by the kwlab trials that train it."""
        metas = [meta for trial in dirs if (meta := trial.sweep_meta())]
        if not metas:
            return
        statuses = sorted({trial.status() for trial in dirs})
        method = next((m for trial in dirs if (m := trial_method(trial))), None)
        attrs = {"variant_id": metas[0]["variant_id"], "variant": metas[0]["variant"],
                 "seeds": [meta["seed"] for meta in metas], "trial_ids": [meta["trial_id"] for meta in metas],
                 "status": "/".join(statuses), **({"method": method} if method else {})}
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
