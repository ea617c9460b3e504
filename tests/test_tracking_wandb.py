"""W&B offline, through `kwlab sweep` as a user runs it: each trial writes one offline run into its folder, read back
with wandb's own reader (`wandb leet inspect`), the way `wandb sync` will upload it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kwlab import store
from sweep_helpers import TINY, kwlab_cli, write_spec

wandb = pytest.importorskip("wandb", reason="W&B absent: pip install 'kwlab[wandb]'")


def inspect(run: Path, *options: str) -> str:
    """`wandb leet inspect` of one offline run folder (wandb's reader of its .wandb transaction log)."""
    leet = shutil.which("wandb", path=str(Path(sys.executable).parent))
    return subprocess.run([leet, "leet", "inspect", *options, str(run)], capture_output=True, text=True, check=True,
                          timeout=60).stdout


@pytest.mark.usefixtures("shared_ray")
def test_each_trial_writes_one_offline_run_wandb_can_read(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "logged", base={**TINY, "epochs": 2}, seeds=[0, 1],
                      parameters={"kw.budget": {"values": [1]}}, cases=[{"name": "static", "set": {"kw": None}}],
                      tracking={"wandb": {"project": "kwlab-tests", "mode": "offline"}})
    result = kwlab_cli("sweep", str(spec), "--results", str(tmp_path), env={"WANDB_MODE": "offline"})
    assert result.returncode == 0, result.stderr
    results = store.Store(tmp_path / "logged")
    records = results.records()
    assert len(records) == 4
    for record in records:
        runs = sorted((results.trial(record.trial_id).path / store.WANDB).glob("offline-run-*"))
        assert len(runs) == 1  # one run per trial, in its folder
        state = json.loads(inspect(runs[0], "--summary", "--json"))
        meta = record.meta
        assert (state["run_id"], state["name"], state["project"], state["state"]) == (
            record.trial_id, f"{meta['variant']} seed {meta['seed']}", "kwlab-tests", "finished")
        assert set(state["tags"]) == {meta["variant"], f"seed {meta['seed']}", record.method}
        assert {k: state["config"][k] for k in ("variant", "seed", "method", "trial_id")} == {
            "variant": meta["variant"], "seed": meta["seed"], "method": record.method, "trial_id": record.trial_id}
        assert state["config"].get("kw.budget") == meta["parameters"].get("kw.budget")
        assert state["summary"]["test_top1"] == pytest.approx(record.summary["test_top1"])
        history = [json.loads(line)["history"] for line in inspect(runs[0], "--json").splitlines()
                   if json.loads(line).get("type") == "history"]
        assert [h["step"]["num"] for h in history] == [1, 2]  # one step per epoch
        assert [h["item"]["val_top1"] for h in history] == pytest.approx([e["val_top1"] for e in record.epochs])
        grouped = json.loads(inspect(runs[0], "--json").splitlines()[1])["run"]
        assert grouped["run_group"] == "logged"


def test_an_absent_wandb_is_one_line_before_launch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    from kwlab.cli import main

    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` fails as it does without the extra
    spec = write_spec(tmp_path, "nowandb", cases=[{"name": "static", "set": {"kw": None}}],
                      tracking={"wandb": {"project": "p"}})
    assert main(["sweep", str(spec), "--results", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == ("kwlab sweep: error: tracking.wandb: W&B is not installed; pip install "
                                               "'kwlab[wandb]'")
