"""`kwlab bench-store [--trials 100,1000,10000]`: how the results store scales with the number of trials.

For each size, a synthetic store is written as a random sweep leaves it (a fifth of the trials' count of variants
over two swept keys, five seeds each, a few epochs per trial), then timed: the runner's bookkeeping of one finished
trial (its record read once and put into the tables), one write of the tables (which the runner does at most every
FLUSH_S seconds), and `kwlab status` and `kwlab report` as a user runs them (whole processes).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kwlab import store
from kwlab.errors import KWLabError
from kwlab.provenance import cpu_name
from kwlab.sweep.runner import FLUSH_S

SEEDS = 5
EPOCHS = 4
SAMPLE = 50  # finished trials whose bookkeeping is timed per size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `kwlab bench-store`."""
    parser.add_argument("--trials", default="100,1000,10000", help="comma list of store sizes (trials)")
    parser.add_argument("--keep", metavar="DIR", help="write the stores into DIR and keep them (default: a temporary "
                                                      "folder, removed)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def write_store(folder: Path, trials: int, seed: int = 0) -> store.Store:
    """A finished random sweep of `trials` trials (a fifth as many variants, five seeds each) in `folder`."""
    rng = random.Random(seed)
    results = store.Store(folder)
    variants = max(1, trials // SEEDS)
    spec = {"name": folder.name, "method": "random", "metric": {"name": "val_top1", "goal": "maximize"},
            "seeds": list(range(SEEDS)), "parameters": {
                "optim.lr": {"distribution": "log_uniform_values", "min": 0.01, "max": 0.3},
                "kw.budget": {"values": [0.5, 1, 2, 4]}}}
    results.write_spec(spec)
    plan = []
    for index in range(trials):
        variant, seed = divmod(index, SEEDS)
        if variant >= variants:
            break
        lr, budget = 0.01 * 30 ** ((variant * 7919 % 1000) / 1000), [0.5, 1, 2, 4][variant % 4]
        ids = {"trial_id": f"t{index:06d}", "variant_id": f"v{variant:05d}", "variant": f"lr={lr:.4g},budget={budget}",
               "is_baseline": False, "seed": seed}
        plan.append(ids)
        trial = results.trial(ids["trial_id"])
        trial.write_sweep_meta({**ids, "parameters": {"optim.lr": lr, "kw.budget": budget},
                                "price": {"params_total": int(1e5 * budget), "macs_per_image": int(1e6 * budget)},
                                "metric": spec["metric"], "epochs": EPOCHS, "method": "kw"})
        top1 = 60 + 10 * budget ** 0.5 + rng.gauss(0, 1)
        history = [{"epoch": e, "train_loss": 2.0 / e, "val_loss": 1.5 / e, "val_top1": top1 * e / EPOCHS,
                    "epoch_time_s": 1.0} for e in range(1, EPOCHS + 1)]
        trial.write_metrics(history)
        trial.write_summary({"status": "finished", "method": "kw", "epochs": EPOCHS, "seed": seed,
                             "best_epoch": EPOCHS, "best_metric": "val_top1", "best_goal": "maximize",
                             "test_top1": top1 - 1, "test_images": 10000, "val_images": 5000, "wall_time_s": 4.0,
                             **store.summarize_epochs(history)})
    results.write_plan(plan)
    return results


def bookkeeping_s(results: store.Store) -> tuple[float, float]:
    """(seconds of one finished trial's bookkeeping: its record read and put into the tables; seconds of one write of
    the tables, which the runner does at most every FLUSH_S seconds) on this store."""
    tables = results.load_tables()
    ids = list(tables.trials)[-SAMPLE:]
    started = time.perf_counter()
    for trial_id in ids:
        tables.update(results.trial(trial_id).record())
    per_trial = (time.perf_counter() - started) / len(ids)
    started = time.perf_counter()
    results.write_tables(tables)
    return per_trial, time.perf_counter() - started


def command_s(*args: str) -> float:
    """Wall seconds of `kwlab ARGS` in a fresh process; a failure is a KWLabError with its last line."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "kwlab.cli", *args], capture_output=True, text=True)
    if done.returncode:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise KWLabError(f"kwlab {' '.join(args)}: exit {done.returncode}: {tail}")
    return time.perf_counter() - started


def main(args: argparse.Namespace) -> int:
    """Write each store, time it, print the table."""
    try:
        sizes = [int(n) for n in args.trials.split(",") if n.strip()]
    except ValueError:
        raise KWLabError(f"--trials: expected a comma list of integers, got {args.trials!r}") from None
    if not sizes or min(sizes) < SEEDS:
        raise KWLabError(f"--trials: expected sizes of at least {SEEDS} trials, got {args.trials!r}")
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="kwlab-bench-store-"))
    rows: list[dict[str, Any]] = []
    try:
        for size in sizes:
            folder = root / f"store_{size}"
            shutil.rmtree(folder, ignore_errors=True)
            started = time.perf_counter()
            results = write_store(folder, size)
            written = time.perf_counter() - started
            results.write_tables()
            per_trial, write = bookkeeping_s(results)
            status = command_s("status", str(folder))
            report = command_s("report", str(folder), "--out", str(root / f"report_{size}"))
            rows.append({"trials": size, "write_store_s": round(written, 2), "bookkeeping_ms": round(per_trial * 1e3, 2),
                         "tables_write_s": round(write, 3), "status_s": round(status, 2),
                         "report_s": round(report, 1)})
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    machine = {"cpu": cpu_name(), "cores": os.cpu_count(), "load_average": [round(v, 2) for v in os.getloadavg()]}
    if args.json:
        print(json.dumps({"machine": machine, "results": rows}))
        return 0
    print(f"{'trials':>8} {'bookkeeping/trial':>18} {'tables write':>13} {'status':>8} {'report':>8}")
    for row in rows:
        print(f"{row['trials']:>8,} {row['bookkeeping_ms']:>15.2f} ms {row['tables_write_s']:>11.3f} s "
              f"{row['status_s']:>6.2f} s {row['report_s']:>6.1f} s")
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, load average {machine['load_average'][0]}; "
          f"stores of {SEEDS} seeds per variant, {EPOCHS} epochs per trial; bookkeeping: one finished trial's record "
          f"read and put into the tables; tables write: both tables written whole, at most every {FLUSH_S:g} s")
    return 0
