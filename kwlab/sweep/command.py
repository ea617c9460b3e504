"""`kwlab sweep SPEC`: validate, expand, price and run a sweep as Ray Tune trials into its results store."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from kwlab.files import write_text
from kwlab.sweep.expand import Trial, apply_constraints, base_config, costliest_first, expand, price
from kwlab.sweep.spec import SweepSpec, load_spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `kwlab sweep`."""
    parser.add_argument("spec", help="sweep spec YAML, e.g. sweeps/cell_size.yaml")
    parser.add_argument("--profile", help="named override of the base (default: 'default' if the spec has one)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override the base trial config by dotted path, repeatable")
    parser.add_argument("--dry-run", action="store_true", help="print the expanded, priced trials and exit")
    parser.add_argument("--address", help="address of an existing Ray cluster (default: a local Ray instance)")
    parser.add_argument("--max-concurrent", type=int, help="cap on concurrently running trials")
    parser.add_argument("--results", help="results root (default: the spec's results_dir, 'results')")


def plan_sweep(path: str, profile: str | None, sets: list[str]) -> tuple[SweepSpec, list[Trial], pd.DataFrame, dict]:
    """Load, validate, expand, price and constrain a sweep; nothing is trained."""
    spec = load_spec(path)
    base = base_config(spec, path, profile, sets)
    trials = expand(spec, base, path)
    priced = price(trials, path)
    if spec.constraints:
        trials = apply_constraints(trials, priced, spec.constraints, path)
    kept = {t.variant_id for t in trials}
    return spec, trials, priced[priced["variant_id"].isin(kept)].reset_index(drop=True), base


def manifest(args: argparse.Namespace) -> dict[str, Any]:
    """Provenance of a sweep run: versions, git state, hardware, command line."""
    import torch

    from kwlab.train.records import git_state, versions

    return {
        "command": " ".join(["kwlab", *sys.argv[1:]]) if sys.argv else None,
        "profile": args.profile,
        "versions": versions() | {p: metadata.version(p) for p in ("ray", "optuna", "pandas", "numpy")},
        "git": git_state(),
        "hardware": {"machine": platform.machine(), "processor": platform.processor(),
                     "cpus": len(os.sched_getaffinity(0)),
                     "cuda": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]},
    }


def print_plan(spec: SweepSpec, trials: list[Trial], priced: pd.DataFrame) -> None:
    """The dry-run table: variants with parameters and MACs, and the trial total."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{spec.name}: {spec.method} sweep", title_justify="left")
    for column in ("variant", "baseline", "seeds", "params", "attention", "MACs/image"):
        table.add_column(column, justify="left" if column in ("variant", "baseline") else "right")
    baseline = {t.variant_id for t in trials if t.variant.is_baseline}
    for row in priced.itertuples():
        table.add_row(row.variant, "yes" if row.variant_id in baseline else "", ",".join(map(str, spec.seeds)),
                      f"{row.params:,}", f"{row.params_attention:,}", f"{row.macs:,}")
    console = Console()
    console.print(table)
    console.print(f"{len(priced)} variants x {len(spec.seeds)} seeds = {len(trials)} trials")
    if spec.method == "bayes":
        console.print(f"then {spec.num_samples} Optuna TPE suggestions (seed {spec.sampler_seed}) over "
                      f"{', '.join(spec.parameters)}, each trained at seeds {spec.seeds}")


def main(args: argparse.Namespace) -> int:
    """Run (or dry-run) the sweep; exit 1 if any trial finally failed."""
    spec, trials, priced, base = plan_sweep(args.spec, args.profile, args.set)
    if args.dry_run:
        print_plan(spec, trials, priced)
        return 0
    store = Path(args.results or spec.results_dir) / spec.name
    store.mkdir(parents=True, exist_ok=True)
    resolved = spec.model_dump(mode="json") | {"profile": args.profile, "set": args.set}
    write_text(store / "spec.yaml", yaml.safe_dump(resolved, sort_keys=False))
    write_text(store / "manifest.json", json.dumps(manifest(args), indent=2))
    from kwlab.sweep.runner import run_trials

    search = {"base": base, "source": args.spec} if spec.method == "bayes" else None
    failed = run_trials(spec, store, costliest_first(trials, priced), address=args.address, max_concurrent=args.max_concurrent, search=search)
    if failed:
        print(f"{spec.name}: {len(failed)} of {len(trials)} trials failed: {', '.join(failed)} "
              f"(errors in {store}/trials/<id>/error.json and log.txt)", file=sys.stderr)
        return 1
    print(f"{spec.name}: {len(trials)} trials finished; results in {store}")
    return 0
