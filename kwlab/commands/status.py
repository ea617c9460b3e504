"""`kwlab status RESULTS [--json]`: where a sweep stands, from another terminal while it runs or after it.

Reads only the results store (never Ray): counts by status, the running trials with their epoch and last metric,
the best variant so far, an estimate of the time left from the trials' measured epochs, and the runner lock's holder.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from typing import Any

from kwlab import store
from kwlab.errors import KWLabError
from kwlab.sweep.estimate import duration
from kwlab.best import MetricConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `kwlab status`."""
    parser.add_argument("results", help="a sweep's results folder, e.g. results/cell_size")
    parser.add_argument("--json", action="store_true", help="print the same as one JSON object")


def sweep_status(path: str) -> dict[str, Any]:
    """The status of a results store as a JSON-ready dict (what `--json` prints)."""
    results = store.Store(path)
    if not results.exists():
        raise KWLabError(f"{path}: not a kwlab results store (no {store.TRIALS}/ folder); run `kwlab sweep SPEC` "
                         "first")
    spec = results.spec()
    metric = MetricConfig.from_dict(spec.get("metric") or {})
    tables = results.load_tables()
    trials, epochs = tables.trials, tables.epochs
    counts = store.planned_counts({i: row["status"] for i, row in trials.items()}, results.plan())
    epoch_time = {trial_id: sum(times) / len(times) for trial_id, rows in epochs.items()
                  if (times := [e["epoch_time_s"] for e in rows if isinstance(e.get("epoch_time_s"), int | float)])}
    typical = statistics.median(epoch_time.values()) if epoch_time else None  # for a trial in its first epoch
    holder = results.lock().holder()
    live = holder is not None and store.alive(holder)
    running, left = [], []
    for trial_id, row in trials.items():
        if row["status"] != "running":
            continue
        total = _planned(results.trial(trial_id))
        done = int(row.get("epochs_done") or 0)
        values = [e[metric.name] for e in epochs.get(trial_id, []) if metric.name in e]
        quiet = time.time() - float(row.get("updated") or 0)  # since its folder last changed
        expected = epoch_time.get(trial_id, typical)
        running.append({"trial_id": trial_id, "variant": row.get("variant"), "seed": int(row.get("seed") or 0),
                        "epoch": done, "epochs": total, metric.name: float(values[-1]) if values else None,
                        "quiet_s": round(quiet, 1), "stalled": live and expected is not None
                        and quiet > max(STALLED_EPOCHS * expected, STALLED_MIN_S)})
        if total is not None and trial_id in epoch_time:
            left.append((total - done) * epoch_time[trial_id])
    finished = [row for row in trials.values() if row["status"] == "finished"]
    pending = counts["pending"]
    if pending:  # a pending trial is taken to cost what a finished one did, else a running one's full length
        walls = [row["wall_time_s"] for row in finished if isinstance(row.get("wall_time_s"), int | float)]
        whole = [r["epochs"] * epoch_time[r["trial_id"]] for r in running
                 if r["epochs"] is not None and r["trial_id"] in epoch_time]
        each = sum(walls) / len(walls) if walls else (sum(whole) / len(whole) if whole else None)
        left = left + [each] * pending if each is not None else []
    slots = max(1, len(running))
    return {"name": spec.get("name", results.path.name), "path": str(results), "metric": metric.name,
            "goal": metric.goal, "trials": sum(counts.values()), "counts": counts, "running": running,
            "best": _best_variant(finished, metric.name, metric.goal),
            "time_left_s": sum(left) / slots if left and live else (
                0.0 if not (counts["running"] + pending) else None),
            "runner": holder and {**holder, "alive": live}}


STALLED_EPOCHS = 3.0  # a running trial is stalled when nothing was written for this many of its epoch times
STALLED_MIN_S = 20.0  # and for at least this long


def _planned(trial: store.TrialDir) -> int | None:
    """A running trial's planned epochs: its sweep.json's, else (a store of an older kwlab) its config's."""
    total = (trial.sweep_meta() or {}).get("epochs") or trial.config().get("epochs")
    return int(total) if isinstance(total, int) else None


def _best_variant(finished: list[dict[str, Any]], metric: str, goal: str) -> dict[str, Any] | None:
    """The variant whose finished seeds have the best mean metric at their best epochs (kwlab.best)."""
    by_variant: dict[str, list[float]] = {}
    for row in finished:
        value = row.get(f"best_{metric}")
        if isinstance(value, int | float) and math.isfinite(value):
            by_variant.setdefault(str(row.get("variant")), []).append(float(value))
    if not by_variant:
        return None
    means = {name: sum(values) / len(values) for name, values in by_variant.items()}
    name = min(means, key=means.__getitem__) if goal == "minimize" else max(means, key=means.__getitem__)
    return {"variant": name, metric: means[name], "seeds": len(by_variant[name])}


def format_status(status: dict[str, Any]) -> str:
    """The status as the lines `kwlab status` prints."""
    metric, counts = status["metric"], status["counts"]
    lines = [f"{status['name']}: {status['trials']} trials: " + ", ".join(
        f"{counts[s]} {s}" for s in (*store.STATUSES, store.MISSING) if counts[s] or s != store.MISSING)]
    for row in status["running"]:
        value = row[metric]
        shown = f", last {metric} {value:.4g}" if value is not None and math.isfinite(value) else ""
        lines.append(f"  running {row['variant']} seed {row['seed']} [{row['trial_id']}]: epoch {row['epoch']}"
                     f"{'/' + str(row['epochs']) if row['epochs'] is not None else ''}{shown}"
                     + (f"; stalled: nothing written for {duration(row['quiet_s'])}" if row["stalled"] else ""))
    best = status["best"]
    lines.append(f"best so far: {best['variant']} ({metric} {best[metric]:.4g}, mean of the best epoch over "
                 f"{best['seeds']} finished seed{'s' if best['seeds'] != 1 else ''})" if best
                 else "best so far: none (no trial finished yet)")
    left, holder = status["time_left_s"], status["runner"]
    lines.append("time left: " + (f"about {duration(left)} (from the trials' measured epochs)" if left else
                                  "none" if left == 0 else "unknown (no runner)" if holder is None or not
                                  holder["alive"] else "unknown (no epoch measured yet)"))
    if holder is None:
        lines.append(f"runner: none (no {store.LOCK})")
    elif holder["alive"]:
        lines.append(f"runner: pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')} "
                     f"({holder.get('command')})")
    else:
        lines.append(f"runner: none: pid {holder.get('pid')} on {holder.get('host')} (since {holder.get('started')}) is "
                     f"gone; rerun its command to resume ({holder.get('command')})")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Print the status of a results store."""
    status = sweep_status(args.results)
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0
