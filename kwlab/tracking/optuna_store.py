"""optuna.db: a sweep as an Optuna study (Optuna's RDB storage on SQLite) in its results store, for optuna-dashboard
and `optuna.load_study`.

One study, named after the sweep. Grid and random sweeps (and the cases of any sweep) are mirrored from the runner
through Optuna's public API: each kwlab trial (a variant at one seed) is an Optuna trial, keyed by its kwlab trial id
(user attribute `trial_id`), with its swept values as params (a case's name as the param `case`), each epoch's metric
as an intermediate value, its best metric as its value, and its status as its state. A trial run again after a
failure is a new Optuna trial with the same `trial_id` (Optuna's finished trials are immutable), as Optuna's own
`RetryFailedTrialCallback` does. `bayes` sweeps give this storage to Ray Tune's OptunaSearch, whose trials are
variants judged on the mean over their seeds; the runner adds the variant's ids, seeds and method to them.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from kwlab import store

STATES = {"finished": TrialState.COMPLETE, "stopped": TrialState.PRUNED, "failed": TrialState.FAIL}
CASE = "case"  # the param naming a case (an explicit variant outside the parameters' space)
RETRY_OF = "retry_of"  # user attribute of a bayes suggestion run again: the number of the trial it repeats


def storage_url(db: Path) -> str:
    """The SQLite URL of an optuna.db (what `optuna-dashboard` and `optuna.load_study` take)."""
    return f"sqlite:///{db.resolve()}"


def _storage_or_fresh(db: Path, say: Callable[[str], None]) -> optuna.storages.RDBStorage:
    """The storage in `db`, or, when the file is damaged (truncated, overwritten, not SQLite), a fresh one after the
    damaged file is set aside beside it, with one line: the runner mirrors the store into it again."""
    try:
        storage = open_storage(db)
        optuna.get_all_study_summaries(storage)
        return storage
    except (sqlite3.DatabaseError, sqlalchemy.exc.SQLAlchemyError) as error:
        aside = db.with_name(f"{db.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                db.with_name(db.name + suffix).rename(aside.with_name(aside.name + suffix))
        reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
        say(f"{db}: damaged ({reason}); set aside as {aside.name}, and the sweep is mirrored into a new one from "
            "the store")
        return open_storage(db)


def open_storage(db: Path) -> optuna.storages.RDBStorage:
    """The Optuna storage in the SQLite file `db`, in write-ahead-log mode: a reader (optuna-dashboard,
    `optuna.load_study`) never waits for the runner's writes, nor the runner for a reader."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # NOTE: WAL needs the readers on the runner's host (SQLite's shared memory); a reader elsewhere copies the file
    with contextlib.closing(sqlite3.connect(db)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
    return optuna.storages.RDBStorage(storage_url(db), engine_kwargs={"connect_args": {"timeout": 60}})


def optuna_value(value: Any) -> Any:
    """A swept value as Optuna stores it: None, bool, int, float and str as they are, anything else as JSON text."""
    return value if value is None or isinstance(value, bool | int | float | str) else json.dumps(value)


class OptunaMirror:
    """A sweep's study in `db`, kept up to date by the runner from the trial records (idempotent: syncing a record
    twice changes nothing, so a resumed or killed sweep is mirrored again from the store). `space` holds the swept
    keys' distributions, `cases` the names of the explicit variants."""

    def __init__(self, db: Path, name: str, metric: str, goal: str, space: dict[str, BaseDistribution],
                 cases: list[str], say: Callable[[str], None] = print) -> None:
        self.storage = _storage_or_fresh(db, say)
        self.space = space
        self.cases = {CASE: CategoricalDistribution(cases)} if cases else {}
        self.case_names = set(cases)
        self.name = self._version(name, say)  # the study's name: the sweep's, or its newest version's
        self.study = optuna.create_study(storage=self.storage, study_name=self.name, direction=goal,
                                         load_if_exists=True)
        self.study_id = self.storage.get_study_id_from_name(self.name)
        self.metric = metric
        self.latest: dict[str, int] = {}  # kwlab trial id -> storage id of its latest Optuna trial
        for trial in self.study.get_trials(deepcopy=False):
            if "trial_id" in trial.user_attrs:
                self.latest[trial.user_attrs["trial_id"]] = self._storage_id(trial.number)

    def _version(self, name: str, say: Callable[[str], None]) -> str:
        """`name`, or, when the spec's space no longer fits that study's trials (a value added to a swept key: Optuna's
        distributions cannot grow), the first version `name.v2`, `name.v3`, ... that fits (new: empty, mirrored from
        the store)."""
        studies = {study.study_name: study for study in optuna.get_all_study_summaries(self.storage)}
        candidates = [name, *(f"{name}.v{k}" for k in range(2, len(studies) + 2))]
        chosen = next(n for n in candidates if n not in studies or self._fits(n))
        if chosen != name and chosen not in studies:
            say(f"optuna.db: the swept values changed, so study {name!r} cannot take them; the sweep is mirrored into "
                f"a new study {chosen!r} (the earlier one is kept)")
        return chosen

    def _fits(self, name: str) -> bool:
        """Whether every trial of study `name` has the distributions the spec now gives its params."""
        space = {**self.space, **self.cases}
        trials = optuna.load_study(study_name=name, storage=self.storage).get_trials(deepcopy=False)
        return all(space.get(key, dist) == dist for t in trials for key, dist in t.distributions.items())

    def _storage_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def _params(self, meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, BaseDistribution]]:
        if meta["variant"] in self.case_names:
            return {CASE: meta["variant"]}, self.cases
        params = {k: optuna_value(v) for k, v in meta.get("parameters", {}).items() if k in self.space}
        return params, {k: self.space[k] for k in params}

    def sync(self, record: store.TrialRecord) -> None:
        """Bring the trial's Optuna trial up to date with its record: created once it runs, its new epochs as
        intermediate values, its status as a user attribute and, once it ends, as its state with the metric at its
        best epoch (kwlab.best) as its value."""
        meta, status = record.meta, record.status
        if not record.identified or status == "pending":
            return
        history = record.epochs
        current = self._current(meta["trial_id"])
        if current is not None and current.state.is_finished():
            if STATES.get(status) == current.state:
                return
            current = None  # it ran again (after a failure): a new attempt
        if current is None:
            current = self._create(record)
        tid = self.latest[meta["trial_id"]]
        for epoch in history:
            value = epoch.get(self.metric)
            if epoch["epoch"] not in current.intermediate_values and isinstance(value, int | float) \
                    and math.isfinite(value):
                self.storage.set_trial_intermediate_value(tid, epoch["epoch"], float(value))
        for key, value in (("status", status), ("method", record.method)):
            if value is not None and current.user_attrs.get(key) != value:
                self.storage.set_trial_user_attr(tid, key, value)
        if status in STATES:
            best = record.best
            finished = STATES[status] if status != "finished" or best is not None else TrialState.FAIL
            value = float(best[record.metric[0]]) if best is not None else None
            self.study.tell(current.number, value if finished == TrialState.COMPLETE else None, state=finished)

    def _current(self, trial_id: str) -> FrozenTrial | None:
        tid = self.latest.get(trial_id)
        return None if tid is None else self.storage.get_trial(tid)

    def _create(self, record: store.TrialRecord) -> FrozenTrial:
        meta = record.meta
        params, space = self._params(meta)
        attempts = sum(t.user_attrs.get("trial_id") == meta["trial_id"] for t in self.study.get_trials(deepcopy=False))
        template = optuna.trial.create_trial(
            state=TrialState.RUNNING, params=params, distributions=space,
            user_attrs={"trial_id": meta["trial_id"], "variant_id": meta["variant_id"], "variant": meta["variant"],
                        "seed": meta["seed"], "attempt": attempts + 1})
        tid = self.storage.create_new_trial(self.study_id, template_trial=template)
        self.latest[meta["trial_id"]] = tid
        return self.storage.get_trial(tid)

    def tag_suggestion(self, point: dict[str, Any], attrs: dict[str, Any]) -> None:
        """Name the running OptunaSearch trial that suggested `point` (bayes): variant id and name, seeds, kwlab trial
        ids, method and status, as user attributes."""
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if "trial_id" not in trial.user_attrs and trial.params == point:
                for key, value in attrs.items():
                    if trial.user_attrs.get(key) != value:
                        self.storage.set_trial_user_attr(self._storage_id(trial.number), key, value)
                return

    def restore_suggestions(self, records: list[store.TrialRecord]) -> int:
        """Put the store's bayes suggestions (trials of points OptunaSearch chose, grouped by variant) back into a
        study that lacks them (optuna.db set aside as damaged, or removed), valued at the mean over their seeds of
        each seed's best metric, so the seeded search goes on from them; returns how many were added."""
        known = {t.user_attrs.get("variant_id") for t in self.study.get_trials(deepcopy=False)}
        by_variant: dict[str, list[store.TrialRecord]] = {}
        for record in records:
            if record.identified and record.meta["variant_id"] not in known:
                by_variant.setdefault(record.meta["variant_id"], []).append(record)
        for group in by_variant.values():
            meta = group[0].meta
            params = {k: optuna_value(v) for k, v in meta.get("parameters", {}).items() if k in self.space}
            bests = [float(best[r.metric[0]]) for r in group if r.done and (best := r.best) is not None]
            finished = len(bests) == len(group)
            self.study.add_trial(optuna.trial.create_trial(
                state=TrialState.COMPLETE if finished else TrialState.FAIL, params=params,
                distributions={k: self.space[k] for k in params}, value=sum(bests) / len(bests) if finished else None,
                user_attrs={"variant_id": meta["variant_id"], "variant": meta["variant"],
                            "seeds": [r.meta["seed"] for r in group], "trial_ids": [r.trial_id for r in group]}))
        return len(by_variant)

    def suggestions_to_run(self, num_samples: int) -> int:
        """How many OptunaSearch trials a (re)run of a bayes sweep asks for: the suggestions it has not made yet,
        plus each earlier one that failed or whose runner died (it is enqueued again, so its seeds resume from
        their checkpoints) and each still enqueued."""
        searched = [t for t in self.study.get_trials(deepcopy=False) if "trial_id" not in t.user_attrs]
        repeated = {t.user_attrs.get(RETRY_OF) for t in searched}
        waiting = [t for t in searched if t.state == TrialState.WAITING]
        again = [t for t in searched if t.state in (TrialState.RUNNING, TrialState.FAIL) and t.number not in repeated]
        for trial in again:
            if trial.state == TrialState.RUNNING:  # the runner holding it is gone (this one holds the store's lock)
                self.study.tell(trial.number, state=TrialState.FAIL)
            self.study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})
        made = sum(RETRY_OF not in t.user_attrs for t in searched)
        return len(waiting) + len(again) + max(0, num_samples - made)
