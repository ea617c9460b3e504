"""How long a sweep will take on this machine, before launching it (`kwlab sweep SPEC --dry-run`).

Each variant's trial is timed on a few training steps and one evaluation batch at the trial's threads
(`kwlab.train.recipe.time_trial`) and scaled by its epochs, steps per epoch and evaluated images. The sweep's total
packs the trials, dearest first, onto as many slots as run at once (the longest-processing-time rule the runner
follows), plus Ray's fixed cost.
"""

from __future__ import annotations

import heapq
import json
import os
from dataclasses import dataclass

from typing import TYPE_CHECKING

from kwlab.sweep.spec import SweepSpec

if TYPE_CHECKING:  # the trials and configs come from the caller: estimating needs no model code until it times
    from kwlab.sweep.expand import Trial
    from kwlab.train.config import TrainConfig
    from kwlab.train.recipe import Timing

# Starting the local Ray instance, Tune's set-up, the first workers' imports and the shutdown: 14 s measured on the
# 2-core CPU here (smoke sweep, 2026-11-22 and again 2026-12-01).
RAY_FIXED_S = 14.0


@dataclass(frozen=True)
class Estimate:
    """Per-variant trial seconds and the sweep's wall time at `slots` trials at a time."""

    trial_s: dict[str, float]  # variant_id -> one trial's estimated seconds
    slots: int
    total_s: float


def makespan(durations: list[float], slots: int) -> float:
    """Wall time of running `durations` on `slots` parallel slots, dearest first, each on the first free slot."""
    finish = [0.0] * max(1, slots)
    for duration in sorted(durations, reverse=True):
        heapq.heapreplace(finish, finish[0] + duration)
    return max(finish)


def concurrency(spec: SweepSpec, max_concurrent: int | None, trials: int) -> int:
    """Trials at a time on this machine: what its CPUs (and the caps) allow."""
    cpus = len(os.sched_getaffinity(0))
    slots = max(1, int(cpus // (spec.resources.cpu * spec.resources.workers)))
    for cap in (max_concurrent, spec.max_concurrent_trials):
        if cap:
            slots = min(slots, cap)
    return max(1, min(slots, trials))


def estimate(spec: SweepSpec, trials: list[Trial], max_concurrent: int | None,
             extra: list[TrainConfig] = (), to_run: list[Trial] | None = None) -> Estimate:
    """Time one trial of each variant and estimate the sweep: `to_run` (default: all `trials`) plus `extra`, configs
    of trials not in `trials` (e.g. a bayes sweep's suggestions, priced by a probe)."""
    from kwlab.train.recipe import time_trial

    cache: dict[str, Timing] = {}

    def timing(cfg: TrainConfig) -> Timing:
        key = json.dumps({k: v for k, v in cfg.to_dict().items() if k != "seed"}, sort_keys=True)
        if key not in cache:
            cache[key] = time_trial(cfg)
        return cache[key]

    per_variant = {t.variant_id: timing(t.cfg).trial_s for t in trials}
    durations = [per_variant[t.variant_id] for t in (trials if to_run is None else to_run)]
    durations += [timing(c).trial_s for c in extra]
    slots = concurrency(spec, max_concurrent, len(durations))
    measuring = sum(t.measure_s for t in cache.values())  # the sweep times measured paths once, before its trials
    return Estimate(per_variant, slots, RAY_FIXED_S + measuring + makespan(durations, slots) if durations else 0.0)


# Rates no machine kwlab runs on reaches, in multiply-adds per second (forward): a bound that is never too long
FASTEST_CPU_MACS = 2e12
FASTEST_GPU_MACS = 2e15


def shortest_s(cfg: TrainConfig, macs_per_image: float, gpu: bool) -> float:
    """The fewest seconds a trial of `cfg` can take on any machine: its images' MACs (forward and backward, 3x, for
    the training images; forward for the validation images) every epoch, at a rate above any CPU's or GPU's."""
    from kwlab.sweep.expand import data_shape

    train, val = data_shape(cfg.data)[3:]
    work = cfg.epochs * (3 * train + val) * macs_per_image
    return work / (FASTEST_GPU_MACS if gpu else FASTEST_CPU_MACS)


def duration(seconds: float) -> str:
    """'45 s', '12.5 min', '1 h 42 min'."""
    if seconds < 100:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
