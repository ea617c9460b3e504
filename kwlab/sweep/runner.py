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
import functools
import logging
import math
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune import Callback, Stopper
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kwlab import plugins, store
from kwlab.errors import KWLabError, WriteError
from kwlab.files import DISK_FULL
from kwlab.sweep.capacity import check_fits
from kwlab.sweep.expand import Trial, Variant, label, price_config, resolve
from kwlab.sweep.spec import SweepSpec
from kwlab.tracking.optuna_store import distributions
from kwlab.tracking.trackers import Trackers

# Ray's own loggers (TensorBoard/CSV/JSON per trial) and its progress tables are off: kwlab writes its own records.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Ctrl-C reaches kwlab as KeyboardInterrupt: the runner stops Ray and reports what the store holds (see run_trials).
os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"

SCORE = "score"  # what Tune's scheduler and searcher see: the mean over the trial's seeds of each seed's best metric
LOCAL_SWEEPS = Path(tempfile.gettempdir()) / "kwlab-local-sweeps"  # a file per runner that started a local Ray


def describe_trial(trial: Trial, store_path: Path) -> dict[str, Any]:
    """One seed of a Tune trial: its directory, typed config (validated once, when the sweep expanded it; Ray
    pickles it as it is) and seed."""
    return {"dir": str(store.Store(store_path).trial(trial.trial_id).path.resolve()), "config": trial.cfg,
            "seed": trial.seed}


def _best(values: list[float], goal: str) -> float:
    return min(values) if goal == "minimize" else max(values)


def train_variant(config: dict[str, Any]) -> None:
    """Ray function trainable: train one variant's seeds (one or several trial directories), an epoch of each in
    turn, reporting per round the epoch and the mean over seeds of each seed's best metric so far."""
    from ray import tune

    job = config["job"]
    plugins.load(job["imports"])
    if "base" in job:  # a bayes suggestion: the variant is the point Optuna chose
        variant = suggested_variant(config)
        trials = [Trial(variant, seed, resolve(job["base"], variant, seed, job["source"])) for seed in job["seeds"]]
        prepare(Path(job["store"]), trials, {trials[0].variant_id: price_config(trials[0].cfg)})
        seeds = [describe_trial(trial, Path(job["store"])) for trial in trials]
    else:
        seeds = job["trials"]
    if job["workers"] == 1:
        _train_seeds(seeds, job, tune.report)
    else:
        _train_data_parallel(seeds, job)


def _train_data_parallel(seeds: list[dict[str, Any]], job: dict[str, Any]) -> None:
    """Train a Tune trial's seeds on `workers` data-parallel processes: Ray Train's TorchTrainer (DDP over gloo on
    CPUs, nccl on GPUs), whose rank-0 reports reach Tune through TuneReportCallback."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    gpu = job["gpu"]
    TorchTrainer(
        _train_worker, train_loop_config={"seeds": seeds, "job": job},
        scaling_config=ScalingConfig(num_workers=job["workers"], use_gpu=gpu > 0,
                                     resources_per_worker={"CPU": job["cpu"], **({"GPU": gpu} if gpu else {})}),
        torch_config=TorchConfig(backend="nccl" if gpu > 0 else "gloo"),
        run_config=RunConfig(name=f"trial-{Path(seeds[0]['dir']).name}", storage_path=job["train_storage"],
                             callbacks=[TuneReportCallback()]),
    ).fit()


def _train_worker(config: dict[str, Any]) -> None:
    """One data-parallel worker of a Tune trial (runs in a Ray Train worker process)."""
    import ray.train

    from kwlab.train.distributed import from_ray_train

    job = config["job"]
    plugins.load(job["imports"])
    _train_seeds(config["seeds"], job, ray.train.report, from_ray_train())


def suggested_variant(config: dict[str, Any]) -> Variant:
    """The variant of an Optuna suggestion: Tune merges the suggested values into the trial config beside `job`."""
    point = {key: value for key, value in config.items() if key != "job"}
    return Variant(label(point), point)


def _train_seeds(seeds: list[dict[str, Any]], job: dict[str, Any], report: Any, dist: Any = None) -> None:
    """Train the seeds' trials an epoch of each in turn (in every worker of a data-parallel trial), reporting per
    round the epoch and the mean over seeds of each seed's best metric so far."""
    import torch

    from kwlab.train import run
    from kwlab.train.distributed import SINGLE

    dist = dist or SINGLE
    metric, goal = job["metric"], job["goal"]
    torch.set_num_threads(job["threads"])
    best: dict[int, float] = {}
    runs: dict[int, Iterator[dict[str, Any]]] = {}
    for seed in seeds:
        trial = store.TrialDir(Path(seed["dir"]))
        history = trial.metrics()
        if trial.is_done():
            best[seed["seed"]] = _best([m[metric] for m in history], goal) if history else math.nan
            continue
        if dist.main:
            trial.clear_outcome()
        if history:  # resuming: the metric so far counts for ASHA's rungs
            best[seed["seed"]] = _best([m[metric] for m in history], goal)
        epochs = run(seed["config"], trial.path, dist=dist)
        runs[seed["seed"]] = _logged(trial, epochs) if dist.main else epochs
    epoch = 0
    while runs:
        for seed, epochs in list(runs.items()):
            metrics = next(epochs, None)
            if metrics is None:
                del runs[seed]
                continue
            epoch = max(epoch, metrics["epoch"])
            best[seed] = _best([best.get(seed, metrics[metric]), metrics[metric]], goal)
        if runs:
            report({"epoch": epoch, SCORE: _mean(best.values()), "seeds": len(best)})
    report({"epoch": epoch, SCORE: _mean(best.values()), "seeds": len(best), "final": True})


