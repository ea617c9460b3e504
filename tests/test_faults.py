"""Faults a flaky cluster or a hostile-but-fair user brings, each met through the CLI as a user meets it, each a probe
of issue 30 that failed before: damaged trackers, folders that vanish mid-sweep, names and values too long for a
file, endless specs, a runner that is gone."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import optuna
import pytest
import yaml

from kwlab import store
from kwlab.cli import main
from kwlab.tracking.optuna_store import storage_url
from sweep_helpers import TINY, kwlab_cli, start_cli, write_spec

STATIC = {"name": "static", "set": {"kw": None}}


def study(folder: Path, name: str) -> optuna.Study:
    """The Optuna study `name` of the store at `folder`."""
    return optuna.load_study(study_name=name, storage=storage_url(folder / store.OPTUNA_DB))


def test_a_damaged_optuna_db_is_set_aside_and_rebuilt_from_the_store(tmp_path: Path) -> None:
    """Before: a truncated optuna.db stopped the next sweep before anything ran (sqlite3.DatabaseError, 22 lines,
    exit 1). Now it is set aside in one line and rebuilt from the store, with every trial."""
    spec = write_spec(tmp_path, "damaged", cases=[STATIC], parameters={"kw.budget": {"values": [1]}})
    assert kwlab_cli("sweep", str(spec), "--results", str(tmp_path)).returncode == 0
    db = tmp_path / "damaged" / store.OPTUNA_DB
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 3])  # a power cut mid-write
    rerun = kwlab_cli("sweep", str(spec), "--results", str(tmp_path), "--set", "seeds=[0,1]")  # and a new seed
    assert rerun.returncode == 0, rerun.stderr
    said = [line for line in rerun.stdout.splitlines() if "optuna.db" in line and "damaged" in line]
    assert len(said) == 1 and "set aside as optuna.db.damaged-" in said[0]
    assert len(list(db.parent.glob(f"{store.OPTUNA_DB}.damaged-*"))) == 1 and "Traceback" not in rerun.stderr
    trials = study(tmp_path / "damaged", "damaged").trials
    assert len(trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def test_a_bayes_sweep_takes_its_suggestions_back_from_the_store(tmp_path: Path) -> None:
    """optuna.db overwritten under a bayes sweep: the rebuilt study gets the store's suggestions back, so a rerun
    trains no new suggestion (the seeded search does not start over)."""
    spec = write_spec(tmp_path, "search", method="bayes", num_samples=2, sampler_seed=1,
                      parameters={"optim.lr": {"distribution": "log_uniform_values", "min": 0.01, "max": 0.2}})
    assert kwlab_cli("sweep", str(spec), "--results", str(tmp_path)).returncode == 0
    (tmp_path / "search" / store.OPTUNA_DB).write_bytes(b"not a database at all" * 100)
    rerun = kwlab_cli("sweep", str(spec), "--results", str(tmp_path))
    assert rerun.returncode == 0, rerun.stderr
    assert "then 0 Optuna suggestions" in rerun.stdout and "damaged" in rerun.stdout
    suggestions = study(tmp_path / "search", "search").trials
    assert len(suggestions) == 2 and all(t.state == optuna.trial.TrialState.COMPLETE for t in suggestions)
    assert len(store.Store(tmp_path / "search").records()) == 2


def test_a_new_value_of_a_swept_key_gets_a_study_that_holds_every_trial(tmp_path: Path) -> None:
    """Before: optuna.db never took the new value's trials ('CategoricalDistribution does not support dynamic value
    space') and every rerun repeated the error. Now the sweep is mirrored into a new study version."""
    spec = write_spec(tmp_path, "grow", parameters={"kw.budget": {"values": [1, 2]}})
    assert kwlab_cli("sweep", str(spec), "--results", str(tmp_path)).returncode == 0
    write_spec(tmp_path, "grow", parameters={"kw.budget": {"values": [1, 2, 3]}})  # the user adds a value
    grown = kwlab_cli("sweep", str(spec), "--results", str(tmp_path))
    assert grown.returncode == 0, grown.stderr
    assert "a new study 'grow.v2'" in grown.stdout and "dynamic value space" not in grown.stdout + grown.stderr
    assert len(study(tmp_path / "grow", "grow.v2").trials) == 3 and len(study(tmp_path / "grow", "grow").trials) == 2
    again = kwlab_cli("sweep", str(spec), "--results", str(tmp_path))
    assert again.returncode == 0 and "new study" not in again.stdout  # the version that fits is found again


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
    named = write_spec(tmp_path, "n" * 300, cases=[STATIC])
    assert main(["validate", str(named)]) == 2
    assert capsys.readouterr().err.strip().endswith("name: expected at most 100 characters, got 300")


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
