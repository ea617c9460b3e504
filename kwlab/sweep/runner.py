"""The Ray Tune adapter: runs a sweep's trials as Tune trials around `kwlab.train.run`.

The results store, not Ray's experiment state, decides what is left to do: a trial whose directory says finished or
stopped is skipped, any other one runs (resuming from its own checkpoint), so re-running a sweep resumes it, also
after the runner was killed. Ray's reporting API is touched only here.

A Tune trial trains one variant at one or more seeds. Without early stopping each (variant, seed) is its own Tune
trial. With `early_terminate` (ASHA) and with `bayes`, a Tune trial is a whole variant: its seeds train side by side,
an epoch of each in turn, and Tune sees the mean over the seeds, so ASHA stops (and Optuna judges) variants, never
single seeds, and paired comparisons keep every seed of the variants that go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune import Callback, Stopper
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kwlab import plugins, store
from kwlab.best import best_value, better
from kwlab.errors import KWLabError, WriteError
from kwlab.files import DISK_FULL
from kwlab.storage import Storage
from kwlab.sweep.capacity import check_fits, packing_warnings
from kwlab.sweep.connect import connect
from kwlab.sweep.measuring import sweep_paths
from kwlab.sweep.ray_output import ray_output_to
from kwlab.sweep.watch import (HeadWatch, LostNodes, contain_trial_errors, overdue, stop_trial,
                               trial_error_cause)
from kwlab.sweep.expand import Trial, Variant, label, price_config, resolve
from kwlab.sweep.space import optuna_distributions
from kwlab.sweep.spec import SweepSpec, Timeout
from kwlab.train.config import TrainConfig
from kwlab.tracking.trackers import Trackers, Tracking
from kwlab.train.staging import Staged

# Ray's own loggers (TensorBoard/CSV/JSON per trial) and its progress tables are off: kwlab writes its own records.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Ctrl-C reaches kwlab as KeyboardInterrupt: the runner stops Ray and reports what the store holds (see run_trials).
os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"

SCORE = "score"  # what Tune's scheduler and searcher see: the mean over the trial's seeds of each seed's best metric
LOCAL_SWEEPS = Path(tempfile.gettempdir()) / "kwlab-local-sweeps"  # a file per runner that started a local Ray
FLUSH_S = 10.0  # the tables are written at most this often while a sweep runs (and always at its end)


@dataclass(frozen=True)
class SeedRun:
    """One seed of a Tune trial: its trial id, where it is written, its typed config (validated once, when the sweep
    expanded it; Ray pickles it as it is) and seed."""

    trial_id: str
    dir: str
    config: TrainConfig
    seed: int
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)  # its sweep.json, written again if removed


@dataclass(frozen=True)
class Search:
    """A bayes suggestion's context: the base config the suggested point is applied to, the spec file (for
    messages), the store the trials go to and the seeds each suggestion trains."""

    base: dict[str, Any]
    source: str
    store: str
    seeds: list[int]


@dataclass(frozen=True)
class Job:
    """What a Tune trial needs besides its point: the plugins to import, the metric and goal its score follows,
    threads and workers, and either its seeds (`seeds`) or, for a bayes suggestion, the `search` that builds them."""

    imports: tuple[str, ...]
    metric: str
    goal: str
    threads: int
    keep: tuple[str, ...] = ("best",)  # the checkpoints a finished trial keeps (the spec's `keep`)
    workers: int = 1
    cpu: float = 1.0
    gpu: float = 0.0
    train_storage: str = ""
    wandb: dict[str, Any] | None = None  # the spec's tracking.wandb, as plain values
    paths: dict[str, str] = dataclasses.field(default_factory=dict)  # the sweep's measured path choices
    seeds: tuple[SeedRun, ...] = ()
    search: Search | None = None

    def runs(self, point: dict[str, Any]) -> list[SeedRun]:
        """The seeds this Tune trial trains: its own, or the suggested point's (their trial folders prepared)."""
        if self.search is None:
            return list(self.seeds)
        variant = Variant(label(point), point)
        trials = [Trial(variant, seed, resolve(self.search.base, variant, seed, self.search.source))
                  for seed in self.search.seeds]
        results = store.Store(self.search.store)
        prices = {trials[0].variant_id: price_config(trials[0].cfg)}
        prepare(results, trials, prices)
        return [describe_trial(trial, results, prices[trial.variant_id]) for trial in trials]


def describe_trial(trial: Trial, results: store.Store, price: dict[str, Any] | None = None) -> SeedRun:
    """One seed of a Tune trial, trained into its folder of `results` (an absolute path, or its URI)."""
    folder = results.trial(trial.trial_id).storage
    return SeedRun(trial.trial_id, str(folder.local.resolve()) if folder.local else folder.uri, trial.cfg, trial.seed,
                   sweep_meta(trial, price or {}))