def _mean(values: Any) -> float:
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


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
    """Prints one line per trial event above an overall progress bar and refreshes the store's tables."""

    store: store.Store
    console: Console
    progress: Progress
    task: Any
    metric: str
    seen: dict[str, str] = field(default_factory=dict)
    trackers: Trackers | None = None  # optuna.db and MLflow, brought up to date at every trial event
    write_failure: str | None = None  # why the store cannot be written (a full disk): then no more trials start

    def stop_for(self, reason: str | None) -> None:
        """Record (and say once) that the store cannot be written: StopOnWriteFailure then ends the sweep."""
        if reason is not None and self.write_failure is None:
            self.write_failure = reason
            self.say(f"[red]cannot write[/red] {escape(reason)}; no more trials start")

    def name(self, trial: Any) -> str:
        """A Tune trial's readable name: its variant and seeds (and trial id when it is one seed)."""
        config = trial.config
        if "base" in config["job"]:
            return escape(f"{suggested_variant(config).name} seeds {','.join(map(str, config['job']['seeds']))}")
        seeds = config["job"]["trials"]
        meta = store.TrialDir(Path(seeds[0]["dir"])).sweep_meta() or {}
        if len(seeds) == 1:
            return escape(f"{meta.get('variant')} seed={meta.get('seed')} [{meta.get('trial_id')}]")
        return escape(f"{meta.get('variant')} seeds {','.join(str(s['seed']) for s in seeds)}")

    def dirs(self, trial: Any) -> list[store.TrialDir]:
        """The trial directories a Tune trial trains."""
        config, job = trial.config, trial.config["job"]
        if "base" in job:
            variant = suggested_variant(config)
            return [self.store.trial(Trial(variant, s, resolve(job["base"], variant, s, job["source"])).trial_id)
                    for s in job["seeds"]]
        return [store.TrialDir(Path(s["dir"])) for s in config["job"]["trials"]]

    def track(self, trial: Any) -> None:
        """Bring the trackers up to date with a Tune trial's directories (a bayes suggestion also names its Optuna
        trial)."""
        if self.trackers is None:
            return
        dirs = self.dirs(trial)
        if "base" in trial.config["job"]:
            self.trackers.suggestion(suggested_variant(trial.config).overrides, dirs)
        self.trackers.sync(dirs, mirrored="base" not in trial.config["job"])

    def say(self, text: str) -> None:
        """Print one timestamped event line above the progress bar."""
        self.progress.console.print(f"{time.strftime('%H:%M:%S')} {text}", highlight=False, soft_wrap=True)

    def done(self) -> None:
        """Count a Tune trial as done and refresh the store's tables."""
        self.progress.advance(self.task)
        self.store.write_tables()


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
    """Tune's stopper: once the store cannot be written (a full disk), no trial starts and the running ones stop."""

    def __init__(self, printer: EventPrinter) -> None:
        self.printer = printer

    def __getstate__(self) -> dict[str, Any]:
        return {}  # as TrialEvents: the live stopper is used, never a pickled copy

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.printer.write_failure is not None


