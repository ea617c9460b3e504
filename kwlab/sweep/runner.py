"""The Ray Tune adapter: runs a sweep's trials as Tune trials around `kwlab.train.run`.

The kwlab results store, not Ray's experiment state, decides what is left to do: a trial whose directory holds a
finished summary is skipped, any other one runs (resuming from its own checkpoint), so re-running a sweep resumes
it, also after the runner was killed. Ray's reporting API is touched only here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune import Callback
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kwlab.errors import KWLabError
from kwlab.files import write_text
from kwlab.results import trial_status, write_tables
from kwlab.sweep.expand import Trial
from kwlab.sweep.spec import SweepSpec

# Ray's own loggers (TensorBoard/CSV/JSON per trial) and its progress tables are off: kwlab writes its own records.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def describe(trial_dir: Path) -> dict[str, Any]:
    """The trial's sweep metadata (sweep.json)."""
    return json.loads((trial_dir / "sweep.json").read_text())


def train_trial(config: dict[str, Any], report: Any = None) -> None:
    """Ray function trainable: train one kwlab trial in its directory, reporting every epoch to Tune."""
    import torch
    from ray import tune

    from kwlab.train import TrainConfig, run

    report = report or tune.report

    config = config["trial"]  # the grid point: {"dir", "config", "threads"}
    trial_dir = Path(config["dir"])
    threads = config.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    (trial_dir / "error.json").unlink(missing_ok=True)
    with open(trial_dir / "log.txt", "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            for metrics in run(TrainConfig.from_dict(config["config"]), trial_dir):
                report(metrics)
        except Exception as error:
            traceback.print_exc()
            write_text(trial_dir / "error.json", json.dumps({"error": f"{type(error).__name__}: {error}"}))
            raise


def search_trial(config: dict[str, Any]) -> None:
    """Ray function trainable for `bayes`: one Optuna suggestion = one variant, trained at every seed in turn.

    Each seed is an ordinary kwlab trial (own directory, resumable, skipped when finished); Optuna is told the
    mean of the seeds' best metric, so the search compares variants the way the report does: over paired seeds.
    """
    from ray import tune

    from kwlab.sweep.expand import Variant, label, resolve

    search = config["search"]
    store, metric = Path(search["store"]), search["metric"]
    variant = Variant(label(config["params"]), dict(config["params"]))
    bests: list[float] = []
    for seed in search["seeds"]:
        trial = Trial(variant, seed, resolve(search["base"], variant, seed, search["source"]))
        trial_dir = store / "trials" / trial.trial_id
        if prepare(store, [trial]):
            point = {"trial": {"dir": str(trial_dir), "config": trial.config, "threads": search["threads"]}}
            train_trial(point, report=lambda m: tune.report({**m, "seed": seed, SCORE: _mean([*bests, m[metric]])}))
        bests.append(json.loads((trial_dir / "summary.json").read_text())["best_" + metric])
        tune.report({"seed": seed, SCORE: _mean(bests)})


SCORE = "score"  # what the bayes search optimises: the mean over seeds of each seed's best metric


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


@dataclass
class EventPrinter:
    """Prints one line per trial event above an overall progress bar and refreshes the store's tables."""

    store: Path
    console: Console
    progress: Progress
    task: Any
    metric: str

    def name(self, trial: Any) -> tuple[str, Path | None]:
        """A trial's readable name and its directory (None for a bayes suggestion spanning seeds)."""
        if "params" in trial.config:  # a bayes suggestion: one variant over all seeds
            from kwlab.sweep.expand import label

            return escape(f"{label(trial.config['params'])} (all seeds)"), None
        trial_dir = Path(trial.config["trial"]["dir"])
        meta = describe(trial_dir)
        return escape(f"{meta['variant']} seed={meta['seed']} [{meta['trial_id']}]"), trial_dir

    def say(self, text: str) -> None:
        """Print one timestamped event line above the progress bar."""
        self.progress.console.print(f"{time.strftime('%H:%M:%S')} {text}", highlight=False, soft_wrap=True)

    def done(self) -> None:
        """Count a trial as done and refresh the store's tables."""
        self.progress.advance(self.task)
        write_tables(self.store)


class TrialEvents(Callback):
    """The Tune callback: forwards trial events to an EventPrinter (kept out of Tune's pickled state)."""

    def __init__(self, printer: EventPrinter) -> None:
        self.printer = printer

    def __getstate__(self) -> dict[str, Any]:
        return {}  # Tune pickles its state for its own restore, which kwlab does not use (the store resumes)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.printer.say(f"started   {self.printer.name(trial)[0]}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "epoch" not in result:
            return
        metric = self.printer.metric
        value = result.get(metric)
        shown = f"{metric}={value:.4f}" if isinstance(value, float) else ""
        seed = f" seed={result['seed']}" if "seed" in result else ""
        self.printer.say(f"epoch {result['epoch']}  {self.printer.name(trial)[0]}{seed} {shown}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        name, trial_dir = self.printer.name(trial)
        metric = self.printer.metric
        if trial_dir is None:
            self.printer.say(f"finished  {name} mean best {metric}={trial.last_result.get(SCORE):.4f}")
        else:
            status = trial_status(trial_dir)
            if status != "finished":  # stopped early by the scheduler
                write_text(trial_dir / "error.json", json.dumps({"error": "stopped early by ASHA"}))
                status = "stopped early"
            self.printer.say(f"{status:9s} {name} {metric}={_best(trial_dir, metric)}")
        self.printer.done()

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        name, trial_dir = self.printer.name(trial)
        self.printer.say(f"retrying  {name}: {_error(trial_dir)}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        name, trial_dir = self.printer.name(trial)
        self.printer.say(f"[red]failed[/red]    {name}: {_error(trial_dir)}")
        self.printer.done()


def _error(trial_dir: Path | None) -> str:
    if trial_dir is None:
        return "see the seeds' log.txt files"
    try:
        return json.loads((trial_dir / "error.json").read_text())["error"]
    except (OSError, ValueError, KeyError):
        return "see log.txt"


def _best(trial_dir: Path, metric: str) -> str:
    try:
        summary = json.loads((trial_dir / "summary.json").read_text())
        return f"{summary['best_' + metric]:.4f}"
    except (OSError, ValueError, KeyError, TypeError):
        return "n/a"


def prepare(store: Path, trials: list[Trial]) -> list[Trial]:
    """Create every trial's directory and metadata; return the trials still to run (failed ones are reset)."""
    pending = []
    for trial in trials:
        trial_dir = store / "trials" / trial.trial_id
        trial_dir.mkdir(parents=True, exist_ok=True)
        meta = {"trial_id": trial.trial_id, "variant_id": trial.variant_id, "variant": trial.variant.name,
                "is_baseline": trial.variant.is_baseline, "seed": trial.seed, "parameters": trial.variant.overrides}
        write_text(trial_dir / "sweep.json", json.dumps(meta, default=str))
        if trial_status(trial_dir) != "finished":
            (trial_dir / "error.json").unlink(missing_ok=True)
            pending.append(trial)
    return pending


def run_trials(
    spec: SweepSpec, store: Path, trials: list[Trial], *, address: str | None, max_concurrent: int | None,
    search: dict[str, Any] | None = None,
) -> list[str]:
    """Run the pending trials (then, for `bayes`, the Optuna search) through Ray Tune; returns failed trial ids."""
    import ray

    pending = prepare(store, trials)
    console = Console()
    searches = spec.num_samples if search else 0
    console.print(f"{spec.name}: {len(pending)} of {len(trials)} fixed trials to run "
                  f"({len(trials) - len(pending)} finished earlier)" + (f", then {searches} Optuna suggestions "
                                                                       f"x {len(spec.seeds)} seeds" if search else ""))
    if not pending and not search:
        write_tables(store)
        return []
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                 ignore_reinit_error=True)
    except ConnectionError as error:
        raise KWLabError(f"--address {address}: cannot reach a Ray cluster there ({error}); start one with "
                         "`ray start --head` or leave --address out for a local instance") from None
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress:
            task = progress.add_task(spec.name, total=len(pending) + searches)
            callback = TrialEvents(EventPrinter(store, console, progress, task, spec.metric.name))
            threads = max(1, int(spec.resources.cpu))
            if pending:
                space = [{"dir": str((store / "trials" / t.trial_id).resolve()), "config": t.config,
                          "threads": threads} for t in pending]
                _fit(spec, store, train_trial, {"trial": tune_grid(space)}, callback, max_concurrent, _asha(spec))
            if search:
                from ray.tune.search.optuna import OptunaSearch

                searcher = OptunaSearch(optuna_space(spec), metric=SCORE, mode=spec.metric.goal[:3],
                                        seed=spec.sampler_seed)
                context = {**search, "store": str(store.resolve()), "threads": threads, "seeds": spec.seeds,
                           "metric": spec.metric.name}
                _fit(spec, store, search_trial, {"search": context}, callback, max_concurrent, None,
                     search_alg=searcher, num_samples=spec.num_samples)
    finally:
        ray.shutdown()
        shutil.rmtree(store / "ray", ignore_errors=True)  # Ray's bookkeeping; kwlab's records are the store
    trials_table, _ = write_tables(store)
    return list(trials_table.loc[trials_table["status"] == "failed", "trial_id"])


def tune_grid(points: list[dict[str, Any]]) -> Any:
    """Ray Tune's grid over explicit points (one Tune trial per point)."""
    from ray import tune

    return tune.grid_search(points)


def _asha(spec: SweepSpec) -> Any:
    from ray import tune

    if spec.early_terminate is None:
        return None
    return tune.schedulers.ASHAScheduler(
        time_attr="epoch", metric=spec.metric.name, mode=spec.metric.goal[:3],
        grace_period=spec.early_terminate.grace_period, reduction_factor=spec.early_terminate.reduction_factor,
    )


def _fit(spec: SweepSpec, store: Path, trainable: Any, space: dict[str, Any], callback: Any,
         max_concurrent: int | None, scheduler: Any, **tune_options: Any) -> None:
    from ray import tune

    tune.Tuner(
        tune.with_resources(trainable, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}),
        param_space=space,
        # reuse_actors: a finished trial's worker process takes the next trial; a fresh worker spends ~7 s importing
        # torch and kwlab on a 2-core CPU, a tenth of a small sweep's wall time (measured on cell_size)
        tune_config=tune.TuneConfig(scheduler=scheduler,
                                    max_concurrent_trials=max_concurrent or spec.max_concurrent_trials,
                                    reuse_actors=True, **tune_options),
        run_config=tune.RunConfig(
            name=f"{spec.name}-{trainable.__name__}", storage_path=str((store / "ray").resolve()),
            failure_config=tune.FailureConfig(max_failures=spec.failure.max_retries), verbose=0,
            callbacks=[callback],
        ),
    ).fit()


def optuna_space(spec: SweepSpec) -> dict[str, Any]:
    """The spec's parameters as Optuna distributions (for OptunaSearch)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space = {}
    for key, p in spec.parameters.items():
        match p.distribution:
            case "uniform" | "log_uniform_values" | "q_uniform":
                space[key] = FloatDistribution(p.min, p.max, log=p.distribution == "log_uniform_values",
                                               step=p.q if p.distribution == "q_uniform" else None)
            case "int_uniform":
                space[key] = IntDistribution(int(p.min), int(p.max))
            case _:
                space[key] = CategoricalDistribution(p.choices)
    return space