def sweep_meta(trial: Trial, price: dict[str, Any]) -> dict[str, Any]:
    """A trial's sweep.json: ids, variant, seed, swept values, its variant's price, the metric that picks its best
    epoch, its epochs and method."""
    return {"trial_id": trial.trial_id, "variant_id": trial.variant_id, "variant": trial.variant.name,
            "is_baseline": trial.variant.is_baseline, "seed": trial.seed, "parameters": trial.variant.overrides,
            "price": price, "metric": trial.cfg.metric.to_dict(), "epochs": trial.cfg.epochs,
            "method": trial.cfg.method}


def suggested_point(config: dict[str, Any]) -> dict[str, Any]:
    """The point of an Optuna suggestion: Tune merges the suggested values into the trial config beside `job`."""
    return {key: value for key, value in config.items() if key != "job"}


def train_variant(config: dict[str, Any]) -> None:
    """Ray function trainable: train one variant's seeds (one or several trial directories), an epoch of each in
    turn, reporting per round the epoch and the mean over seeds of each seed's best metric so far."""
    from ray import tune

    job: Job = config["job"]
    plugins.load(list(job.imports))
    seeds = job.runs(suggested_point(config))
    if job.workers == 1:
        _train_seeds(seeds, job, tune.report)
    else:
        _train_data_parallel(seeds, job)


def _train_data_parallel(seeds: list[SeedRun], job: Job) -> None:
    """Train a Tune trial's seeds on `workers` data-parallel processes: Ray Train's TorchTrainer (DDP over gloo on
    CPUs, nccl on GPUs), whose rank-0 reports reach Tune through TuneReportCallback."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    TorchTrainer(
        _train_worker, train_loop_config={"seeds": seeds, "job": job},
        scaling_config=ScalingConfig(num_workers=job.workers, use_gpu=job.gpu > 0,
                                     resources_per_worker={"CPU": job.cpu, **({"GPU": job.gpu} if job.gpu else {})}),
        torch_config=TorchConfig(backend="nccl" if job.gpu > 0 else "gloo"),
        run_config=RunConfig(name=f"trial-{seeds[0].trial_id}", storage_path=job.train_storage,
                             callbacks=[TuneReportCallback()]),
    ).fit()


def _train_worker(config: dict[str, Any]) -> None:
    """One data-parallel worker of a Tune trial (runs in a Ray Train worker process)."""
    import ray.train

    from kwlab.train.distributed import from_ray_train

    job: Job = config["job"]
    plugins.load(list(job.imports))
    _train_seeds(config["seeds"], job, ray.train.report, from_ray_train())


def _train_seeds(seeds: list[SeedRun], job: Job, report: Any, dist: Any = None) -> None:
    """Train the seeds' trials an epoch of each in turn (in every worker of a data-parallel trial), reporting per
    round the epoch and the mean over seeds of each seed's best metric so far (kwlab.best)."""
    import torch

    from kwlab.train import run
    from kwlab.train.distributed import SINGLE

    from kwlab.methods.mixing import load_measurements

    dist = dist or SINGLE
    metric, goal = job.metric, job.goal
    torch.set_num_threads(job.threads)
    load_measurements(job.paths)  # every trial of the sweep takes the paths measured for it (kwlab.sweep.measuring)
    best: dict[int, float] = {}
    runs: dict[int, Iterator[dict[str, Any]]] = {}
    for seed in seeds:
        home = store.TrialDir(seed.dir)  # the store's folder of the trial
        record = home.record()
        if record.epochs or record.done:  # resuming: the metric so far counts for ASHA's rungs
            best[seed.seed] = best_value(record.epochs, metric, goal)
        if record.done:
            continue
        if record.final:  # it ran past its timeout in this run of the sweep: not again until the next run
            raise KWLabError(record.error or "failed")
        if dist.main:
            home.clear_outcome()
        staged = Staged.of(seed.dir) if home.storage.local is None else None  # a store at a URI: a local copy
        if staged is not None:
            staged.pull()
        trial = staged.local if staged is not None else home
        epochs = run(seed.config, trial.path, dist=dist, keep=job.keep, wandb=job.wandb)
        if dist.main:
            epochs = _identified(trial, seed.meta, _logged(trial, epochs))
            epochs = staged.synced(epochs) if staged is not None else epochs
        runs[seed.seed] = epochs
    epoch = 0
    while runs:
        for seed, epochs in list(runs.items()):
            metrics = next(epochs, None)
            if metrics is None:
                del runs[seed]
                continue
            epoch = max(epoch, metrics["epoch"])
            value = metrics[metric]
            if math.isnan(best.get(seed, math.nan)) or better(value, best[seed], goal):
                best[seed] = value
        if runs:
            report({"epoch": epoch, SCORE: _mean(best.values()), "seeds": len(best)})
    report({"epoch": epoch, SCORE: _mean(best.values()), "seeds": len(best), "final": True})


