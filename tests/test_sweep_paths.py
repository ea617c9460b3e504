"""`runtime.paths: measured` through `kwlab sweep`: the sweep times each layer shape once, before its trials, keeps the
choices in the store (measured_paths.json), every seed of a variant takes the same paths, and a rerun replays them."""

from __future__ import annotations

import json
from pathlib import Path

from sweep_helpers import kwlab_cli, write_spec

from kwlab import store
from kwlab.methods.mixing import RUNNABLE

CASES = [{"name": "kw1x", "set": {"kw.budget": 1}},
         {"name": "dyconv4", "set": {"method": "dyconv", "dyconv.kernels": 4}}]


def _paths_by_trial(folder: Path) -> dict[tuple[str, int], dict[str, int]]:
    """(variant, seed) -> the paths its layers took in training (summary.json's `paths`)."""
    taken = {}
    for trial in (folder / store.TRIALS).iterdir():
        meta = json.loads((trial / store.SWEEP).read_text())
        taken[meta["variant"], meta["seed"]] = json.loads((trial / store.SUMMARY).read_text())["paths"]
    return taken


def test_measured_paths_are_timed_once_shared_by_the_seeds_and_replayed(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "measured", cases=CASES, seeds=[0, 1], fixed={"runtime.paths": "measured"})
    first = kwlab_cli("sweep", str(spec), "--results", str(tmp_path / "results"))
    assert first.returncode == 0, first.stdout + first.stderr
    folder = tmp_path / "results" / "measured"
    choices = json.loads((folder / store.MEASURED_PATHS).read_text())
    timed = len(choices)
    assert timed > 0 and set(choices.values()) <= set(RUNNABLE)
    assert f"measured paths: {timed} layer shapes timed" in first.stdout
    # keys name each layer shape the trials meet: training batches (grad) and evaluation batches (no_grad)
    assert any(key.endswith("|grad") for key in choices) and any(key.endswith("|no_grad") for key in choices)
    taken = _paths_by_trial(folder)
    for variant in ("kw1x", "dyconv4"):
        assert taken[variant, 0] and taken[variant, 0] == taken[variant, 1], taken

    rerun = kwlab_cli("sweep", str(spec), "--results", str(tmp_path / "results"), "--set", "seeds=[0,1,2]")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"measured paths: 0 layer shapes timed, {timed} taken from {store.MEASURED_PATHS}" in rerun.stdout
    assert json.loads((folder / store.MEASURED_PATHS).read_text()) == choices
    taken = _paths_by_trial(folder)
    for variant in ("kw1x", "dyconv4"):
        assert taken[variant, 2] == taken[variant, 0]
