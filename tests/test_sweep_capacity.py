"""Whether one trial fits the cluster, decided before anything trains: the capacity check is a pure function of
the nodes' resources (kwlab/sweep/capacity.py), tested here without Ray, and `kwlab sweep` passes it the live
cluster's nodes: through the CLI on the session's Ray head here, in tests/test_sweep_workers.py (workers) and in
tests/test_sweep_features.py (a GPU)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kwlab import store
from kwlab.cli import main
from kwlab.errors import KWLabError
from kwlab.sweep.capacity import check_fits, packing_warnings
from kwlab.sweep.spec import Resources
from sweep_helpers import write_spec


def refusal(resources: Resources, nodes: list[dict[str, float]]) -> str:
    """The one line `check_fits` refuses these resources with."""
    with pytest.raises(KWLabError) as refused:
        check_fits(resources, nodes)
    assert str(refused.value).count("\n") == 0
    return str(refused.value)


def test_each_worker_of_a_trial_is_counted() -> None:
    assert refusal(Resources(cpu=1, workers=64), [{"CPU": 2.0, "GPU": 0.0}]) == (
        "resources: each trial asks for 1 CPU x 64 workers; the cluster has 2")
    check_fits(Resources(cpu=1, workers=2), [{"CPU": 2.0}])  # two workers of one CPU fit two cores


def test_every_short_resource_is_named_in_one_line() -> None:
    assert refusal(Resources(cpu=16, gpu=1), [{"CPU": 4.0}]) == (
        "resources: each trial asks for 16 CPUs; the cluster has 4; it also asks for 1 GPU; the cluster has 0")
    assert refusal(Resources(cpu=1, gpu=1, workers=2), [{"CPU": 8.0, "GPU": 1.0}]) == (
        "resources: each trial asks for 1 GPU x 2 workers; the cluster has 1")


def test_each_worker_must_fit_on_one_node() -> None:
    nodes = [{"CPU": 2.0, "GPU": 1.0}, {"CPU": 2.0, "GPU": 1.0}]
    assert refusal(Resources(cpu=3), nodes) == "resources: each trial asks for 3 CPUs; the cluster has 4 (at most 2 on " \
                                               "one node)"
    check_fits(Resources(cpu=2, gpu=1, workers=2), nodes)  # a worker on each node
    check_fits(Resources(cpu=1, gpu=0.5), [{"CPU": 2.0, "GPU": 1.0}])  # a fraction of a GPU


def test_packing_more_trials_than_cores_or_memory_is_said_before_launch() -> None:
    node = {"CPU": 2.0, "memory": 4 * 2**30}
    assert packing_warnings(Resources(cpu=1), [node], trials=8, max_concurrent=None, params=10_000) == []
    halves = packing_warnings(Resources(cpu=0.5), [node], trials=8, max_concurrent=None, params=10_000)
    assert len(halves) == 1 and halves[0].startswith("resources.cpu = 0.5: a node of 2 CPUs runs 4 trials at once")
    assert packing_warnings(Resources(cpu=0.5), [node], trials=8, max_concurrent=2, params=10_000) == []
    big = packing_warnings(Resources(cpu=1), [node], trials=8, max_concurrent=None, params=200_000_000)
    assert len(big) == 1 and big[0].startswith("2 trials at once on a node of 4.0 GiB memory need at least ")


@pytest.mark.usefixtures("shared_ray")
def test_a_capacity_refusal_names_every_short_resource(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Before: the cifar100 profile on a CPU machine said only that the CPUs fall short, not the missing GPU (moved
    here from tests/test_status.py; it ran a local Ray instance of its own there)."""
    spec = write_spec(tmp_path, "big", cases=[{"name": "static", "set": {"kw": None}}])
    cpus = 4 * (os.cpu_count() or 1)
    code = main(["sweep", str(spec), "--results", str(tmp_path), "--set", f"resources.cpu={cpus}",
                 "--set", "resources.gpu=1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"kwlab sweep: error: resources: each trial asks for {cpus} CPUs; the cluster has ")
    assert err.rstrip().endswith("; it also asks for 1 GPU; the cluster has 0")
    assert not list((tmp_path / "big").glob(f"{store.TRIALS}/*/{store.METRICS}"))