def _mean(values: Any) -> float:
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def _identified(trial: store.TrialDir, meta: dict[str, Any],
                epochs: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The trial's epochs, its sweep.json written again after an epoch when its folder was removed meanwhile (the
    recipe writes config.yaml again likewise)."""
    for metrics in epochs:
        if meta and not trial.file(store.SWEEP).is_file():
            trial.write_sweep_meta(meta)
        yield metrics


def _logged(trial: store.TrialDir, epochs: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Run a trial's epochs with its output in log.txt and a failure recorded in error.json (then re-raised)."""
    with open(trial.file(store.LOG), "a") as log:
        while True:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                try:
                    metrics = next(epochs)
                except StopIteration:
                    return
                except Exception as error:
                    with contextlib.suppress(OSError, WriteError):  # a full disk: the error reaches the driver
                        traceback.print_exc()
                        text = str(error) if isinstance(error, KWLabError) else f"{type(error).__name__}: {error}"
                        trial.write_error(text.splitlines()[0])
                    raise
            yield metrics


@dataclass
class EventPrinter:
    """Prints one line per trial event above an overall progress bar and keeps the store's tables up to date, one
    trial's record at a time (written at most every FLUSH_S seconds, and at the end)."""

    store: store.Store
    console: Console
    progress: Progress
    task: Any
    metric: str
    tables: store.Tables
    seen: dict[str, str] = field(default_factory=dict)
    trackers: Trackers | None = None  # optuna.db and MLflow, brought up to date at every trial event
    write_failure: str | None = None  # why the store cannot be written (a full disk): then no more trials start
    flushed: float = 0.0  # when the tables were last written (time.monotonic)
    lost: LostNodes | None = None  # says which nodes of the cluster die
    timeout: Timeout | None = None  # the spec's timeouts (seconds) of a trial and of the sweep
    began: float = field(default_factory=time.monotonic)  # when the sweep started launching trials
    running: dict[Any, float] = field(default_factory=dict)  # Tune trial -> when it started (time.monotonic)
    stopped_by: str | None = None  # why the runner stopped every trial early (the sweep ran past its timeout)

    def past_deadline(self) -> bool:
        """Whether the sweep ran past its timeout (said once)."""
        limit = self.timeout.sweep if self.timeout is not None else None
        if limit is not None and self.stopped_by is None and time.monotonic() - self.began > limit:
            self.stopped_by = f"the sweep ran past its timeout.sweep of {limit:g} s"
            self.say(f"[red]timeout[/red]   {self.stopped_by}: its trials stop and keep what finished")
        return self.stopped_by is not None

    def stop_overdue(self) -> None:
        """Fail the trials that ran past the spec's timeout.trial: their error says so, their workers are killed."""
        for trial in overdue(self.running, self.timeout.trial if self.timeout is not None else None):
            del self.running[trial]
            reason = (f"timeout: ran past timeout.trial = {self.timeout.trial:g} s (hung, or slower than "
                      "expected); a rerun of the sweep tries it again")
            for seed in self.seeds(trial):
                if not self.store.trial(seed.trial_id).record().done:
                    self.store.trial(seed.trial_id).write_error(reason, final=True)
            stop_trial(trial)

    def stop_for(self, reason: str | None) -> None:
        """Record (and say once) that the store cannot be written: StopOnWriteFailure then ends the sweep."""
        if reason is not None and self.write_failure is None:
            self.write_failure = reason
            self.say(f"[red]cannot write[/red] {escape(reason)}; no more trials start")

    def seeds(self, trial: Any) -> list[SeedRun]:
        """The seeds a Tune trial trains (a bayes suggestion's from its point)."""
        job: Job = trial.config["job"]
        if job.search is None:
            return list(job.seeds)
        variant = Variant(label(suggested_point(trial.config)), suggested_point(trial.config))
        return [describe_trial(Trial(variant, s, resolve(job.search.base, variant, s, job.search.source)),
                               self.store) for s in job.search.seeds]

    def records(self, trial: Any) -> list[store.TrialRecord]:
        """The records of the trials a Tune trial trains, read now."""
        return [self.store.trial(seed.trial_id).record() for seed in self.seeds(trial)]

    def name(self, trial: Any, records: list[store.TrialRecord]) -> str:
        """A Tune trial's readable name: its variant and seeds (and trial id when it is one seed)."""
        job: Job = trial.config["job"]
        if job.search is not None:
            point = suggested_point(trial.config)
            return escape(f"{label(point)} seeds {','.join(map(str, job.search.seeds))}")
        meta = records[0].meta if records else {}
        if len(records) == 1:
            return escape(f"{meta.get('variant')} seed={meta.get('seed')} [{records[0].trial_id}]")
        return escape(f"{meta.get('variant')} seeds {','.join(str(r.meta.get('seed')) for r in records)}")

    def track(self, trial: Any, records: list[store.TrialRecord]) -> None:
        """Bring the trackers up to date with a Tune trial's records (a bayes suggestion also names its Optuna
        trial)."""
        if self.trackers is None:
            return
        search = trial.config["job"].search is not None
        if search:
            self.trackers.suggestion(suggested_point(trial.config), records)
        self.trackers.sync(records, mirrored=not search)

    def say(self, text: str) -> None:
        """Print one timestamped event line above the progress bar."""
        self.progress.console.print(f"{time.strftime('%H:%M:%S')} {text}", highlight=False, soft_wrap=True)

    def done(self, records: list[store.TrialRecord]) -> None:
        """Count a Tune trial as done and put its records into the tables (written if FLUSH_S has passed)."""
        self.progress.advance(self.task)
        for record in records:
            self.tables.update(record)
        if time.monotonic() - self.flushed >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        """Write the tables now (and, for a store at a URI, its copy of optuna.db)."""
        self.store.write_tables(self.tables)
        if self.trackers is not None:
            publish_optuna(self.store, self.trackers.optuna_db)
        self.flushed = time.monotonic()


