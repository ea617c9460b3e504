"""The sweep runner end to end through Ray Tune: smoke sweep, resume after kill -9, failures, bad specs, dry run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import kwlab.results
from kwlab import store
from kwlab.cli import main
from kwlab.errors import KWLabError
from cluster_helpers import free_port, start_head, stop_head
from sweep_helpers import FASHION_MISSING, ROOT, kwlab_cli, write_spec


@pytest.mark.usefixtures("shared_ray")
def test_smoke_sweep_runs_through_ray_and_resumes_as_a_no_op(smoke_sweep: tuple) -> None:
    tmp_path, first = smoke_sweep  # `kwlab sweep sweeps/smoke.yaml --max-concurrent 1`, once for the session
    assert first.returncode == 0, first.stderr
    events = [line.split()[1] for line in first.stdout.splitlines() if line.split()[1:2] in (["started"], ["finished"])]
    assert events == ["started", "finished", "started", "finished"]  # --max-concurrent 1: one trial at a time
    started = [line for line in first.stdout.splitlines() if line.split()[1:2] == ["started"]]
    assert "budget=1" in started[0] and "static" in started[1]  # costliest (most MACs x epochs) first
    results = kwlab.results.load(tmp_path / "smoke")
    trials = results.trials
    assert sorted(trials["variant"]) == ["budget=1", "static"]
    assert (trials["status"] == "finished").all()
    assert trials["is_baseline"].sum() == 1 and trials.loc[trials.is_baseline, "variant"].item() == "static"
    assert len(results.epochs) == 2 and {"val_top1", "tau", "images_per_s"} <= set(results.epochs.columns)
    assert results.manifest["versions"]["ray"] and "commit" in results.manifest["git"]
    assert store.Store(tmp_path / "smoke").spec()["name"] == "smoke"
    kw_trial = trials.loc[~trials.is_baseline, "trial_id"].item()
    assert results.trial_dir(kw_trial).file(store.ATTENTION).exists()
    assert (trials["test_images"] == 360).all() and trials["test_top1"].between(0, 100).all()
    # one line per trial event, Ray's own status tables off
    assert first.stdout.count("started") == 2 and first.stdout.count("finished") >= 2
    assert "Trial status" not in first.stdout + first.stderr and "Current time" not in first.stdout
    again = kwlab_cli("sweep", "sweeps/smoke.yaml", "--results", str(tmp_path))
    assert again.returncode == 0 and "0 of 2 fixed trials to run" in again.stdout and "started" not in again.stdout


# slow: the default suite resumes in the smoke, Ctrl-C and torn-file tests; this one adds kill -9 of the runner
@pytest.mark.slow
def test_resume_after_the_runner_is_killed(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "killed", parameters={"kw.budget": {"values": [1, 2]}},
                      cases=[{"name": "static", "set": {"kw": None}}], baseline="static", max_concurrent_trials=1,
                      profiles={"default": {"epochs": 3, "data.train_size": 900}})  # a second or so a trial
    runner = subprocess.Popen([sys.executable, "-m", "kwlab.cli", "sweep", str(spec), "--results", str(tmp_path)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trials = tmp_path / "killed" / store.TRIALS
    deadline = time.time() + 300
    while not list(trials.glob(f"*/{store.SUMMARY}")) and runner.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(runner.pid, signal.SIGKILL)  # kill -9 the runner itself mid-sweep
    runner.wait()
    done_before = {p.parent.name: p.stat().st_mtime_ns for p in trials.glob(f"*/{store.SUMMARY}")}
    assert 1 <= len(done_before) < 3
    resumed = kwlab_cli("sweep", str(spec), "--results", str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr
    assert f"took over a stale lock of pid {runner.pid}" in resumed.stderr  # its process is gone from this host
    results = kwlab.results.load(tmp_path / "killed")
    assert len(results.trials) == 3 and (results.trials["status"] == "finished").all()
    for trial_id, mtime in done_before.items():  # finished trials were skipped, not run again
        assert (trials / trial_id / store.SUMMARY).stat().st_mtime_ns == mtime
        assert trial_id not in resumed.stdout
    assert results.epochs.groupby("trial_id").size().eq(3).all()  # every epoch recorded exactly once


@pytest.mark.usefixtures("shared_ray")
def test_a_failing_trial_is_retried_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "failing", cases=[{"name": "ok", "set": {"kw": None}},
                                                  {"name": "diverges", "set": {"optim.lr": 1.0e30}}],
                      failure={"max_retries": 1})
    result = kwlab_cli("sweep", str(spec), "--results", str(tmp_path))
    assert result.returncode == 1
    assert "1 of 2 trials finished, 1 failed" in result.stderr and "Traceback" not in result.stderr
    assert "retrying" in result.stdout and "failed" in result.stdout
    trials = kwlab.results.load(tmp_path / "failing").trials.set_index("variant")
    assert trials.loc["ok", "status"] == "finished"
    assert trials.loc["diverges", "status"] == "failed" and "non-finite loss" in trials.loc["diverges", "error"]
    assert "\n" not in trials.loc["diverges", "error"]  # one line in the table; the traceback is in log.txt
    assert result.stdout.count("retrying") == 1  # failure.max_retries
    log = (kwlab.results.load(tmp_path / "failing").trial_dir(trials.loc["diverges", "trial_id"]).file(store.LOG))
    assert log.read_text().count("Traceback") == 2 and "non-finite loss" in log.read_text()  # both attempts


def test_bad_spec_is_rejected_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = write_spec(tmp_path, "bad", parameters={"kw.cell_in_ratio": {"values": [0.3]}})
    assert main(["sweep", str(spec), "--results", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and str(spec) in error and "cell_in_ratio" in error and "divide" in error
    assert not (tmp_path / "bad").exists()
    empty = write_spec(tmp_path, "empty", parameters={"kw.budget": {"values": [1, 2]}}, constraints=["params < 10"])
    assert main(["sweep", str(empty)]) == 2
    assert "no variant is left" in capsys.readouterr().err


def test_dry_run_prices_every_trial_without_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["sweep", "sweeps/budget.yaml", "--dry-run", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "6 variants x 3 seeds = 18 trials" in out and "budget=1/4" in out
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("spec", [pytest.param(str(p.relative_to(ROOT / "sweeps")),
                                               marks=FASHION_MISSING if "fashion" in p.parts else ())
                                  for p in sorted((ROOT / "sweeps").rglob("*.yaml"))])
def test_every_shipped_spec_validates_with_every_variant_buildable(spec: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["validate", f"sweeps/{spec}"]) == 0
    assert ": ok:" in capsys.readouterr().out


# One epoch on 300 digits at one seed: every shipped top-level spec as it is, only shorter (its smoke mode).
SHORT = ["--set", "seeds=[0]", "--set", "epochs=1", "--set", "optim.warmup_epochs=0", "--set", "data.train_size=300"]


@pytest.mark.slow
@pytest.mark.parametrize("spec", sorted(p.name for p in (ROOT / "sweeps").glob("*.yaml")))
def test_every_shipped_spec_runs_short_through_ray_and_reports(spec: str, tmp_path: Path) -> None:
    result = kwlab_cli("sweep", f"sweeps/{spec}", *SHORT, "--results", str(tmp_path))
    assert result.returncode == 0, result.stderr
    folder = next(tmp_path.iterdir())
    trials = kwlab.results.load(folder).trials
    assert len(trials) >= 2 and (trials["status"] == "finished").all() and set(trials["seed"]) == {0}
    report = kwlab_cli("report", str(folder))
    assert report.returncode == 0, report.stderr
    assert (folder / "report" / "report.md").is_file() and (folder / "report" / "params_accuracy.png").is_file()


@pytest.mark.slow
def test_cluster_address_path(tmp_path: Path) -> None:
    """Start a local Ray head (`ray start --head`) and run the smoke sweep against it with --address."""
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}  # a loopback-only test cluster needs no token
    head = start_head(port, "--node-ip-address=127.0.0.1", env=env)
    try:
        result = kwlab_cli("sweep", "sweeps/smoke.yaml", "--results", str(tmp_path), "--address",
                           f"127.0.0.1:{port}", env=env)
        assert result.returncode == 0, result.stderr
        assert (kwlab.results.load(tmp_path / "smoke").trials["status"] == "finished").all()
    finally:
        stop_head(head)


def test_results_load_refuses_a_folder_that_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(KWLabError, match="not a kwlab results store"):
        kwlab.results.load(tmp_path)
    trial = store.Store(tmp_path).trial("t1")
    trial.path.mkdir(parents=True)
    trial.write_sweep_meta({"trial_id": "t1", "variant_id": "v", "variant": "a", "is_baseline": False, "seed": 0,
                            "parameters": {}})
    assert kwlab.results.load(tmp_path).trials["status"].tolist() == ["pending"]


def test_a_trial_config_is_validated_once_and_crosses_to_the_trial_typed(tmp_path: Path, monkeypatch) -> None:
    """`kwlab sweep` validates each trial's config when it expands the spec; the trial function receives that typed
    config (pickled by Ray as it is) and trains it without building or validating it again."""
    import pickle

    from kwlab.sweep.command import plan_sweep
    from kwlab.sweep.runner import Job, _train_seeds, describe_trial, prepare
    from kwlab.train.config import TrainConfig

    plan = plan_sweep(str(ROOT / "sweeps" / "smoke.yaml"), None, [])
    trial = next(t for t in plan.trials if t.variant.name == "static")
    prepare(store.Store(tmp_path), [trial], {})
    seed = pickle.loads(pickle.dumps(describe_trial(trial, store.Store(tmp_path))))  # what a Ray worker unpickles
    assert isinstance(seed.config, TrainConfig) and seed.config == trial.cfg
    monkeypatch.setattr(TrainConfig, "__init__", lambda *a, **k: pytest.fail("a trial config was validated again"))
    reports: list[dict] = []
    _train_seeds([seed], Job((), "val_top1", "maximize", 1), reports.append)
    assert reports[-1]["final"] and reports[-1]["seeds"] == 1 and 0 <= reports[-1]["score"] <= 100
    assert store.TrialDir(seed.dir).summary()["status"] == "finished"