class TrialEvents(Callback):
    """The Tune callback: forwards trial events to an EventPrinter (kept out of Tune's pickled state)."""

    def __init__(self, printer: EventPrinter) -> None:
        self.printer = printer

    def __getstate__(self) -> dict[str, Any]:
        return {}  # Tune pickles its state for its own restore, which kwlab does not use (the store resumes)

    @_guarded
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.printer.say(f"started   {self.printer.name(trial)}")
        self.printer.track(trial)

    @_guarded
    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.printer.track(trial)
        if result.get("final") or "epoch" not in result:
            return
        value = result.get(SCORE)
        mean = "mean over seeds of " if result.get("seeds", 1) > 1 else ""
        shown = f" {mean}best {self.printer.metric}={value:.4f}" if isinstance(value, float) else ""
        self.printer.say(f"epoch {result['epoch']}  {self.printer.name(trial)}{shown}")

    @_guarded
    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        dirs = self.printer.dirs(trial)
        for trial_dir in dirs:
            if trial_dir.status() in ("running", "pending") and self.printer.write_failure is None:  # stopped by ASHA
                trial_dir.write_stopped(len(trial_dir.metrics()), "stopped early by ASHA")
        self.printer.track(trial)
        statuses = sorted({d.status() for d in dirs})
        value = (trial.last_result or {}).get(SCORE)
        shown = f" best {self.printer.metric}={value:.4f}" if isinstance(value, float) and value == value else ""
        self.printer.say(f"{'/'.join(statuses):9s} {self.printer.name(trial)}{shown}")
        self.printer.done()

    @_guarded
    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.printer.stop_for(_write_failure(trial, self.printer.store.path))
        self.printer.say(f"retrying  {self.printer.name(trial)}: {_errors(self.printer.dirs(trial))}")
        self.printer.track(trial)

    @_guarded
    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.printer.stop_for(_write_failure(trial, self.printer.store.path))
        dirs = self.printer.dirs(trial)
        if not any(d.error() for d in dirs):  # it failed outside kwlab's code (e.g. the worker died): Ray's reason
            reason = _ray_error(trial)
            for trial_dir in dirs:
                if not trial_dir.is_done():
                    trial_dir.write_error(reason)
        self.printer.track(trial)
        self.printer.say(f"[red]failed[/red]    {self.printer.name(trial)}: {_errors(dirs)}")
        self.printer.done()


def _ray_error(trial: Any) -> str:
    """The last line of the error Ray recorded for a Tune trial (e.g. 'RayActorError: The actor died ...')."""
    with contextlib.suppress(Exception):
        text = trial.get_error()
        lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
        if lines:
            return f"Ray: {lines[-1]}"[:300]
    return "Ray: the trial failed outside kwlab (no error recorded)"


def _errors(dirs: list[store.TrialDir]) -> str:
    errors = [e for d in dirs if (e := d.error())]
    return "; ".join(dict.fromkeys(errors)) or f"see the trials' {store.LOG}"


def prepare(store_path: Path, trials: list[Trial], prices: dict[str, dict[str, Any]]) -> list[Trial]:
    """Create every trial's directory and sweep.json (with its variant's price); return the trials not yet done."""
    pending = []
    results = store.Store(store_path)
    for trial in trials:
        trial_dir = results.trial(trial.trial_id)
        trial_dir.write_sweep_meta({
            "trial_id": trial.trial_id, "variant_id": trial.variant_id, "variant": trial.variant.name,
            "is_baseline": trial.variant.is_baseline, "seed": trial.seed, "parameters": trial.variant.overrides,
            "price": prices.get(trial.variant_id, {}),
        })
        if not trial_dir.is_done():
            pending.append(trial)
    return pending


@dataclass(frozen=True)
class Outcome:
    """How a run ended: the trials table afterwards, the signal that interrupted it (Ctrl-C's SIGINT, or SIGTERM;
    0 when none) and why it stopped launching trials when the store could not be written (a full disk)."""

    trials: Any  # pandas DataFrame
    interrupted: int
    write_failure: str | None = None


def _register_local_sweep(store_path: Path) -> store.Lock:
    """Register this runner's local Ray instance in LOCAL_SWEEPS, saying in one line when another kwlab sweep runs
    one on this machine: each instance takes every CPU, so the two sweeps' trials compete for the cores."""
    others = []
    for path in sorted(LOCAL_SWEEPS.glob("*.json")):
        holder = store.Lock(path).live_holder()
        if holder is None:
            path.unlink(missing_ok=True)  # a runner that is gone
        elif holder.get("pid") != os.getpid():
            others.append(holder)
    for other in others:
        print(f"kwlab sweep: another kwlab sweep runs on this machine (pid {other.get('pid')}, "
              f"{other.get('command')}); each local Ray instance takes all {os.cpu_count()} CPUs, so their trials "
              "will compete for the cores (cap each with --max-concurrent, or run one after the other)",
              file=sys.stderr, flush=True)
    mine = store.Lock(LOCAL_SWEEPS / f"{os.getpid()}.json", str(store_path))
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