def _guarded(event: Any) -> Any:
    """A callback whose writes may fail (a full disk, a read-only folder): the failure stops the sweep instead of
    crashing Tune with a traceback."""
    @functools.wraps(event)
    def guarded(self: TrialEvents, iteration: int, trials: list, trial: Any, *args: Any, **info: Any) -> None:
        try:
            event(self, iteration, trials, trial, *args, **info)
        except (WriteError, OSError) as error:
            store_path = self.printer.store.path
            self.printer.stop_for(str(error) if isinstance(error, WriteError) else f"{store_path}: {error}")

    return guarded


def _write_failure(trial: Any, store_path: Path) -> str | None:
    """The write failure (a WriteError, or a full disk hidden in another error) that ended a Tune trial, or None."""
    from ray import cloudpickle

    with contextlib.suppress(Exception):  # Ray pickles the trial's exception next to the driver (not in the store)
        with open(trial.pickled_error_file, "rb") as file:
            error = cloudpickle.load(file)
        while error is not None:
            if isinstance(getattr(error, "cause", None), BaseException):  # Ray's RayTaskError: the trial's own error
                error = error.cause
                continue
            if isinstance(error, WriteError):
                return str(error)
            if isinstance(error, OSError) and error.errno in DISK_FULL:
                return f"{store_path}: {os.strerror(error.errno)} (the disk is full)"
            error = error.__cause__ or error.__context__
    return None


class StopOnWriteFailure(Stopper):
    """Tune's stopper: once the store cannot be written (a full disk), or the sweep ran past its timeout, no trial
    starts and the running ones stop."""

    def __init__(self, printer: EventPrinter) -> None:
        self.printer = printer

    def __getstate__(self) -> dict[str, Any]:
        return {}  # as TrialEvents: the live stopper is used, never a pickled copy

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.printer.write_failure is not None or self.printer.past_deadline()


