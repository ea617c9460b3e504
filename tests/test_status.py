"""`kwlab status RESULTS [--json]` as a user runs it from another terminal, on a store mid-sweep (written by hand;
tests/test_tracking.py runs it during a real sweep, tests/test_faults.py after its runner was killed). The capacity
refusal naming every short resource, tested here before, is in tests/test_sweep_capacity.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kwlab import store
from kwlab.cli import main
from test_tracking_units import make_trial, write_store_spec


@pytest.fixture
def mid_sweep(tmp_path: Path) -> store.Store:
    """A store mid-sweep: two finished variants, one trial at epoch 2 of 3, one pending; this process holds the
    runner lock."""
    results = store.Store(tmp_path / "grid")
    write_store_spec(results, {"optim.lr": {"values": [0.1, 0.01]}})
    make_trial(results, "a0", "lr=0.1", {"optim.lr": 0.1}, [50.0, 70.0, 65.0], "finished")
    make_trial(results, "a1", "lr=0.1", {"optim.lr": 0.1}, [50.0, 60.0, 55.0], "finished", seed=1)
    make_trial(results, "b0", "lr=0.01", {"optim.lr": 0.01}, [50.0, 62.0, 68.0], "finished")
    make_trial(results, "b1", "lr=0.01", {"optim.lr": 0.01}, [40.0, 45.0], "running", seed=1)
    make_trial(results, "c0", "lr=0.001", {"optim.lr": 0.001}, [], "pending")
    return results


def test_status_while_a_sweep_runs(mid_sweep: store.Store, capsys: pytest.CaptureFixture) -> None:
    with mid_sweep.lock("kwlab sweep grid.yaml"):
        assert main(["status", str(mid_sweep.path), "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert main(["status", str(mid_sweep.path)]) == 0
        text = capsys.readouterr().out
    assert status["counts"] == {"finished": 3, "stopped": 0, "failed": 0, "running": 1, "pending": 1, "missing": 0}
    running = status["running"][0]
    assert {k: running[k] for k in ("trial_id", "variant", "seed", "epoch", "epochs", "val_top1", "stalled")} == {
        "trial_id": "b1", "variant": "lr=0.01", "seed": 1, "epoch": 2, "epochs": 3, "val_top1": 45.0,
        "stalled": False}
    # best so far: the variant whose seeds' best epochs have the highest mean (lr=0.01: 68 on one seed; lr=0.1: 65)
    assert status["best"] == {"variant": "lr=0.01", "val_top1": 68.0, "seeds": 1}
    # time left: the running trial's last epoch (1 s measured per epoch), then the pending one at a finished
    # trial's 3 s, one trial at a time
    assert status["time_left_s"] == pytest.approx(4.0)
    assert status["runner"]["command"] == "kwlab sweep grid.yaml" and status["runner"]["pid"] > 0
    assert status["runner"]["alive"] is True
    assert text.splitlines() == [
        "grid: 5 trials: 3 finished, 0 stopped, 0 failed, 1 running, 1 pending",
        "  running lr=0.01 seed 1 [b1]: epoch 2/3, last val_top1 45",
        "best so far: lr=0.01 (val_top1 68, mean of the best epoch over 1 finished seed)",
        "time left: about 4 s (from the trials' measured epochs)",
        f"runner: pid {status['runner']['pid']} on {status['runner']['host']} since {status['runner']['started']} "
        "(kwlab sweep grid.yaml)"]


def test_status_of_a_folder_that_is_not_a_store_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["status", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a kwlab results store" in err and str(tmp_path) in err

