"""Where a sweep stands, as report.md's Status section: counts by status, the trials stopped early, failed,
unfinished or missing, and the older configs of a variant the store also holds, with what each changes."""

from __future__ import annotations

import numpy as np

from analysis.style import plural
from analysis.sweep import Sweep, progress
from kwlab.store import PLAN


def status_lines(sweep: Sweep, order: list[str], changes: dict[str, str]) -> list[str]:
    """The Status section's lines; `order` is the variants' display order, `changes` variant_id of an older config
    -> what it changes (analysis.analyse.older_configs)."""
    state = progress(sweep)
    rank = {name: i for i, name in enumerate(order)}
    state.unfinished = state.unfinished.assign(_rank=state.unfinished["variant"].map(rank)).sort_values(
        ["_rank", "seed"], kind="stable")
    total = len(sweep.trials)
    counts = state.counts
    lines = [f"{counts['finished']} of {total} trials finished, {counts['stopped']} stopped early, "
             f"{counts['failed']} failed, {counts['running']} running, {counts['pending']} pending."]
    if counts["finished"] < total or state.missing:
        lines[0] += " Every number below uses the finished trials only."
    lines += _older_configs(sweep, changes)
    if len(state.stopped):
        lines += ["", "Stopped early by the scheduler (left out of the statistics, which pair finished seeds only):",
                  ""]
        for row in state.stopped.to_dict("records"):
            after = f" after epoch {int(row['epoch'])}" if row["epoch"] is not None else ""
            lines.append(f"- `{row['trial_id']}` {row['variant']}, seed {row['seed']}: {row['reason']}{after}")
    if len(state.failed):
        lines += ["", "Failed trials:", ""]
        for row in state.failed.to_dict("records"):
            error = str(row["error"] or "no error recorded").splitlines()[0][:200]
            lines.append(f"- `{row['trial_id']}` {row['variant']}, seed {row['seed']}: {error}")
    if len(state.unfinished):
        lines += ["", "Not finished yet:", ""]
        for row in state.unfinished.to_dict("records"):
            done = row.get("epochs_done")
            running = row["status"] == "running" and done is not None and np.isfinite(done)
            epochs = f", {plural(int(done), 'epoch')} done" if running else ""
            lines.append(f"- `{row['trial_id']}` {row['variant']}, seed {row['seed']} ({row['status']}{epochs})")
    if state.missing:
        lines += ["", "Missing (seeds the spec lists with no trial in the store):", ""]
        lines += [f"- {variant}, seed {seed}" for variant, seed in state.missing]
    return lines


def _older_configs(sweep: Sweep, changes: dict[str, str]) -> list[str]:
    """The trials of another config of a variant (same name, another variant_id), one line per config saying what
    it changes from the current one."""
    trials = sweep.trials
    stale = trials[[v.endswith(f"[{i}]") for v, i in zip(trials["variant"], trials["variant_id"], strict=True)]]
    if stale.empty:
        return []
    current = (f"the one the latest spec plans ({PLAN})" if sweep.plan is not None else
               f"the one with the most finished trials (the store has no {PLAN} saying which the spec plans)")
    lines = ["", f"{plural(len(stale), 'trial')} of the store belong to another config of a variant (same name, "
             f"different variant_id: shown as 'name [variant_id]') than {current}, e.g. from an earlier run with "
             f"other settings; each is its own row below:", ""]
    for (variant_id, name), rows in stale.groupby(["variant_id", "variant"], sort=False):
        finished = int((rows["status"] == "finished").sum())
        lines.append(f"- `{name}`: {plural(len(rows), 'trial')}, {finished} finished; "
                     f"{changes.get(variant_id, 'what differs is not known')}")
    return lines