class TrialEvents(Callback):
    """The Tune callback: forwards trial events to an EventPrinter (kept out of Tune's pickled state)."""

    def __init__(self, printer: EventPrinter) -> None:
        self.printer = printer

    def __getstate__(self) -> dict[str, Any]:
        return {}  # Tune pickles its state for its own restore, which kwlab does not use (the store resumes)

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if self.printer.lost is not None:
            self.printer.lost.check()
        self.printer.stop_overdue()

    @_guarded
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.printer.running[trial] = time.monotonic()
        records = self.printer.records(trial)
        self.printer.say(f"started   {self.printer.name(trial, records)}")
        self.printer.track(trial, records)

    @_guarded
    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        records = self.printer.records(trial)
        self.printer.track(trial, records)
        if result.get("final") or "epoch" not in result:
            return
        value = result.get(SCORE)
        mean = "mean over seeds of " if result.get("seeds", 1) > 1 else ""
        shown = f" {mean}best {self.printer.metric}={value:.4f}" if isinstance(value, float) else ""
        self.printer.say(f"epoch {result['epoch']}  {self.printer.name(trial, records)}{shown}")

    @_guarded
    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.printer.running.pop(trial, None)
        records = self.printer.records(trial)
        stopped_early = self.printer.write_failure is None and self.printer.stopped_by is None
        if stopped_early and any(not r.done and r.status != "failed" for r in records):
            for record in records:  # stopped by ASHA
                if record.status in ("running", "pending"):
                    self.printer.store.trial(record.trial_id).write_stopped(len(record.epochs),
                                                                            "stopped early by ASHA")
            records = self.printer.records(trial)
        self.printer.track(trial, records)
        statuses = sorted({r.status for r in records})
        value = (trial.last_result or {}).get(SCORE)
        shown = f" best {self.printer.metric}={value:.4f}" if isinstance(value, float) and value == value else ""
        self.printer.say(f"{'/'.join(statuses):9s} {self.printer.name(trial, records)}{shown}")
        self.printer.done(records)

    @_guarded
    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.printer.running[trial] = time.monotonic()  # it starts again
        self.printer.stop_for(_write_failure(trial, self.printer.store.path))
        records = self.printer.records(trial)
        reason = _errors(records) if any(r.error for r in records) else _ray_error(trial)
        self.printer.say(f"retrying  {self.printer.name(trial, records)}: {reason}")
        self.printer.track(trial, records)

    @_guarded
    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.printer.running.pop(trial, None)
        self.printer.stop_for(_write_failure(trial, self.printer.store.path))
        records = self.printer.records(trial)
        if not any(r.error for r in records):  # it failed outside kwlab's code (e.g. the worker died): Ray's reason
            reason = _ray_error(trial)
            for record in records:
                if not record.done:
                    self.printer.store.trial(record.trial_id).write_error(reason)
            records = self.printer.records(trial)
        self.printer.track(trial, records)
        self.printer.say(f"[red]failed[/red]    {self.printer.name(trial, records)}: {_errors(records)}")
        self.printer.done(records)


def _ray_error(trial: Any) -> str:
    """Why Ray says a Tune trial failed, in one line: the memory monitor's kill or a dead worker when its error file
    says so (`watch.trial_error_cause`), else the last line of its recorded error."""
    cause = trial_error_cause(getattr(trial, "error_file", None))
    if cause is not None:
        return cause
    with contextlib.suppress(Exception):
        text = trial.get_error()
        lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
        if lines:
            return f"Ray: {lines[-1]}"[:300]
    return "Ray: the trial failed outside kwlab (no error recorded)"


def _errors(records: list[store.TrialRecord]) -> str:
    errors = [r.error for r in records if r.error]
    return "; ".join(dict.fromkeys(errors)) or f"see the trials' {store.LOG}"


def prepare(results: store.Store, trials: list[Trial], prices: dict[str, dict[str, Any]]) -> list[Trial]:
    """Give every trial its directory and sweep.json (ids, variant, seed, swept values, its variant's price, the
    metric that picks its best epoch, its epochs and method; written where it changed); return the trials not yet
    done."""
    pending = []
    for trial in trials:
        trial_dir = results.trial(trial.trial_id)
        meta = sweep_meta(trial, prices.get(trial.variant_id, {}))
        record = trial_dir.record()
        if record.meta != json.loads(json.dumps(meta, default=str)):
            trial_dir.write_sweep_meta(meta)
        if record.final:  # a failure that held for the run it happened in (a timeout): this run tries it again
            trial_dir.clear_outcome()
        if not record.done:
            pending.append(trial)
    return pending


@dataclass(frozen=True)
class Outcome:
    """How a run ended: the trials table afterwards, the signal that interrupted it (Ctrl-C's SIGINT, or SIGTERM;
    0 when none) and why it stopped launching trials when the store could not be written (a full disk)."""

    trials: Any  # pandas DataFrame
    interrupted: int
    write_failure: str | None = None
    stopped_by: str | None = None  # why the runner stopped its trials early: the sweep's timeout, a lost cluster


def _register_local_sweep(results: store.Store) -> store.Lock:
    """Register this runner's local Ray instance in LOCAL_SWEEPS, saying in one line when another kwlab sweep runs
    one on this machine: each instance takes every CPU, so the two sweeps' trials compete for the cores."""
    others = []
    for path in sorted(LOCAL_SWEEPS.glob("*.json")):
        holder = store.Lock(Storage.of(LOCAL_SWEEPS), path.name).live_holder()
        if holder is None:
            path.unlink(missing_ok=True)  # a runner that is gone
        elif holder.get("pid") != os.getpid():
            others.append(holder)
    for other in others:
        print(f"kwlab sweep: another kwlab sweep runs on this machine (pid {other.get('pid')}, "
              f"{other.get('command')}); each local Ray instance takes all {os.cpu_count()} CPUs, so their trials "
              "will compete for the cores (cap each with --max-concurrent, or run one after the other)",
              file=sys.stderr, flush=True)
    mine = store.Lock(Storage.of(LOCAL_SWEEPS), f"{os.getpid()}.json", str(results))
    with contextlib.suppress(WriteError):  # a folder of another user's: this sweep runs unregistered
        mine.acquire()
    return mine