def check_capacity(spec: SweepSpec) -> None:
    """Refuse a trial that the live Ray cluster's nodes cannot place at all (instead of Tune waiting forever)."""
    import ray

    check_fits(spec.resources, [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")])


def run_trials(
    spec: SweepSpec, store_path: Path, trials: list[Trial], *, address: str | None, max_concurrent: int | None,
    prices: dict[str, dict[str, Any]], search: dict[str, Any] | None = None, imports: list[str] = (),
) -> Outcome:
    """Run the pending trials (then, for `bayes`, the Optuna search) through Ray Tune."""
    import ray

    results = store.Store(store_path)
    trackers = Trackers(spec, store_path)  # an unreachable MLflow server is refused here, before launch
    pending = prepare(store_path, trials, prices)
    fixed = [results.trial(t.trial_id) for t in trials]
    trackers.sync(fixed)  # what earlier runs of this store left (a resume, a kill -9)
    console = Console()
    searches = trackers.optuna.suggestions_to_run(spec.num_samples) if search else 0
    console.print(f"{spec.name}: {len(pending)} of {len(trials)} fixed trials to run "
                  f"({len(trials) - len(pending)} done earlier)" + (f", then {searches} Optuna suggestions "
                                                                    f"x {len(spec.seeds)} seeds" if search else ""))
    if not pending and not searches:
        return Outcome(results.write_tables()[0], False)
    local = _register_local_sweep(store_path) if address is None else None
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                 ignore_reinit_error=True)
    except ConnectionError as error:
        raise KWLabError(f"--address {address}: cannot reach a Ray cluster there ({error}); start one with "
                         "`ray start --head` or leave --address out for a local instance") from None
    terminated: list[int] = []  # SIGTERM (a scheduler's preemption) stops the runner as Ctrl-C does

    def terminate(signum: int, frame: Any) -> None:
        terminated.append(signum)  # Tune may raise its own KeyboardInterrupt in place of this one
        # one stop only: on a requeue Slurm signals every process of the job, and the batch script passes one on too
        if len(terminated) == 1:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)  # over Ray's handler, which dumps a C++ stack trace and aborts
    interrupted, printer = 0, None
    # Tune logs a failed trial's traceback; kwlab prints its own one-line event and keeps the trace in log.txt
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    try:
        check_capacity(spec)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress:
            groups = _groups(spec, pending)
            task = progress.add_task(spec.name, total=len(groups) + searches)
            printer = EventPrinter(results, console, progress, task, spec.metric.name, trackers=trackers)
            trackers.say = printer.say
            callback = TrialEvents(printer)
            resources = spec.resources
            job = {"imports": list(imports), "metric": spec.metric.name, "goal": spec.metric.goal,
                   "threads": max(1, int(resources.cpu)), "workers": resources.workers, "cpu": resources.cpu,
                   "gpu": resources.gpu, "train_storage": str((store_path / "ray" / "train").resolve())}
            if groups:
                space = [{**job, "trials": [describe_trial(t, store_path) for t in group]} for group in groups]
                _fit(spec, store_path, {"job": _grid(space)}, callback, max_concurrent, _asha(spec))
            if searches:
                from ray.tune.search.optuna import OptunaSearch

                searcher = OptunaSearch(distributions(spec.parameters), metric=SCORE, mode=spec.metric.goal[:3],
                                        seed=spec.sampler_seed, storage=trackers.optuna.storage,
                                        study_name=spec.name)
                context = {**job, **search, "store": str(store_path.resolve()), "seeds": spec.seeds}
                _fit(spec, store_path, {"job": context}, callback, max_concurrent, _asha(spec),
                     search_alg=searcher, num_samples=searches)
    except KeyboardInterrupt:
        interrupted = signal.SIGTERM if terminated else signal.SIGINT
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            ray.shutdown()
            shutil.rmtree(store_path / "ray", ignore_errors=True)  # Ray's bookkeeping; kwlab's records are the store
            trackers.sync(fixed)
        signal.signal(signal.SIGTERM, sigterm if sigterm is not None else signal.SIG_DFL)
        if local is not None:
            local.release()
    failure = printer.write_failure if printer is not None else None
    try:
        table = results.write_tables()[0]
    except WriteError as error:  # a full disk: the counts come from the trial folders, the tables wait for the rerun
        failure, table = failure or str(error), results.collect()[0]
    return Outcome(table, interrupted, failure)


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


def _fit(spec: SweepSpec, store_path: Path, space: dict[str, Any], callback: Any, max_concurrent: int | None,
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
            name=spec.name, storage_path=str((store_path / "ray").resolve()),
            failure_config=tune.FailureConfig(max_failures=spec.failure.max_retries), verbose=0,
            callbacks=[callback], stop=StopOnWriteFailure(callback.printer),
        ),
    ).fit()
