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
