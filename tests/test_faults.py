"""Faults a flaky cluster or a hostile-but-fair user brings, each met through the CLI as a user meets it, each a probe
of issue 30 that failed before: damaged trackers, folders that vanish mid-sweep, names and values too long for a
file, endless specs, a runner that is gone."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from kwlab import store
from kwlab.cli import main
from kwlab.tracking.optuna_store import storage_url
import cluster_helpers
from cluster_helpers import free_port, pids_of, stop_head, wait_for
from sweep_helpers import ROOT, TINY, kwlab_cli, start_cli, write_spec

STATIC = {"name": "static", "set": {"kw": None}}


def study(folder: Path, name: str) -> optuna.Study:
    """The Optuna study `name` of the store at `folder`."""
    return optuna.load_study(study_name=name, storage=storage_url(folder / store.OPTUNA_DB))


@pytest.mark.usefixtures("shared_ray")
def test_a_damaged_optuna_db_is_set_aside_and_rebuilt_from_the_store(smoke_sweep: tuple, copy_store) -> None:
    """Before: a truncated optuna.db stopped the next sweep before anything ran (sqlite3.DatabaseError, 22 lines,
    exit 1). Now it is set aside in one line and rebuilt from the store, with every trial."""
    root, first = smoke_sweep  # static and KW 1x at seed 0, through `kwlab sweep` (a copy of its store here)
    assert first.returncode == 0, first.stderr
    tmp_path = copy_store(root / "smoke")
    db = tmp_path / "smoke" / store.OPTUNA_DB
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 3])  # a power cut mid-write
    rerun = kwlab_cli("sweep", "sweeps/smoke.yaml", "--results", str(tmp_path), "--set", "seeds=[0,1]")  # a seed more
    assert rerun.returncode == 0, rerun.stderr
    said = [line for line in rerun.stdout.splitlines() if "optuna.db" in line and "damaged" in line]
    assert len(said) == 1 and "set aside as optuna.db.damaged-" in said[0]
    assert len(list(db.parent.glob(f"{store.OPTUNA_DB}.damaged-*"))) == 1 and "Traceback" not in rerun.stderr
    trials = study(tmp_path / "smoke", "smoke").trials
    assert len(trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


@pytest.mark.usefixtures("shared_ray")
def test_a_bayes_sweep_takes_its_suggestions_back_from_the_store(bayes_sweep: tuple, copy_store) -> None:
    """optuna.db overwritten under a bayes sweep: the rebuilt study gets the store's suggestions back, so a rerun
    trains no new suggestion (the seeded search does not start over)."""
    root, spec, first = bayes_sweep  # 2 suggestions x 2 seeds through `kwlab sweep` (a copy of its store here)
    assert first.returncode == 0, first.stderr
    tmp_path = copy_store(root / "search")
    (tmp_path / "search" / store.OPTUNA_DB).write_bytes(b"not a database at all" * 100)
    rerun = kwlab_cli("sweep", str(spec), "--results", str(tmp_path))
    assert rerun.returncode == 0, rerun.stderr
    assert "then 0 Optuna suggestions" in rerun.stdout and "damaged" in rerun.stdout
    suggestions = study(tmp_path / "search", "search").trials
    assert len(suggestions) == 2 and all(t.state == optuna.trial.TrialState.COMPLETE for t in suggestions)
    assert len(store.Store(tmp_path / "search").records()) == 4


@pytest.mark.usefixtures("shared_ray")
def test_a_new_value_of_a_swept_key_gets_a_study_that_holds_every_trial(smoke_sweep: tuple, copy_store,
                                                                         tmp_path: Path) -> None:
    """Before: optuna.db never took the new value's trials ('CategoricalDistribution does not support dynamic value
    space') and every rerun repeated the error. Now the sweep is mirrored into a new study version."""
    root, first = smoke_sweep  # sweeps/smoke.yaml, kw.budget: [1], through `kwlab sweep` (a copy of its store here)
    assert first.returncode == 0, first.stderr
    copy_store(root / "smoke")
    grown = yaml.safe_load((ROOT / "sweeps" / "smoke.yaml").read_text())
    grown["base"] = str(ROOT / "configs" / "default.yaml")  # the spec's own base, from where this copy is
    grown["parameters"]["kw.budget"]["values"] = [1, 2]  # the user adds a value
    spec = tmp_path / "smoke.yaml"
    spec.write_text(yaml.safe_dump(grown, sort_keys=False))
    grew = kwlab_cli("sweep", str(spec), "--results", str(tmp_path))
    assert grew.returncode == 0, grew.stderr
    assert "a new study 'smoke.v2'" in grew.stdout and "dynamic value space" not in grew.stdout + grew.stderr
    assert "1 of 3 fixed trials to run" in grew.stdout  # the two trials of the first sweep are kept
    assert len(study(tmp_path / "smoke", "smoke.v2").trials) == 3
    assert len(study(tmp_path / "smoke", "smoke").trials) == 2
    again = kwlab_cli("sweep", str(spec), "--results", str(tmp_path))
    assert again.returncode == 0 and "new study" not in again.stdout  # the version that fits is found again


