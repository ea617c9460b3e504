"""The dry run's wall-time estimate: a few timed steps per variant, scaled by epochs, packed onto the slots."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kwlab.cli import main
from kwlab.sweep.estimate import RAY_FIXED_S, duration, makespan
from kwlab.train import TrainConfig, run
from kwlab.train.recipe import time_trial


@pytest.mark.parametrize(("durations", "slots", "expected"), [
    ([5, 3, 3], 2, 6), ([5, 3, 3], 1, 11), ([4, 4, 4, 4], 2, 8), ([10, 1, 1, 1], 2, 10), ([2], 4, 2), ([], 2, 0),
])
def test_makespan_packs_the_dearest_first(durations: list[float], slots: int, expected: float) -> None:
    assert makespan(durations, slots) == expected


def test_a_trial_estimate_is_close_to_the_trial(tmp_path: Path) -> None:
    """The estimate of a 4-epoch digits trial against its measured wall time (the study's dry run is compared with
    its real wall time in its README): within a factor of two either way on a shared machine."""
    cfg = TrainConfig.from_dict({"method": "kw", "data": {"name": "digits", "train_size": 400}, "epochs": 4,
                                 "model": {"kwargs": {"width": 0.5}}, "runtime": {"threads": 1}})
    estimated = time_trial(cfg).trial_s
    started = time.perf_counter()
    list(run(cfg, tmp_path))
    measured = time.perf_counter() - started
    assert measured / 2 < estimated < measured * 2


def test_dry_run_prints_each_variants_estimate_and_the_total(capsys: pytest.CaptureFixture) -> None:
    assert main(["sweep", "sweeps/smoke.yaml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "est. trial" in out and "estimated wall time on this machine:" in out
    total = out.split("estimated wall time on this machine:")[1].split(" at ")[0].strip()
    assert total.endswith(" s") and float(total[:-2]) >= RAY_FIXED_S


def test_dry_run_estimates_only_what_is_left_in_the_store(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A rerun's dry run skips the trials the store already holds as finished or stopped, as the sweep will."""
    from kwlab import store
    from kwlab.sweep.command import plan_sweep

    plan = plan_sweep("sweeps/budget.yaml", None, [])
    results = store.Store(tmp_path / plan.spec.name)
    done = plan.trials[:2]
    for trial in done:
        results.trial(trial.trial_id).write_summary({"status": "finished"})
    results.trial(plan.trials[2].trial_id).write_summary({"status": "running"})  # not done: run again
    args = ["sweep", "sweeps/budget.yaml", "--dry-run", "--results", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    total = len(plan.trials)
    assert f"= {total} trials; {total - 2} to run (2 done earlier in" in out
    for trial in plan.trials[2:]:
        results.trial(trial.trial_id).write_summary({"status": "finished"})
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"{total} to run" not in out and f"0 to run ({total} done earlier" in out and "nothing left to run" in out
    assert "estimated wall time" not in out


def test_the_dry_run_counts_measuring_the_paths_once_per_variant(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """With `runtime.paths: measured` the sweep times each variant's layers once, before its trials: the dry run's
    total adds each variant's measuring time once (not per seed), and nothing for a compiled variant."""
    import kwlab.train.recipe as recipe
    from sweep_helpers import write_spec

    timed = {True: [], False: []}

    def fake(cfg: TrainConfig, steps: int = 3) -> recipe.Timing:
        measured = cfg.runtime.paths == "measured" and not cfg.runtime.compile
        timed[measured].append(cfg.seed)
        return recipe.Timing(10.0, 0.0, 0.0, 1, 0, 0, cfg.epochs, 100.0 if measured else 0.0)

    monkeypatch.setattr(recipe, "time_trial", fake)
    cases = [{"name": "kw"}, {"name": "compiled", "set": {"runtime.compile": True}}]
    spec = write_spec(tmp_path, "measured", cases=cases, seeds=[0, 1, 2], fixed={"runtime.paths": "measured"},
                      max_concurrent_trials=1)
    assert main(["sweep", str(spec), "--dry-run", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    total = out.split("estimated wall time on this machine:")[1].split(" at ")[0].strip()
    assert len(timed[True]) == 1 and len(timed[False]) == 1  # one timing per variant
    assert total == duration(RAY_FIXED_S + 100 + 6 * 10)  # one measuring, six trials of 10 s on one slot
