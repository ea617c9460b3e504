"""A sweep's measured path choices (`runtime.paths: measured`): each layer shape is timed once per sweep, before its
trials, in one Ray task that has a trial's resources (so on the kind of worker that trains); the choices are kept in
the store (measured_paths.json) and given to every trial, so all seeds of a variant take the same paths, and a rerun
of the sweep replays them instead of timing again.

Layer shapes the task does not meet are timed by the trial that meets them: the per-worker batches of a
data-parallel trial, and the variants of a bayes search, whose seeds share one process and so one measurement.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kwlab import store

if TYPE_CHECKING:
    from kwlab.sweep.expand import Trial
    from kwlab.sweep.spec import Resources
    from kwlab.train.config import TrainConfig


def measured_configs(trials: list[Trial]) -> list[TrainConfig]:
    """One config per variant among `trials` whose layers measure their paths (its first seed's); compiled ones take
    the cost model's path (a traced graph keeps one path)."""
    chosen: dict[str, TrainConfig] = {}
    for trial in trials:
        if trial.cfg.runtime.paths == "measured" and not trial.cfg.runtime.compile:
            chosen.setdefault(trial.variant_id, trial.cfg)
    return list(chosen.values())


def measure(configs: list[TrainConfig], known: dict[str, str], threads: int) -> dict[str, str]:
    """In this process: take the `known` choices, meet every batch shape of each config's trial (timing the layer
    shapes not known), and return all choices (kwlab.methods.mixing.export_measurements)."""
    import torch

    from kwlab.methods.mixing import export_measurements, load_measurements
    from kwlab.train.recipe import meet_shapes

    torch.set_num_threads(threads)
    load_measurements(known)
    for cfg in configs:
        meet_shapes(cfg)
    return export_measurements()


def sweep_paths(results: store.Store, trials: list[Trial], resources: Resources,
                say: Callable[[str], None]) -> dict[str, str]:
    """The measured choices the sweep's `trials` take: the store's, and those of layer shapes it lacks, timed in a
    Ray task with a trial's CPUs and GPUs, then written back to the store; {} when no trial measures. When the task
    fails, `say` gets one line and the trials take the store's choices and time the rest themselves."""
    configs = measured_configs(trials)
    if not configs:
        return {}
    import ray

    known = results.measured_paths()
    task = ray.remote(num_cpus=resources.cpu, num_gpus=resources.gpu)(measure)
    try:
        choices = ray.get(task.remote(configs, known, max(1, int(resources.cpu))))
    except ray.exceptions.RayError as error:
        cause = str(getattr(error, "cause", None) or error).strip().splitlines()
        say(f"[yellow]measuring the layers' paths failed[/yellow] ({cause[-1] if cause else type(error).__name__}); "
            "each trial times its own")
        return known
    taken = f", {len(known)} taken from {store.MEASURED_PATHS}" if known else ""
    say(f"measured paths: {len(choices) - len(known)} layer shapes timed{taken}")
    results.write_measured_paths(choices)
    return choices
