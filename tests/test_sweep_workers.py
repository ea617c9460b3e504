"""Trials that span several workers: `resources.workers: N` runs each trial as a Ray Train TorchTrainer inside Tune
(DDP over gloo here), with the records, resume and capacity rules of a one-worker trial."""

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
from sweep_helpers import ROOT, TINY, kwlab_cli, write_spec

TWO_WORKERS = {"workers": 2, "cpu": 1}  # a 2-core machine holds one such trial


@pytest.mark.usefixtures("shared_ray")
def test_a_two_worker_trial_runs_through_ray_train(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "ddp", base={**TINY, "epochs": 2, "batch_size": 32},
                      cases=[{"name": "kw", "set": {}}], resources=TWO_WORKERS)
    result = kwlab_cli("sweep", str(spec), "--results", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("started ") == 1 and result.stdout.count("finished ") == 1  # one trial, not two
    trials = kwlab.results.load(tmp_path / "ddp").trials
    assert trials["status"].tolist() == ["finished"]
    trial = store.Store(tmp_path / "ddp").trial(trials["trial_id"].item())
    summary = trial.summary()
    assert summary["workers"] == 2 and summary["device"].endswith("x 2 workers")
    assert [m["epoch"] for m in trial.metrics()] == [1, 2]
    assert summary["test_images"] == 360 and summary["val_images"] == 288  # every sample scored once
    assert trial.file(store.ATTENTION).is_file() and trial.file(store.BEST).is_file()
    assert not trial.file(store.CHECKPOINT).exists()  # a finished trial keeps best.pt, not its resume state


@pytest.mark.usefixtures("shared_ray")
def test_workers_are_counted_in_the_capacity_check(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = write_spec(tmp_path, "wide", cases=[{"name": "static", "set": {"kw": None}}],
                      resources={"workers": 64, "cpu": 1}, base={**TINY, "batch_size": 64})
    assert main(["sweep", str(spec), "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kwlab sweep: error: resources: each trial asks for 1 CPU x 64 workers; the cluster has ")


def test_a_global_batch_that_does_not_divide_among_workers_is_refused(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    spec = write_spec(tmp_path, "odd", cases=[{"name": "static", "set": {"kw": None}}], resources={"workers": 3})
    assert main(["sweep", str(spec), "--results", str(tmp_path)]) == 2
    assert "batch_size: 64 does not divide among resources.workers = 3" in capsys.readouterr().err


@pytest.mark.slow
def test_killing_the_driver_of_a_two_worker_sweep_resumes_without_repeating_an_epoch(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "ddp_kill", base={**TINY, "epochs": 4, "batch_size": 32,
                                                  "data": {"name": "digits", "train_size": 600}},
                      cases=[{"name": "kw", "set": {}}], resources=TWO_WORKERS)
    runner = subprocess.Popen([sys.executable, "-m", "kwlab.cli", "sweep", str(spec), "--results", str(tmp_path)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trials = tmp_path / "ddp_kill" / store.TRIALS
    deadline = time.time() + 300
    while time.time() < deadline and not any(len(store.TrialDir(d).metrics()) >= 1 for d in trials.glob("*/")):
        time.sleep(0.2)
    os.kill(runner.pid, signal.SIGKILL)  # kill -9 the driver mid-trial
    runner.wait()
    done_before = max(len(store.TrialDir(d).metrics()) for d in trials.glob("*/"))
    assert 1 <= done_before < 4
    resumed = kwlab_cli("sweep", str(spec), "--results", str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr
    assert "took over a stale lock" in resumed.stderr
    trial = next(store.TrialDir(d) for d in trials.glob("*/"))
    assert trial.status() == "finished" and [m["epoch"] for m in trial.metrics()] == [1, 2, 3, 4]


@pytest.mark.slow
def test_a_failing_two_worker_trial_is_retried_and_recorded_like_a_one_worker_trial(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "ddp_fail", base={**TINY, "batch_size": 32},
                      cases=[{"name": "diverges", "set": {"optim.lr": 1.0e30}}], resources=TWO_WORKERS,
                      failure={"max_retries": 1})
    result = kwlab_cli("sweep", str(spec), "--results", str(tmp_path))
    assert result.returncode == 1 and "0 of 1 trials finished, 1 failed" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr and result.stdout.count("retrying") == 1
    trials = kwlab.results.load(tmp_path / "ddp_fail").trials
    assert trials["status"].tolist() == ["failed"]
    error = trials["error"].item()
    assert "non-finite loss" in error and "\n" not in error  # one line; the traceback is in log.txt
    log = kwlab.results.load(tmp_path / "ddp_fail").trial_dir(trials["trial_id"].item()).file(store.LOG)
    assert "non-finite loss" in log.read_text()
