"""`kwlab sweep SPEC`: validate, expand, price and run a sweep as Ray Tune trials into its results store.

Exit codes: 0 when every trial finished (or was stopped early by the scheduler), 1 when a trial failed, another
runner holds the results folder or it cannot be written (read-only, missing, a full disk), 2 for bad input, 130 when
interrupted (Ctrl-C), 143 when terminated (SIGTERM); the rerun resumes.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import signal
import sys
from dataclasses import dataclass
from typing import Any

import pandas as pd

from kwlab import store
from kwlab.errors import KWLabError, WriteError
from kwlab.storage import Storage
from kwlab.sweep.connect import check_address
from kwlab.sweep.connect import prepare as prepare_connection
from kwlab.sweep.estimate import duration
from kwlab.sweep.expand import (Trial, apply_constraints, price_config, base_config, check_size, compact_seeds, costliest_first,
                                count_line, expand, price, seeds_by_variant, size_line, variant_count)
from kwlab.sweep.spec import Resolved, SweepSpec, resolve_spec
from kwlab.train.config import TrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `kwlab sweep`."""
    add_sweep_arguments(parser)
    parser.add_argument("--dry-run", action="store_true", help="print the expanded, priced trials and exit")
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS") or None, metavar="HOST:PORT",
                        help="address of an existing Ray cluster's head (default: $RAY_ADDRESS when set, as Ray's own "
                             "tools take it, else a local Ray instance)")
    add_size_argument(parser)
    parser.add_argument("--mlflow", metavar="URI", help="log each trial as a run on this MLflow tracking server "
                                                        "(over the spec's tracking.mlflow.uri)")


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments that choose the sweep and how it runs, shared by `kwlab sweep` and `kwlab slurm` (which passes
    them on): the spec, --profile, --set, --max-concurrent and --results."""
    parser.add_argument("spec", help="sweep spec YAML, e.g. sweeps/cell_size.yaml")
    parser.add_argument("--profile", help="named override of the spec and its base (default: 'default' if the spec "
                                          "has one)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a spec key (e.g. seeds=[0,1], resources.gpu=1) or the base trial config by "
                             "dotted path (e.g. optim.lr=0.05), repeatable")
    parser.add_argument("--max-concurrent", type=int, help="cap on concurrently running trials (at least 1)")
    parser.add_argument("--results", help="results root (default: the spec's results_dir, 'results')")


def check_max_concurrent(max_concurrent: int | None) -> None:
    """Refuse a --max-concurrent below 1."""
    if max_concurrent is not None and max_concurrent < 1:
        raise KWLabError(f"--max-concurrent: expected an integer >= 1, got {max_concurrent}")


ANNOUNCE = 100  # a spec with this many variants takes a while to build: its size is printed first


@dataclass(frozen=True)
class Limits:
    """What a spec may ask for before it is refused: variants and trials (counted before they are built) and hours
    (the shortest its longest trial could take, on any machine)."""

    max_variants: int = 10_000
    max_trials: int = 100_000
    max_hours: float = 24.0

    @classmethod
    def of(cls, args: argparse.Namespace) -> Limits:
        """The limits given on the command line, checked."""
        limits = cls(args.max_variants, args.max_trials, args.max_hours)
        for name, value in (("--max-variants", limits.max_variants), ("--max-trials", limits.max_trials),
                            ("--max-hours", limits.max_hours)):
            if not value > 0:
                raise KWLabError(f"{name}: expected a number > 0, got {value}")
        return limits


def add_size_argument(parser: argparse.ArgumentParser) -> None:
    """`--max-variants N`, `--max-trials N` and `--max-hours H` (of `kwlab sweep` and `kwlab validate`)."""
    defaults = Limits()
    parser.add_argument("--max-variants", type=int, default=defaults.max_variants, metavar="N",
                        help="refuse a spec of more variants than this, counted before it is built (default "
                             "%(default)s)")
    parser.add_argument("--max-trials", type=int, default=defaults.max_trials, metavar="N",
                        help="refuse a spec of more trials (variants x seeds) than this, counted before they are "
                             "built (default %(default)s)")
    parser.add_argument("--max-hours", type=float, default=defaults.max_hours, metavar="H",
                        help="refuse a spec whose longest trial cannot take less than this many hours on any "
                             "machine (its MACs at a rate no CPU or GPU reaches; default %(default)s)")


@dataclass(frozen=True)
class Plan:
    """A sweep ready to run: the resolved spec, its trials and their prices, and the base trial config."""

    resolved: Resolved
    trials: list[Trial]
    priced: pd.DataFrame
    base: dict[str, Any]
    probe: TrainConfig | None = None  # bayes: the config of one suggestion, for checks and estimates

    @property
    def spec(self) -> SweepSpec:
        """The spec with its profile and --set applied."""
        return self.resolved.spec


def plan_sweep(path: str, profile: str | None, sets: list[str], limits: Limits = Limits()) -> Plan:
    """Load, validate, count (refusing more variants or trials than `limits` allow), expand, price and constrain a
    sweep, and refuse one whose longest trial cannot be shorter than `limits.max_hours`; nothing is trained."""
    resolved = resolve_spec(path, profile, sets)
    spec = resolved.spec
    check_size(spec, limits.max_variants, limits.max_trials, path)
    if variant_count(spec) >= ANNOUNCE:
        print(f"{path}: {size_line(spec)}; building and pricing them", file=sys.stderr, flush=True)
    base = base_config(spec, path, resolved.config_overrides)
    trials = expand(spec, base, path)
    probe = None
    if spec.method == "bayes":  # one point, to check (and time) what the suggestions will build
        from kwlab.sweep.expand import random_variants, resolve

        probe = resolve(base, random_variants(spec.model_copy(update={"num_samples": 1}))[0], spec.seeds[0], path)
        check_trial_configs(spec, [probe], path)
    check_trial_configs(spec, [t.cfg for t in trials], path)
    priced = price(trials, path)
    if spec.constraints:
        trials = apply_constraints(trials, priced, spec.constraints, path)
    kept = {t.variant_id for t in trials}
    named = [(t.variant.name, t.cfg) for t in trials] + ([("a suggestion", probe)] if probe is not None else [])
    check_hours(named, spec.resources.gpu > 0, limits.max_hours, path)
    return Plan(resolved, trials, priced[priced["variant_id"].isin(kept)].reset_index(drop=True), base, probe)


def check_hours(named: list[tuple[str, TrainConfig]], gpu: bool, max_hours: float, source: str) -> None:
    """Refuse a sweep whose longest trial (of these variants' configs) cannot take less than `max_hours` on any
    machine (`estimate.shortest_s`), naming it."""
    from kwlab.sweep.estimate import shortest_s

    hours = {name: shortest_s(cfg, price_config(cfg)["macs_per_image"], gpu) / 3600 for name, cfg in named}
    longest = max(hours, key=hours.__getitem__)
    if hours[longest] > max_hours:
        epochs = dict(named)[longest].epochs
        raise KWLabError(f"{source}: variant {longest!r} ({epochs:,} epochs) cannot train in less than "
                         f"{hours[longest]:,.0f} h on any machine, over --max-hours {max_hours:g}; check its epochs "
                         f"and data, or raise the limit with --max-hours {math.ceil(hours[longest])}")


def check_trial_configs(spec: SweepSpec, configs: list[TrainConfig], source: str) -> None:
    """What the trials need from the spec's resources, checked before launch: a global batch the workers share, and a
    GPU for a trial that asks for CUDA (the metric each trial records is checked by its config)."""
    for cfg in configs:
        if cfg.batch_size % spec.resources.workers:
            raise KWLabError(f"{source}: batch_size: {cfg.batch_size} does not divide among resources.workers = "
                             f"{spec.resources.workers} (batch_size is the global batch)")
        if cfg.runtime.device == "cuda" and spec.resources.gpu == 0:
            raise KWLabError(f"{source}: resources.gpu: the trials ask for runtime.device 'cuda' but resources.gpu "
                             "is 0, so Ray would give them no GPU; set resources.gpu (e.g. 1, or 0.5 to share one)")


def print_plan(plan: Plan, max_concurrent: int | None, results: store.Store) -> None:
    """The dry-run table: variants with parameters, MACs and estimated trial time, then the trial total and the
    estimated wall time on this machine of what is left to run (trials already done in the store are skipped)."""
    from rich.console import Console
    from rich.table import Table

    from kwlab.sweep.estimate import estimate

    spec, priced = plan.spec, plan.priced
    to_run = [t for t in plan.trials if not results.trial(t.trial_id).record().done]
    extra = [plan.probe] * (spec.num_samples * len(spec.seeds)) if plan.probe is not None else []
    timed = estimate(spec, plan.trials, max_concurrent, extra, to_run)
    table = Table(title=f"{spec.name}: {spec.method} sweep", title_justify="left")
    for column in ("variant", "baseline", "seeds", "params", "attention", "MACs/image", "est. trial"):
        table.add_column(column, justify="left" if column in ("variant", "baseline") else "right")
    baseline = {t.variant_id for t in plan.trials if t.variant.is_baseline}
    seeds = seeds_by_variant(plan.trials)
    for row in priced.to_dict("records"):
        attention = row.get("params_attention")
        table.add_row(row["variant"], "yes" if row["variant_id"] in baseline else "",
                      compact_seeds(seeds[row["variant_id"]]),
                      f"{row['params_total']:,}", f"{int(attention):,}" if pd.notna(attention) else "",
                      f"{row['macs_per_image']:,}", duration(timed.trial_s[row["variant_id"]]))
    console = Console()
    console.print(table)
    console.print(count_line(plan.trials) +
                  (f"; {len(to_run)} to run ({len(plan.trials) - len(to_run)} done earlier in {results})"
                   if len(to_run) < len(plan.trials) else ""))
    if spec.method == "bayes":
        console.print(f"then {spec.num_samples} Optuna TPE suggestions (seed {spec.sampler_seed}) over "
                      f"{', '.join(spec.parameters)}, each trained at seeds {spec.seeds}")
    if not timed.total_s:
        console.print("nothing left to run")
        return
    console.print(f"estimated wall time on this machine: {duration(timed.total_s)} at {timed.slots} trial"
                  f"{'s' if timed.slots > 1 else ''} at a time (each variant timed on 3 training steps and one "
                  f"evaluation batch, scaled to its epochs)")


def store_folder(args: argparse.Namespace, plan: Plan) -> store.Store:
    """The results store: <results>/<name> for the default profile, <results>/<name>-<profile> for any other, where
    <results> is --results or the spec's results_dir, a folder or a URI."""
    spec, profile = plan.spec, plan.resolved.profile
    name = spec.name if profile in (None, "default") else f"{spec.name}-{profile}"
    return store.Store(Storage.of(args.results or spec.results_dir).child(name))


def manifest(args: argparse.Namespace, profile: str | None) -> dict[str, Any]:
    """Provenance of a sweep run: versions, git state, hardware, command line."""
    from kwlab.provenance import git_state, hardware, versions

    return {"command": shlex.join(["kwlab", *sys.argv[1:]]) if sys.argv else None, "profile": profile,
            "versions": versions("ray", "optuna", "pandas", "numpy"), "git": git_state(), "hardware": hardware()}


def main(args: argparse.Namespace) -> int:
    """Run (or dry-run) the sweep; see the module doc for the exit codes."""
    check_max_concurrent(args.max_concurrent)
    if args.address is not None:  # a malformed one: one line before the spec is even read
        check_address(args.address)
    plan = plan_sweep(args.spec, args.profile, args.set, Limits.of(args))
    results = store_folder(args, plan)
    if args.dry_run:
        print_plan(plan, args.max_concurrent, results)
        return 0
    spec = plan.spec
    if args.mlflow:
        from kwlab.sweep.spec import MLflowTracking

        mlflow = spec.tracking.mlflow or MLflowTracking(uri=args.mlflow)
        spec = spec.model_copy(update={"tracking": spec.tracking.model_copy(
            update={"mlflow": mlflow.model_copy(update={"uri": args.mlflow})})})
    prepare_connection(args.address)  # before Ray is imported: it reads these settings then
    lock = results.lock(shlex.join(["kwlab", *sys.argv[1:]]))
    try:
        lock.acquire()
    except KWLabError as error:
        print(f"kwlab sweep: {error}", file=sys.stderr)
        return 1

    def cluster_lost(outcome: Any) -> None:  # from the runner's watch thread: end here, as Ray would a minute later
        code = report_outcome(spec, results, outcome, plan_of(plan))
        lock.release()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    try:
        if lock.taken_over:
            holder = lock.taken_over
            print(f"{spec.name}: took over a stale lock of pid {holder.get('pid')} on {holder.get('host')} (since "
                  f"{holder.get('started')}); that runner is gone", file=sys.stderr)
        results.write_spec(spec.model_dump(mode="json") | {"profile": plan.resolved.profile, "set": args.set})
        results.write_manifest(manifest(args, plan.resolved.profile))
        from kwlab.sweep.runner import run_trials

        search = {"base": plan.base, "source": args.spec} if spec.method == "bayes" else None
        prices = {row["variant_id"]: {k: v for k, v in row.items() if k.startswith(("params_", "macs_"))}
                  for row in plan.priced.to_dict("records")}
        with lock.beating():
            outcome = run_trials(spec, results, costliest_first(plan.trials, plan.priced), address=args.address,
                                 max_concurrent=args.max_concurrent, prices=prices, search=search,
                                 imports=plan.resolved.imports, on_cluster_lost=cluster_lost)
    except WriteError as error:  # before launch: the store cannot be written (full, read-only)
        print(f"kwlab sweep: {error}", file=sys.stderr)
        return 1
    finally:
        lock.release()
    return report_outcome(spec, results, outcome, plan_of(plan))


def plan_of(plan: Plan) -> dict[str, Any]:
    """The plan as plan.json holds it (kwlab.store.Store.write_plan)."""
    return {"trials": [{"trial_id": t.trial_id} for t in plan.trials],
            "suggestions": plan.spec.num_samples if plan.spec.method == "bayes" else 0,
            "seeds": list(plan.spec.seeds)}


def report_outcome(spec: SweepSpec, results: store.Store, outcome: Any, plan: dict[str, Any]) -> int:
    """Print what the store now holds of the planned trials (`plan`, as plan.json holds it), and the exit code."""
    table = outcome.trials
    statuses = dict(zip(table["trial_id"], table["status"], strict=True)) if len(table) else {}
    n = store.planned_counts(statuses, plan)
    total = sum(n.values())
    stopped = f", {n['stopped']} stopped early" if n["stopped"] else ""
    missing = f", {n[store.MISSING]} missing" if n[store.MISSING] else ""
    line = (f"{spec.name}: {n['finished']} of {total} trials finished{stopped}, {n['failed']} failed, "
            f"{n['running'] + n['pending']} not finished{missing}; results in {results}")
    command = shlex.join(["kwlab", *sys.argv[1:]])
    if outcome.interrupted:
        what = "terminated (SIGTERM)" if outcome.interrupted == signal.SIGTERM else "interrupted"
        print(f"{line}\n{what}: finished trials are kept; resume with: {command}", file=sys.stderr)
        return 128 + outcome.interrupted
    if outcome.write_failure:
        print(f"{line}\nstopped launching trials: {outcome.write_failure}; free the space (or fix the folder) and "
              f"resume with: {command}", file=sys.stderr)
        return 1
    if outcome.stopped_by:
        print(f"{line}\nstopped: {outcome.stopped_by}; finished trials are kept; resume with: {command}",
              file=sys.stderr)
        return 1
    if n["failed"]:
        failed = outcome.trials.loc[outcome.trials["status"] == "failed", "trial_id"]
        print(f"{line}\nfailed: {', '.join(failed)} (errors in {results}/{store.TRIALS}/<id>/{store.ERROR} and "
              f"{store.LOG})", file=sys.stderr)
        return 1
    if n["running"] + n["pending"]:
        print(f"{line}\nsome trials did not finish; rerun the same command to resume them", file=sys.stderr)
        return 1
    if n[store.MISSING]:
        print(f"{line}\n{n[store.MISSING]} planned trials have no folder in the store (removed while the sweep ran?); "
              f"rerun the same command to train them", file=sys.stderr)
        return 1
    print(line)
    return 0