@pytest.mark.usefixtures("shared_ray")
def test_folders_removed_mid_sweep_are_missing_trials_not_success(tmp_path: Path) -> None:
    """Before: a finished trial's folder deleted mid-sweep ended '2 of 2 trials finished', exit 0, and a running trial
    whose folder vanished wrote on without sweep.json or config.yaml. Now the planned trials are counted: the removed
    one is missing (exit 1, the rerun trains it), and the running one writes its identity files again."""
    spec = write_spec(tmp_path, "vanish", base={**TINY, "epochs": 3, "data": {"name": "digits", "train_size": 900}},
                      parameters={"kw.budget": {"values": [1, 2, 3]}}, max_concurrent_trials=1)
    runner = start_cli("sweep", str(spec), "--results", str(tmp_path))
    trials = tmp_path / "vanish" / store.TRIALS
    deadline = time.time() + 300
    while time.time() < deadline:
        finished = [p.parent for p in trials.glob(f"*/{store.SUMMARY}")]
        running = [p.parent for p in trials.glob(f"*/{store.METRICS}") if not (p.parent / store.SUMMARY).exists()
                   and p.read_text().strip()]
        if finished and running:
            break
        time.sleep(0.1)
    shutil.rmtree(finished[0])
    shutil.rmtree(running[0])  # mid-training: it writes on
    out, err = runner.communicate(timeout=300)
    assert runner.returncode == 1, out + err
    assert "2 of 3 trials finished, 0 failed, 0 not finished, 1 missing" in out + err
    assert "1 planned trials have no folder in the store" in err
    assert (running[0] / store.SWEEP).is_file() and (running[0] / store.CONFIG).is_file()
    assert store.TrialDir(running[0]).record().status == "finished"
    rerun = kwlab_cli("sweep", str(spec), "--results", str(tmp_path))
    assert rerun.returncode == 0 and "1 of 3 fixed trials to run" in rerun.stdout, rerun.stdout + rerun.stderr


