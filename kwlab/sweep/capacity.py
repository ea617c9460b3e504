"""Whether one trial fits a cluster: what a trial asks for (`resources`) against the CPUs and GPUs of its nodes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kwlab.errors import KWLabError
from kwlab.sweep.spec import Resources


def check_fits(resources: Resources, nodes: Sequence[Mapping[str, float]]) -> None:
    """Refuse, in one line naming every resource that falls short, a trial that these nodes (each a mapping such as
    {"CPU": 8, "GPU": 1}) cannot place at all: its workers together, and each worker on one node."""
    asked = {"CPU": resources.cpu, "GPU": resources.gpu}
    workers = f" x {resources.workers} workers" if resources.workers > 1 else ""  # each worker asks for `need`
    short = []
    for key in ("CPU", "GPU"):
        need = asked[key]
        if need <= 0:
            continue
        have = sum(node.get(key, 0) for node in nodes)
        largest = max((node.get(key, 0) for node in nodes), default=0)
        if need * resources.workers > have + 1e-9 or need > largest + 1e-9:
            short.append(f"{need:g} {key}{'s' if need != 1 else ''}{workers}; the cluster has {have:g}"
                         + (f" (at most {largest:g} on one node)" if have != largest else ""))
    if short:
        raise KWLabError("resources: each trial asks for " + "; it also asks for ".join(short))


# NOTE: a trial process holds torch, its model, optimizer state and data: at least this much beside its parameters
TRIAL_BASE_BYTES = 500 * 2**20
BYTES_PER_PARAMETER = 16  # weights, gradients and SGD momentum in fp32, and the best epoch's copy


def trial_bytes(params: int) -> int:
    """A rough lower estimate of one trial's memory: the process and 16 bytes per parameter."""
    return TRIAL_BASE_BYTES + BYTES_PER_PARAMETER * params


def packing_warnings(resources: Resources, nodes: Sequence[Mapping[str, float]], trials: int,
                     max_concurrent: int | None, params: int) -> list[str]:
    """What these nodes would run at once of `trials` trials asking for `resources` (capped by `max_concurrent`),
    when it is more trials than CPU cores, or more memory (a trial of `params` parameters, `trial_bytes`) than the
    nodes have: one line each, said before launch."""
    lines = []
    for node in nodes:
        cores, memory = node.get("CPU", 0), node.get("memory", 0)
        if resources.cpu <= 0 or cores <= 0:
            continue
        at_once = min(int(cores // (resources.cpu * resources.workers) or 0) or 1, trials, max_concurrent or trials)
        if at_once * resources.workers > cores + 1e-9:
            lines.append(f"resources.cpu = {resources.cpu:g}: a node of {cores:g} CPUs runs {at_once} trials at once; "
                         "each runs at least one thread, so they compete for the cores (give each trial cpu >= 1, "
                         "or cap them with max_concurrent_trials)")
        need = at_once * resources.workers * trial_bytes(params)
        if memory and need > memory:
            lines.append(f"{at_once} trials at once on a node of {memory / 2**30:.1f} GiB memory need at least "
                         f"{need / 2**30:.1f} GiB; Ray's memory monitor will kill some (raise resources.cpu or cap "
                         "them with max_concurrent_trials)")
        if lines:
            break  # one node says it: the others are alike or larger
    return lines