def trials_that_fit(spec: SweepSpec) -> int:
    """How many trials the Ray cluster can run at once (at least one: check_capacity refused the rest)."""
    import ray

    total = ray.cluster_resources()
    fits = [total.get(key, 0) // (need * spec.resources.workers)
            for key, need in (("CPU", spec.resources.cpu), ("GPU", spec.resources.gpu)) if need > 0]
    return max(1, int(min(fits)))


def check_capacity(spec: SweepSpec, trials: int, max_concurrent: int | None, params: int,
                   say: Callable[[str], None]) -> None:
    """Refuse a trial that the live Ray cluster's nodes cannot place at all (instead of Tune waiting forever), and
    say when they would run more of the `trials` at once than their cores or memory hold."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    check_fits(spec.resources, nodes)
    for line in packing_warnings(spec.resources, nodes, trials, max_concurrent or spec.max_concurrent_trials, params):
        say(f"warning: {line}")


def tracking(spec: SweepSpec, results: store.Store) -> Tracking:
    """What the trackers know of a sweep, as plain values (optuna.db: see `optuna_db`)."""
    mlflow = spec.tracking.mlflow
    return Tracking(spec.name, spec.metric.name, spec.metric.goal, optuna_distributions(spec.parameters),
                    [case.name for case in spec.cases], optuna_db(results),
                    mlflow.uri if mlflow else None, mlflow.experiment if mlflow else None, spec.tracking.wandb is not None)


def wandb_settings(spec: SweepSpec) -> dict[str, Any] | None:
    """The spec's tracking.wandb as the plain values a trial takes (the group defaults to the sweep's name)."""
    settings = spec.tracking.wandb
    if settings is None:
        return None
    return {**settings.model_dump(), "group": settings.group or spec.name}


def optuna_db(results: store.Store) -> Path:
    """Where the runner keeps the sweep's optuna.db: in the store, or, for a store at a URI (SQLite cannot live in an
    object store), in the store's folder under the user's cache, brought from the store's copy when it has one."""
    if results.local:
        return results.path / store.OPTUNA_DB
    db = results.storage.cache / store.OPTUNA_DB
    db.parent.mkdir(parents=True, exist_ok=True)
    if not db.exists():
        results.storage.download(store.OPTUNA_DB, db)
    return db


def train_storage(results: store.Store) -> str:
    """Where Ray Train keeps a data-parallel trial's bookkeeping, which every node must reach: in the store's folder
    (`ray/train`), at its URI for a store at a URI."""
    if results.local:
        return str(ray_folder(results) / "train")
    return results.storage.child("ray", "train").uri


