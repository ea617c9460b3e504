"""`kwlab status RESULTS [--json]`: where a sweep stands, from another terminal while it runs or after it.

Reads only the results store (never Ray): counts by status, the running trials with their epoch and last metric,
the best variant so far, an estimate of the time left from the trials' measured epochs, and the runner lock's holder.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import pandas as pd

from kwlab import store
from kwlab.errors import KWLabError
from kwlab.sweep.command import duration


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `kwlab status`."""
    parser.add_argument("results", help="a sweep's results folder, e.g. results/cell_size")
    parser.add_argument("--json", action="store_true", help="print the same as one JSON object")


def _last(values: pd.Series) -> float | None:
    values = values.dropna()
    return float(values.iloc[-1]) if len(values) else None


def sweep_status(path: str) -> dict[str, Any]:
    """The status of a results store as a JSON-ready dict (what `--json` prints)."""
    results = store.Store(path)
    if not results.exists():
        raise KWLabError(f"{path}: not a kwlab results store (no {store.TRIALS}/ folder); run `kwlab sweep SPEC` "
                         "first")
    spec = results.spec()
    metric = (spec.get("metric") or {}).get("name", "val_top1")
    goal = (spec.get("metric") or {}).get("goal", store.metric_goal(metric))
    trials, epochs = results.collect()
    column = trials["status"] if "status" in trials else pd.Series(dtype=object)
    counts = {status: int((column == status).sum()) for status in store.STATUSES}
    epoch_time = epochs.groupby("trial_id")["epoch_time_s"].mean() if "epoch_time_s" in epochs else pd.Series()
    running, left = [], []
    for row in trials[column == "running"].to_dict("records"):
        total = results.trial(row["trial_id"]).config().get("epochs")
        done = int(row.get("epochs_done") or 0)
        history = epochs[epochs["trial_id"] == row["trial_id"]] if len(epochs) else epochs
        running.append({"trial_id": row["trial_id"], "variant": row["variant"], "seed": int(row["seed"]),
                        "epoch": done, "epochs": total,
                        metric: _last(history[metric]) if metric in history else None})
        if total is not None and row["trial_id"] in epoch_time:
            left.append((total - done) * float(epoch_time[row["trial_id"]]))
    finished = trials[column == "finished"]
    pending = counts["pending"]
    if pending:  # a pending trial is taken to cost what a finished one did, else a running one's full length
        walls = finished["wall_time_s"].dropna() if "wall_time_s" in finished else pd.Series(dtype=float)
        whole = [r["epochs"] * float(epoch_time[r["trial_id"]]) for r in running
                 if r["epochs"] is not None and r["trial_id"] in epoch_time]
        each = float(walls.mean()) if len(walls) else (sum(whole) / len(whole) if whole else None)
        left = left + [each] * pending if each is not None else []
    slots = max(1, len(running))
    best = None
    column_best = f"best_{metric}"
    if len(finished) and column_best in finished:
        means = finished.groupby("variant")[column_best].agg(["mean", "count"]).dropna()
        if len(means):
            name = means["mean"].idxmin() if goal == "minimize" else means["mean"].idxmax()
            best = {"variant": name, metric: float(means.loc[name, "mean"]), "seeds": int(means.loc[name, "count"])}
    holder = results.lock().holder()
    return {"name": spec.get("name", results.path.name), "path": str(results.path), "metric": metric, "goal": goal,
            "trials": len(trials), "counts": counts, "running": running, "best": best,
            "time_left_s": sum(left) / slots if left else (0.0 if not (counts["running"] + pending) else None),
            "runner": holder}


def format_status(status: dict[str, Any]) -> str:
    """The status as the lines `kwlab status` prints."""
    metric, counts = status["metric"], status["counts"]
    lines = [f"{status['name']}: {status['trials']} trials: " + ", ".join(f"{counts[s]} {s}" for s in store.STATUSES)]
    for row in status["running"]:
        value = row[metric]
        shown = f", last {metric} {value:.4g}" if value is not None and math.isfinite(value) else ""
        lines.append(f"  running {row['variant']} seed {row['seed']} [{row['trial_id']}]: epoch {row['epoch']}"
                     f"{'/' + str(row['epochs']) if row['epochs'] is not None else ''}{shown}")
    best = status["best"]
    lines.append(f"best so far: {best['variant']} ({metric} {best[metric]:.4g}, mean of the best epoch over "
                 f"{best['seeds']} finished seed{'s' if best['seeds'] != 1 else ''})" if best
                 else "best so far: none (no trial finished yet)")
    left = status["time_left_s"]
    lines.append("time left: " + (f"about {duration(left)} (from the trials' measured epochs)" if left else
                                  "none" if left == 0 else "unknown (no epoch measured yet)"))
    holder = status["runner"]
    lines.append(f"runner: pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"
                 f" ({holder.get('command')})" if holder else f"runner: none (no {store.LOCK})")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Print the status of a results store."""
    status = sweep_status(args.results)
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0
