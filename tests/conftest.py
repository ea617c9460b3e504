"""Shared fixtures: the session kept apart from the user's own sweeps, one Ray head that the sweeps of the session
share, deterministic seeding and the plain-loop tiling of a kernel into KernelWarehouse mixtures."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import torch

# what kwlab and Ray share on this machine through the environment: the temp folder (kwlab's register of local
# sweeps, LOCAL_SWEEPS, and Ray's sessions and ray_current_cluster), and a cluster address
APART = ("TMPDIR", "RAY_TMPDIR", "RAY_ADDRESS")


@pytest.fixture(autouse=True, scope="session")
def _apart_from_the_users_sweeps() -> Iterator[Path]:
    """The session, and every process it starts, on a temp folder of its own, with no $RAY_ADDRESS of the user's:
    a sweep the user runs on this machine meanwhile is not seen by the tests' sweeps, nor they by it. Before: with
    a user's sweep running, `kwlab sweep` in the tests said 'another kwlab sweep runs on this machine' first, and
    tests/test_sweep_workers.py's capacity check failed on it."""
    tempfile.gettempdir()  # this process's own temp folder (pytest's tmp_path) stays where it is
    folder = Path(tempfile.mkdtemp(prefix="kwlab-tests-"))  # short: Ray's socket paths under it stay < 108 bytes
    saved = {key: os.environ.get(key) for key in APART}
    os.environ["TMPDIR"] = os.environ["RAY_TMPDIR"] = str(folder)
    os.environ.pop("RAY_ADDRESS", None)
    from kwlab.sweep import runner

    sweeps, runner.LOCAL_SWEEPS = runner.LOCAL_SWEEPS, folder / "kwlab-local-sweeps"  # fixed when it was imported
    try:
        yield folder
    finally:
        runner.LOCAL_SWEEPS = sweeps
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def ray_head(_apart_from_the_users_sweeps: Path) -> Iterator[str]:
    """One Ray head for the session (`ray start --head --block` in a process group of its own, on loopback, with as
    many CPUs as a local instance takes); its address. Stopped by its process group at the end (never `ray stop`,
    which stops every Ray on the machine)."""
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    port = _free_port()
    log = _apart_from_the_users_sweeps / "ray-head.log"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}  # a loopback-only test cluster needs no token
    with log.open("w") as out:
        head = subprocess.Popen([ray, "start", "--head", f"--port={port}", f"--num-cpus={max(2, os.cpu_count() or 1)}",
                                 "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--block"], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 180
        while "Ray runtime started" not in log.read_text():
            if head.poll() is not None or time.time() > deadline:
                pytest.fail(f"the session's Ray head did not start: {log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):  # what is left of the group (Ray takes 30 s to stop in order)
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()


@pytest.fixture
def shared_ray(ray_head: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The session's Ray head as $RAY_ADDRESS, for this test and the kwlab processes it starts: `kwlab sweep` runs
    on it as on a user's cluster (`--address` defaults to $RAY_ADDRESS). A test that asserts what a local Ray
    instance of its own does (the 'another kwlab sweep' notice, Ray's memory monitor, a head it starts or loses)
    does not take this fixture."""
    monkeypatch.setenv("RAY_ADDRESS", ray_head)
    return ray_head


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    """One intra-op thread: the tests' tensors are tiny, and on a busy 2-core machine OpenMP's spinning threads made
    the suite 5x slower (measured 200 s vs 37 s for tests/test_convert.py under a load of 4)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _keep_threads() -> Iterator[None]:
    """A trial sets the process's torch thread count (runtime.threads): every test gives the next one its own back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same global RNG state (model construction draws from it)."""
    torch.manual_seed(0)


@pytest.fixture
def generator() -> torch.Generator:
    """A seeded CPU generator for test data."""
    return torch.Generator().manual_seed(1234)


def _mixture_tiles(weight_shape: Sequence[int], cell: Sequence[int]) -> list[tuple[slice, ...]]:
    """Index of each cell tile of a kernel, in mixture order (spatial blocks, output block, input block).

    Written from the method text, independently of kwlab.methods.kw.assembly: a cell (c_out, c_in, [ck...]) with fewer dims
    than the kernel is 1 along the missing spatial dims.
    """
    spatial_cell = tuple(cell[2:]) if len(cell) == len(weight_shape) else (1,) * (len(weight_shape) - 2)
    cell = (cell[0], cell[1], *spatial_cell)
    blocks = [range(w // c) for w, c in zip(weight_shape, cell, strict=True)]
    tiles = []
    for *spatial, out_block, in_block in itertools.product(*blocks[2:], blocks[0], blocks[1]):
        starts = (out_block, in_block, *spatial)
        tiles.append(tuple(slice(s * c, (s + 1) * c) for s, c in zip(starts, cell, strict=True)))
    return tiles


@pytest.fixture
def mixture_tiles() -> Callable[[Sequence[int], Sequence[int]], list[tuple[slice, ...]]]:
    """`mixture_tiles(weight_shape, cell)`: the kernel index of mixture i is `mixture_tiles(...)[i]`."""
    return _mixture_tiles


# -- sweeps through the CLI that several tests read: run once for the session on its Ray head; a test that changes
# a store works on a copy of it (`copy_store`)

@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory: pytest.TempPathFactory, ray_head: str) -> tuple[Path, subprocess.CompletedProcess]:
    """`kwlab sweep sweeps/smoke.yaml --max-concurrent 1` (static and KW 1x, one seed): its results root (the store
    is ROOT/smoke) and the finished process."""
    from sweep_helpers import kwlab_cli

    root = tmp_path_factory.mktemp("smoke")
    return root, kwlab_cli("sweep", "sweeps/smoke.yaml", "--results", str(root), "--max-concurrent", "1",
                           env={"RAY_ADDRESS": ray_head})


# a seeded Optuna search: 2 suggestions (a log-uniform lr and a budget), each trained at seeds 0 and 1
BAYES = {"method": "bayes", "num_samples": 2, "sampler_seed": 3, "seeds": [0, 1],
         "parameters": {"optim.lr": {"distribution": "log_uniform_values", "min": 0.01, "max": 0.2},
                        "kw.budget": {"values": [1, 2]}}}


@pytest.fixture(scope="session")
def bayes_sweep(tmp_path_factory: pytest.TempPathFactory,
                ray_head: str) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """`kwlab sweep` of the BAYES spec, named 'search': its results root (the store is ROOT/search), the spec file
    and the finished process."""
    from sweep_helpers import kwlab_cli, write_spec

    root = tmp_path_factory.mktemp("bayes")
    spec = write_spec(root, "search", **BAYES)
    return root, spec, kwlab_cli("sweep", str(spec), "--results", str(root), env={"RAY_ADDRESS": ray_head})


@pytest.fixture
def copy_store(tmp_path: Path) -> Callable[[Path], Path]:
    """`copy_store(store)`: a copy of a session sweep's store under this test's tmp_path (same folder name), for a
    test that damages or extends it; returns the copy's results root."""
    def copy(store: Path) -> Path:
        shutil.copytree(store, tmp_path / store.name)
        return tmp_path
    return copy