def publish_optuna(results: store.Store, db: Path) -> None:
    """Copy the cache's optuna.db into a store at a URI (its write-ahead log folded in first); a local store's is
    the store's own."""
    if results.local or not db.exists():
        return
    with contextlib.closing(sqlite3.connect(db)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    results.storage.upload(db, store.OPTUNA_DB)


def ray_log(results: store.Store) -> Path:
    """This run's log of Ray's own output: in the store's logs/ folder (for a store at a URI, in its cache folder,
    copied to the store's logs/ at the end)."""
    folder = results.path if results.local else results.storage.cache
    return folder / store.LOGS / f"ray-{time.strftime('%Y%m%d-%H%M%S')}.log"


def ray_folder(results: store.Store) -> Path:
    """Where Ray Tune keeps its own bookkeeping of the run (kwlab's records are the store): in the store, or under
    the user's cache for a store at a URI."""
    return (results.path if results.local else results.storage.cache).resolve() / "ray"


def run_trials(
    spec: SweepSpec, results: store.Store, trials: list[Trial], *, address: str | None, max_concurrent: int | None,
    prices: dict[str, dict[str, Any]], search: dict[str, Any] | None = None, imports: list[str] = (),
    on_cluster_lost: Callable[[Outcome], None] | None = None,
) -> Outcome:
    """Run the pending trials (then, for `bayes`, the Optuna search) through Ray Tune. When the cluster's head stops
    answering, `on_cluster_lost` gets the outcome so far (the tables written) and must end the process: Ray would
    kill it a minute later without a word."""
    import ray

    trackers = Trackers(tracking(spec, results), results)  # an unreachable MLflow server is refused here
    pending = prepare(results, trials, prices)
    results.write_plan([{"trial_id": t.trial_id, "variant_id": t.variant_id, "variant": t.variant.name,
                         "is_baseline": t.variant.is_baseline, "seed": t.seed} for t in trials],
                       spec.num_samples if search else 0, list(spec.seeds) if search else [])
    tables = results.load_tables()
    fixed = [t.trial_id for t in trials]
    trackers.sync([results.trial(t).record() for t in fixed])  # what earlier runs left (a resume, a kill -9)
    console = Console()
    if search:  # a study that lost them (optuna.db damaged or removed) takes the store's suggestions back
        planned = set(fixed)
        trackers.optuna.restore_suggestions([r for r in results.records() if r.trial_id not in planned])
    searches = trackers.optuna.suggestions_to_run(spec.num_samples) if search else 0
    console.print(f"{spec.name}: {len(pending)} of {len(trials)} fixed trials to run "
                  f"({len(trials) - len(pending)} done earlier)" + (f", then {searches} Optuna suggestions "
                                                                    f"x {len(spec.seeds)} seeds" if search else ""))
    if not pending and not searches:
        return Outcome(results.write_tables(tables)[0], False)
    local = _register_local_sweep(results) if address is None else None
    sigterm = signal.getsignal(signal.SIGTERM)
    terminated: list[int] = []  # SIGTERM (a scheduler's preemption) stops the runner as Ctrl-C does

    def terminate(signum: int, frame: Any) -> None:
        terminated.append(signum)  # Tune may raise its own KeyboardInterrupt in place of this one
        # one stop only: on a requeue Slurm signals every process of the job, and the batch script passes one on too
        if len(terminated) == 1:
            raise KeyboardInterrupt

    interrupted, printer, watch = 0, None, None
    log = ray_log(results)
    try:
        with ray_output_to(log):
            connect(address)
            contain_trial_errors()
            signal.signal(signal.SIGTERM, terminate)  # over Ray's handler, which dumps a C++ stack and aborts
            # Tune logs a failed trial's traceback; kwlab prints its own one-line event and keeps the trace in log.txt
            logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
            try:
                check_capacity(spec, len(pending) + searches, max_concurrent,
                               max((p.get("params_total", 0) for p in prices.values()), default=0),
                               lambda text: console.print(text, style="yellow", highlight=False, soft_wrap=True))
                with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TimeElapsedColumn(), console=console) as progress:
                    groups = _groups(spec, pending)
                    task = progress.add_task(spec.name, total=len(groups) + searches)
                    printer = EventPrinter(results, console, progress, task, spec.metric.name, tables,
                                           trackers=trackers, flushed=time.monotonic(),
                                           lost=LostNodes(lambda text: printer.say(text)), timeout=spec.timeout)

                    def head_lost() -> None:
                        printer.say("[red]lost the cluster[/red]: its head (GCS) does not answer; the trials stop "
                                    "and keep what finished")
                        trackers.sync([results.trial(t).record() for t in fixed])
                        publish_optuna(results, trackers.optuna_db)
                        if local is not None:
                            local.release()
                        tables = results.load_tables()
                        with contextlib.suppress(WriteError):
                            results.write_tables(tables)
                        if on_cluster_lost is not None:
                            on_cluster_lost(Outcome(tables.frames()[0], 0, None, "the cluster's head stopped "
                                                                                  "answering"))
                    trackers.say = printer.say
                    callback = TrialEvents(printer)
                    resources = spec.resources
                    job = Job(tuple(imports), spec.metric.name, spec.metric.goal, max(1, int(resources.cpu)),
                              tuple(spec.keep), resources.workers, resources.cpu, resources.gpu,
                              train_storage(results), wandb_settings(spec),
                              sweep_paths(results, pending, resources, printer.say))
                    watch = HeadWatch(head_lost)
                    watch.start()
                    if groups:
                        space = [dataclasses.replace(job, seeds=tuple(
                            describe_trial(t, results, prices.get(t.variant_id)) for t in group)) for group in groups]
                        _fit(spec, results, {"job": _grid(space)}, callback, max_concurrent, _asha(spec))
                    if searches:
                        from ray.tune.search.optuna import OptunaSearch

                        searcher = OptunaSearch(optuna_distributions(spec.parameters), metric=SCORE,
                                                mode=spec.metric.goal[:3], seed=spec.sampler_seed,
                                                storage=trackers.optuna.storage, study_name=trackers.optuna.name)
                        where = str(results.path.resolve()) if results.local else results.storage.uri
                        context = Search(search["base"], search["source"], where, list(spec.seeds))
                        _fit(spec, results, {"job": dataclasses.replace(job, search=context)}, callback,
                             max_concurrent, _asha(spec), search_alg=searcher, num_samples=searches)
            except KeyboardInterrupt:
                interrupted = signal.SIGTERM if terminated else signal.SIGINT
            except KWLabError:
                raise
            except Exception as error:  # Ray Tune gave up on the sweep: one line here, its trace in the log
                with open(log, "a", encoding="utf-8") as file:
                    traceback.print_exc(file=file)
                reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
                gave_up = f"Ray Tune stopped the sweep ({type(error).__name__}: {reason}; its trace is in {log})"
                if printer is not None:
                    printer.stopped_by = printer.stopped_by or gave_up
            finally:
                with contextlib.suppress(KeyboardInterrupt):
                    if watch is not None:
                        watch.close()
                    # not after a signal: a preempted job's head may be going too, and asking it would block
                    if printer is not None and printer.lost is not None and not interrupted:
                        printer.lost.check(force=True)
                    ray.shutdown()
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            shutil.rmtree(ray_folder(results), ignore_errors=True)  # Ray's bookkeeping; kwlab's are the store
            if not results.local:
                results.storage.delete_tree("ray")
                with contextlib.suppress(OSError, WriteError):
                    results.storage.upload(log, f"{store.LOGS}/{log.name}")
            trackers.sync([results.trial(t).record() for t in fixed])
            publish_optuna(results, trackers.optuna_db)
        signal.signal(signal.SIGTERM, sigterm if sigterm is not None else signal.SIG_DFL)
        if local is not None:
            local.release()
    failure = printer.write_failure if printer is not None else None
    tables = results.load_tables()  # the trials that changed since their row was taken (running ones, mostly)
    try:
        table = results.write_tables(tables)[0]
    except WriteError as error:  # a full disk: the counts come from the trial folders, the tables wait for the rerun
        failure, table = failure or str(error), tables.frames()[0]
    return Outcome(table, interrupted, failure, printer.stopped_by if printer is not None else None)