@pytest.mark.usefixtures("shared_ray")
def test_names_and_values_too_long_for_a_file_name(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Before: a case name of 400 characters or a swept value of 3,000 failed every trial of its variant with 'File
    name too long' (its TensorBoard folder), and a 300-character sweep name passed `validate` and failed `sweep`."""
    long_case = {"name": "c" * 400, "set": {"kw": None}}
    spec = write_spec(tmp_path, "long", cases=[long_case],
                      parameters={"kw.static_layers": {"values": [["conv1" + "*" * 2995]]}})
    result = kwlab_cli("sweep", str(spec), "--results", str(tmp_path))
    assert result.returncode == 0, result.stderr
    boards = [p for p in (tmp_path / "long" / store.TRIALS).glob(f"*/{store.TENSORBOARD}/*")]
    assert len(boards) == 2 and all(len(p.name.encode()) <= 200 for p in boards)
    named = write_spec(tmp_path, "named", cases=[STATIC])
    assert main(["validate", str(named), "--set", f"name={'n' * 300}"]) == 2
    assert capsys.readouterr().err.strip().endswith("name: expected at most 100 characters, got 300")


def test_trials_packed_past_the_cores_are_warned_before_launch(tmp_path: Path) -> None:
    """Before: `resources.cpu: 0.001` packed 8 trials on 2 cores with no warning (and Ray's memory monitor then killed
    some). Now the runner says before launch how many trials a node runs at once and why that competes."""
    cores = os.cpu_count()
    if cores is None or cores >= 3:
        pytest.skip(f"the warning needs more trials than cores: this machine has {cores}")
    spec = write_spec(tmp_path, "packed", cases=[STATIC], seeds=[0, 1, 2], resources={"cpu": 0.25})
    result = kwlab_cli("sweep", str(spec), "--results", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"resources.cpu = 0.25: a node of {cores} CPUs runs 3 trials at once" in " ".join(result.stdout.split())


def _sweep_under_address_limit(spec: Path, results: Path, limit: int) -> subprocess.CompletedProcess:
    """`kwlab sweep` in a process whose address space is capped at `limit` bytes (`ulimit -v`)."""
    import resource

    return subprocess.run([sys.executable, "-m", "kwlab.cli", "sweep", str(spec), "--results", str(results)],
                          capture_output=True, text=True, timeout=600,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))


def test_a_sweep_under_an_address_space_limit_runs_or_says_why(tmp_path: Path) -> None:
    """Before: under `ulimit -v 8G` Ray's object store mapping failed and Ray aborted the runner from C++: a 40-line
    stack, exit 1 without a word from kwlab, a stale lock. Now a local Ray's store fits what the limit leaves, and a
    limit too small for it is one line, exit 2, the lock released."""
    spec = write_spec(tmp_path, "limited", cases=[STATIC])
    ran = _sweep_under_address_limit(spec, tmp_path / "results", 8 * 10**9)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "1 of 1 trials finished" in ran.stdout and "mmap failed" not in ran.stdout + ran.stderr
    refused = _sweep_under_address_limit(spec, tmp_path / "small", 5 * 10**9)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith(
        "kwlab sweep: error: the address-space limit (ulimit -v) of 4.7 GiB leaves no room for Ray's object store")
    assert "StackTrace" not in refused.stdout + refused.stderr
    assert not (tmp_path / "small" / "limited" / store.LOCK).exists()


def test_endless_specs_are_refused_before_anything_is_built(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Before: 2 variants x 10^6 seeds grew `validate` to 16 GB (10^5 seeds: a MemoryError traceback), and
    `epochs: 1000000000` was 'ok' and trained in silence. Now the trials are capped as the variants are, counted
    before they are built, and a trial that cannot be shorter than --max-hours is refused, naming its bound."""
    seeds = write_spec(tmp_path, "seeds", cases=[STATIC, {"name": "kw", "set": {}}], seeds=list(range(200_000)))
    started = time.time()
    assert main(["validate", str(seeds)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "2 variants, 400,000 trials" in err and "--max-trials 400000" in err
    assert time.time() - started < 60
    endless = write_spec(tmp_path, "endless", base={**TINY, "epochs": 1_000_000_000}, cases=[STATIC])
    for command in ("validate", "sweep"):
        assert main([command, str(endless), "--results", str(tmp_path)][: 2 if command == "validate" else 4]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "cannot train in less than" in err and "--max-hours" in err
    assert not (tmp_path / "endless").exists()
    assert main(["validate", str(endless), "--max-hours", "1e9"]) == 0  # raised on purpose: it validates


@pytest.mark.usefixtures("shared_ray")
def test_status_calls_a_dead_runner_dead(tmp_path: Path) -> None:
    """Before: after the runner was killed, `kwlab status` presented the dead pid as the live runner ('1 running',
    'time left: about 3.6 min')."""
    spec = write_spec(tmp_path, "killed", base={**TINY, "epochs": 4, "data": {"name": "digits", "train_size": 900}},
                      cases=[STATIC], parameters={"kw.budget": {"values": [1]}}, max_concurrent_trials=1)
    runner = start_cli("sweep", str(spec), "--results", str(tmp_path))
    folder = tmp_path / "killed"
    deadline = time.time() + 300
    while not any(p.read_text().strip() for p in folder.glob(f"{store.TRIALS}/*/{store.METRICS}")):
        assert time.time() < deadline
        time.sleep(0.1)
    os.killpg(runner.pid, signal.SIGKILL)  # the runner and its Ray, as a kill -9 of the job does
    runner.wait()
    status = kwlab_cli("status", str(folder))
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    runner_line = next(line for line in lines if line.startswith("runner:"))
    assert runner_line.startswith(f"runner: none: pid {runner.pid} on ") and "is gone; rerun its command" in \
        runner_line
    assert "time left: unknown (no runner)" in lines
    as_json = json.loads(kwlab_cli("status", str(folder), "--json").stdout)
    assert as_json["runner"]["alive"] is False and as_json["time_left_s"] is None


# -- Ray's own failures: a trial that hangs or eats the node's memory, a dead worker, a cluster head that is gone,
# wrong or unanswered addresses, token authentication

HANG = '''"""A plugin model whose forward hangs from its 16th call on (a plugin that sleeps)."""
import time
from timm.models import register_model
from torch import nn

class Hanging(nn.Module):
    def __init__(self, num_classes=10, in_chans=1, **kwargs):
        super().__init__()
        self.calls, self.fc = 0, nn.Linear(in_chans * 64, num_classes)

    def forward(self, x):
        self.calls += 1
        if self.calls > 15:
            time.sleep(3600)
        return self.fc(x.flatten(1))

@register_model
def hanging_net(pretrained=False, **kwargs):
    return Hanging(**{k: v for k, v in kwargs.items() if k in ("num_classes", "in_chans")})
'''

HOG = '''"""A plugin model whose forward keeps 256 MiB more each call (a model too large for the node)."""
import torch
from timm.models import register_model
from torch import nn

HELD = []

class Hog(nn.Module):
    def __init__(self, num_classes=10, in_chans=1, **kwargs):
        super().__init__()
        self.fc = nn.Linear(in_chans * 64, num_classes)

    def forward(self, x):
        HELD.append(torch.ones(256 * 2**20 // 4))
        return self.fc(x.flatten(1))

@register_model
def memory_hog(pretrained=False, **kwargs):
    return Hog(**{k: v for k, v in kwargs.items() if k in ("num_classes", "in_chans")})
'''

TRIAL_WORKER = "ray::ImplicitFunc.train"  # the title Ray gives the process of a function trainable's trial
PLUGIN_BASE = {"method": "static", "epochs": 3, "data": {"name": "digits", "train_size": 600},
               "optim": {"warmup_epochs": 0}, "runtime": {"threads": 1}}
FINE = {"name": "fine", "set": {"model.name": "cifar_resnet8", "model.kwargs": {"width": 0.5}}}


@pytest.mark.slow  # the trial hangs for its timeout: about a minute
def test_a_hung_trial_is_stalled_in_status_and_fails_at_its_timeout(tmp_path: Path) -> None:
    """Before: a trial that hung (a plugin that sleeps) had no timeout; `kwlab status` said 'time left: about 1 s' for
    as long as it hung, and Ctrl-C was the only way out. Now status calls it stalled, and `timeout.trial` fails it in
    one line while the sweep goes on."""
    (tmp_path / "hang.py").write_text(HANG)
    spec = write_spec(tmp_path, "hang", base={**PLUGIN_BASE, "model": {"name": "hanging_net"}}, imports=["hang.py"],
                      timeout={"trial": 70}, cases=[{"name": "hangs"}, FINE], max_concurrent_trials=1)
    runner = start_cli("sweep", str(spec), "--results", str(tmp_path))
    folder = tmp_path / "hang"
    wait_for(lambda: (folder / store.TRIALS).is_dir() and any(r.meta.get("variant") == "hangs" and r.epochs
                                                               for r in store.Store(folder).records()), 120, "its first epoch")
    time.sleep(25)  # it hangs in its second epoch: stalled once nothing is written for 20 s
    status = kwlab_cli("status", str(folder))
    assert "stalled: nothing written for" in status.stdout, status.stdout + status.stderr
    out, err = runner.communicate(timeout=300)
    assert runner.returncode == 1, out + err
    failed = [line for line in out.splitlines() if line.split(" ", 1)[-1].startswith("failed")]
    assert len(failed) == 1 and "timeout: ran past timeout.trial = 70 s" in failed[0]
    assert "1 of 2 trials finished, 1 failed" in out + err and "Traceback" not in out + err
    hung = next(r for r in store.Store(folder).records() if r.meta["variant"] == "hangs")
    assert hung.status == "failed" and hung.error.startswith("timeout: ran past timeout.trial = 70 s")


def test_a_trial_the_memory_monitor_kills_takes_only_itself(tmp_path: Path) -> None:
    """Before: Ray's memory monitor killing a trial raised 'Caught unexpected exception' out of Tune: the sweep died
    (149 lines, no counts, no tables), the trial stayed 'running' without error.json, and the rerun died again on it.
    Now that trial fails with the cause in one line and the sweep goes on."""
    (tmp_path / "hog.py").write_text(HOG)
    spec = write_spec(tmp_path, "oom", base={**PLUGIN_BASE, "model": {"name": "memory_hog"}}, imports=["hog.py"],
                      failure={"max_retries": 0}, cases=[{"name": "hog"}, FINE], max_concurrent_trials=1)
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    used = 1 - int(info["MemAvailable"].split()[0]) / int(info["MemTotal"].split()[0])  # as Ray counts it
    threshold = f"{min(0.95, used + 0.08):.3f}"  # the hog passes it after about 2 GB on a 24 GB machine
    result = kwlab_cli("sweep", str(spec), "--results", str(tmp_path),
                       env={"RAY_memory_usage_threshold": threshold, "RAY_memory_monitor_refresh_ms": "100"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 of 2 trials finished, 1 failed" in result.stdout + result.stderr
    assert "Caught unexpected exception" not in result.stdout + result.stderr
    hog = next(r for r in store.Store(tmp_path / "oom").records() if r.meta["variant"] == "hog")
    assert hog.status == "failed" and hog.error.startswith("killed by Ray's memory monitor: node memory at ")
    assert (tmp_path / "oom" / store.TRIALS_TABLE).is_file() and not (tmp_path / "oom" / store.LOCK).exists()


def test_a_killed_worker_names_its_cause(tmp_path: Path) -> None:
    """Before: a worker killed with `failure.max_retries: 0` left error.json saying 'no error recorded'."""
    (tmp_path / "hang.py").write_text(HANG)
    spec = write_spec(tmp_path, "killed", base={**PLUGIN_BASE, "model": {"name": "hanging_net"}},
                      imports=["hang.py"], failure={"max_retries": 0}, cases=[{"name": "hangs"}])
    runner = start_cli("sweep", str(spec), "--results", str(tmp_path))
    try:
        # the worker of this sweep's own local Ray (under its runner), not a trial of another sweep on the machine
        wait_for(lambda: bool(pids_of(TRIAL_WORKER, "", under=runner.pid)), 120, "the trial's worker")
        time.sleep(3)  # it hangs: killed mid-trial
        for pid in pids_of(TRIAL_WORKER, "", under=runner.pid):
            os.kill(pid, signal.SIGKILL)  # the trial's worker, killed from outside (an OOM killer, an admin)
        out, err = runner.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(runner.pid, signal.SIGKILL)
    assert runner.returncode == 1, out + err
    record = store.Store(tmp_path / "killed").records()[0]
    assert record.status == "failed" and record.error.startswith("its worker process died")
    assert "no error recorded" not in out + err and "Traceback" not in out + err


def test_addresses_that_are_malformed_or_unanswered_are_one_line(tmp_path: Path) -> None:
    """Before: `--address garbage::addr` was a ValueError traceback (exit 1); `--address 127.0.0.1:1` printed Ray's
    GCS retry warnings for 835 s (33 lines) before kwlab's line, holding runner.lock all the while."""
    spec = write_spec(tmp_path, "nowhere", cases=[STATIC])
    bad = kwlab_cli("sweep", str(spec), "--results", str(tmp_path), "--address", "garbage::addr")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "expected HOST:PORT" in bad.stderr
    started = time.time()
    dead = kwlab_cli("sweep", str(spec), "--results", str(tmp_path), "--address", f"127.0.0.1:{free_port()}")
    assert time.time() - started < 60 and dead.returncode == 2, dead.stderr
    assert dead.stderr.strip().count("\n") == 0 and "no Ray cluster answers there" in dead.stderr
    assert not (tmp_path / "nowhere" / store.LOCK).exists()


def start_head(home: Path, port: int) -> subprocess.Popen:
    """`ray start --head --block` as a user runs it (HOME set apart, so its token is this test's), in its own
    process group; stopped with `stop_head`."""
    env = {**os.environ, "HOME": str(home)}
    env.pop("RAY_AUTH_MODE", None)
    return cluster_helpers.start_head(port, env=env)


@pytest.mark.slow  # a head of its own: about a minute
def test_a_head_with_token_authentication_as_a_user_starts_it(tmp_path: Path) -> None:
    """Before: on a machine where a token existed (a local sweep made one), plain `ray start --head` turned token
    authentication on and kwlab, sending no token to an explicit address, said 'cannot reach a Ray cluster there'.
    Now kwlab sends the token; without one it says so in one line."""
    home = tmp_path / "home"
    home.mkdir()
    ray = shutil.which("ray", path=str(Path(sys.executable).parent))
    subprocess.run([ray, "get-auth-token", "--generate"], env={**os.environ, "HOME": str(home)}, check=True,
                   capture_output=True)
    port = free_port()
    head = start_head(home, port)
    try:
        spec = write_spec(tmp_path, "auth", cases=[STATIC])
        env = {"HOME": str(home), "RAY_AUTH_MODE": ""}
        ok = kwlab_cli("sweep", str(spec), "--results", str(tmp_path), "--address", f"127.0.0.1:{port}",
                       env={k: v for k, v in env.items() if v})
        assert ok.returncode == 0, ok.stdout + ok.stderr
        stranger = tmp_path / "stranger"
        stranger.mkdir()
        refused = kwlab_cli("sweep", str(spec), "--results", str(tmp_path / "other"), "--address",
                            f"127.0.0.1:{port}", env={"HOME": str(stranger)})
        assert refused.returncode == 2 and refused.stderr.strip().count("\n") == 0, refused.stderr
        assert "wants an authentication token and kwlab found none" in refused.stderr
    finally:
        stop_head(head)


@pytest.mark.slow  # a head of its own, lost mid-sweep
def test_a_lost_head_ends_the_sweep_with_counts_tables_and_the_resume_command(tmp_path: Path) -> None:
    """Before: with the cluster's GCS killed mid-sweep the driver ended after 60 s with no counts and no resume
    command, leaving a stale lock and no tables."""
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    head = start_head(home, port)
    try:
        spec = write_spec(tmp_path, "headless", base={**TINY, "epochs": 4, "data": {"name": "digits",
                                                                                   "train_size": 900}},
                          parameters={"kw.budget": {"values": [1, 2, 3]}}, max_concurrent_trials=1)
        runner = start_cli("sweep", str(spec), "--results", str(tmp_path), "--address", f"127.0.0.1:{port}")
        folder = tmp_path / "headless"
        wait_for(lambda: any(folder.glob(f"{store.TRIALS}/*/{store.SUMMARY}")), 300, "a finished trial")
        for pid in pids_of("gcs_server", f"--gcs_server_port={port}"):
            os.kill(pid, signal.SIGKILL)
        lost = time.time()
        out, err = runner.communicate(timeout=120)
        assert time.time() - lost < 45 and runner.returncode == 1, out + err
        assert "lost the cluster" in out and "stopped: the cluster's head stopped answering" in err
        assert "resume with: kwlab sweep" in err and "1 of 3 trials finished" in out + err
        assert (folder / store.TRIALS_TABLE).is_file() and not (folder / store.LOCK).exists()
    finally:
        stop_head(head)
