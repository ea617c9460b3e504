"""`kwlab train CONFIG --profile` (kwlab.train.profile): where a trial's time went, through the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from kwlab import cli, store
from kwlab.train.profile import CATEGORIES

TRIAL = {
    "model": {"name": "cifar_resnet8", "kwargs": {"width": 0.5}},
    "data": {"name": "synthetic", "shape": [1, 8, 8], "length": 96, "num_classes": 4,
             "augment": {"crop_padding": 1, "flip": True}},
    "optim": {"lr": 0.05, "warmup_epochs": 0.5, "ema_decay": 0.9},
    "runtime": {"device": "cpu", "threads": 1},
    "epochs": 2, "batch_size": 32, "eval_batch_size": 16,
}



@pytest.mark.parametrize("method", ["kw", "odconv"])
def test_profile_prints_every_part_and_the_flop_share(method: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "trial.yaml"
    config.write_text(yaml.safe_dump({**TRIAL, "method": method}))
    out = tmp_path / "trial"
    assert cli.main(["train", str(config), "--out", str(out), "--profile"]) == 0
    printed = capsys.readouterr().out
    shares = {}
    for category in CATEGORIES:
        row = re.search(rf"^│ {re.escape(category)}\s+│\s+([\d.]+) │\s+([\d.]+)% │$", printed, re.MULTILINE)
        assert row, f"{category!r} missing from:\n{printed}"
        shares[category] = float(row[2])
    assert sum(shares.values()) == pytest.approx(100, abs=0.5)
    assert shares["training compute"] > 0 and shares["evaluation"] > 0 and shares["checkpoints and files"] > 0
    assert shares["attention records"] > 0  # both methods record attention statistics on the validation set
    flop = re.search(r"FLOP time: ([\d.]+) s \(([\d.e+-]+) GMAC at the method's floor.*achieved ([\d.]+)% of it",
                     " ".join(printed.split()))
    assert flop and float(flop[1]) > 0 and 0 < float(flop[3])
    assert store.TrialDir(out).summary()["status"] == "finished"  # profiling changes nothing the trial records
