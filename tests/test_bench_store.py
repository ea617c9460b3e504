"""`kwlab bench-store`: the store-scale benchmark, run as a user runs it (its figures are reported, not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sweep_helpers import kwlab_cli

from kwlab import store
from kwlab.cli import main


def test_bench_store_writes_times_and_keeps_its_store(tmp_path: Path) -> None:
    """One size, kept: the JSON names the machine and each timing; the kept store is a finished sweep of that many
    trials whose tables, status and report the benchmark produced."""
    done = kwlab_cli("bench-store", "--trials", "10", "--keep", str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["machine"]["cores"] >= 1 and printed["machine"]["cpu"]
    (row,) = printed["results"]
    assert row["trials"] == 10
    for key in ("write_store_s", "bookkeeping_ms", "tables_write_s", "status_s", "report_s"):
        assert row[key] > 0, key
    folder = tmp_path / "store_10"
    assert len(list((folder / store.TRIALS).iterdir())) == 10
    trials = pd.read_parquet(folder / store.TRIALS_TABLE)
    assert len(trials) == 10 and (trials["status"] == "finished").all()
    assert (tmp_path / "report_10" / "report.md").is_file()


def test_bench_store_refuses_bad_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    """A size that is not a number, or below one variant's seeds, is one line naming --trials, before any store is
    written (the CLI's entry point in this process)."""
    for bad, expected in (("ten", "expected a comma list of integers"), ("3", "expected sizes of at least 5 trials")):
        assert main(["bench-store", "--trials", bad]) == 2
        err = capsys.readouterr().err
        assert f"--trials: {expected}" in err and len(err.strip().splitlines()) == 1, err