def _groups(spec: SweepSpec, pending: list[Trial]) -> list[list[Trial]]:
    """The Tune trials: one per pending (variant, seed), or, with early stopping, one per variant (its seeds)."""
    if spec.early_terminate is None:
        return [[trial] for trial in pending]
    by_variant: dict[str, list[Trial]] = {}
    for trial in pending:
        by_variant.setdefault(trial.variant_id, []).append(trial)
    return list(by_variant.values())


def _grid(points: list[dict[str, Any]]) -> Any:
    """Ray Tune's grid over explicit points (one Tune trial per point)."""
    from ray import tune

    return tune.grid_search(points)


def _asha(spec: SweepSpec) -> Any:
    from ray import tune

    if spec.early_terminate is None:
        return None
    return tune.schedulers.ASHAScheduler(
        time_attr="epoch", metric=SCORE, mode=spec.metric.goal[:3], grace_period=spec.early_terminate.grace_period,
        reduction_factor=spec.early_terminate.reduction_factor,
    )


def _fit(spec: SweepSpec, results: store.Store, space: dict[str, Any], callback: Any, max_concurrent: int | None,
         scheduler: Any, **tune_options: Any) -> None:
    from ray import tune

    if spec.resources.workers == 1:
        resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    else:
        # NOTE: the trial's own actor only waits on its TorchTrainer, whose workers hold the CPUs and GPUs: it asks
        # for next to nothing (Ray refuses an empty request), and Tune starts no more trials than the cluster can
        # give workers, so trainers never wait on each other.
        resources = {"memory": 1}
        max_concurrent = min(max_concurrent or spec.max_concurrent_trials or 10**6, trials_that_fit(spec))
    tune.Tuner(
        tune.with_resources(train_variant, resources),
        param_space=space,
        # reuse_actors: a finished trial's worker process takes the next trial; a fresh worker spends ~7 s importing
        # torch and kwlab on a 2-core CPU, a tenth of a small sweep's wall time (measured on cell_size). A trial
        # actor that launched a TorchTrainer is not reused: its Tune session ends with it.
        tune_config=tune.TuneConfig(scheduler=scheduler,
                                    max_concurrent_trials=max_concurrent or spec.max_concurrent_trials,
                                    reuse_actors=spec.resources.workers == 1, **tune_options),
        run_config=tune.RunConfig(
            name=spec.name, storage_path=str(ray_folder(results)),
            failure_config=tune.FailureConfig(max_failures=spec.failure.max_retries), verbose=0,
            callbacks=[callback], stop=StopOnWriteFailure(callback.printer),
        ),
    ).fit()
