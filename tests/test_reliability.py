"""Crashes, power cuts, preemption, full or read-only disks and hostile specs, met the way a user meets them: through
`kwlab sweep`, `kwlab report` and `kwlab validate`. Each test reproduces a probe of issue 21 and asserts what the
user sees afterwards (statuses, exit codes, printed lines) and that the rerun loses nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import kwlab.results
from kwlab import store
from kwlab.storage import Storage
from kwlab.cli import main
from kwlab.train import load_config, run
from kwlab.sweep import command, runner
from kwlab.sweep.expand import expand, size_line, variant_count
from kwlab.sweep.spec import load_spec
from sweep_helpers import TINY, kwlab_cli, start_cli, write_spec


def statuses(folder: Path) -> dict[str, str]:
    """variant -> status (one seed per variant), from the trial folders."""
    return dict(kwlab.results.load(folder).trials[["variant", "status"]].itertuples(index=False))


def one_line(text: str) -> str:
    """The text, asserted to be one line."""
    assert text.strip().count("\n") == 0, text
    return text.strip()


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` read-only as a user meets it: a read-only bind mount for root (who ignores permissions), else
    permissions."""
    if os.geteuid() != 0:
        folders = [Path(d) for d, _, _ in os.walk(folder)]
        for path in folders:
            path.chmod(0o555)
        try:
            yield
        finally:
            for path in folders:
                path.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount {folder}: {mounted.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True, capture_output=True)


# -- a power cut, a diverged trial, numbers in scientific notation, a read-only store: one sweep through Ray

@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory, ray_head: str) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """A 2-epoch sweep on the session's Ray head: the static model, KW 1x, and the static model at lr 300 (its
    training loss stays finite, its validation loss is NaN); `--set optim.lr=5e-2` in scientific notation."""
    root = tmp_path_factory.mktemp("reliability")
    spec = write_spec(root, "torn", base={**TINY, "epochs": 2}, baseline="static", failure={"max_retries": 0},
                      cases=[{"name": "static", "set": {"kw": None}}, {"name": "kw", "set": {}},
                             {"name": "diverges", "set": {"kw": None, "optim.lr": 300}}])
    return root, spec, kwlab_cli("sweep", str(spec), "--results", str(root), "--set", "optim.lr=5e-2",
                                 env={"RAY_ADDRESS": ray_head})


def test_a_diverged_trial_fails_in_one_line_and_no_number_comes_from_nan(swept: tuple,
                                                                        capsys: pytest.CaptureFixture) -> None:
    """Before: lr 300 left NaN validation and test losses, yet the trial was 'finished', summary.json held a bare
    NaN and its test top-1 of 9.72% from NaN logits counted in the report; `--set optim.lr=1e-3` was refused."""
    root, _, result = swept
    folder = root / "torn"
    assert result.returncode == 1, result.stderr
    assert "2 of 3 trials finished, 1 failed" in result.stderr and "Traceback" not in result.stdout + result.stderr
    trials = kwlab.results.load(folder).trials.set_index("variant")
    assert dict(trials["status"]) == {"static": "finished", "kw": "finished", "diverges": "failed"}
    error = one_line(trials.loc["diverges", "error"])
    assert error.startswith("diverged: val_loss is nan (") and "non-finite logits" in error
    assert pd.isna(trials.loc["diverges", "test_top1"])  # never tested
    config = store.Store(folder).trial(trials.loc["static", "trial_id"]).config()
    assert config["optim"]["lr"] == 0.05  # 5e-2 is a number
    for summary in folder.glob(f"{store.TRIALS}/*/{store.SUMMARY}"):
        assert "NaN" not in summary.read_text() and "Infinity" not in summary.read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. numpy's All-NaN RuntimeWarning
        assert main(["report", str(folder)]) == 0
    assert "Warning" not in capsys.readouterr().err
    counted = pd.read_csv(folder / "report" / "summary.csv").set_index("variant")
    assert counted.loc["diverges", "n_seeds"] == 0 and pd.isna(counted.loc["diverges", "mean"])


def test_a_store_written_before_divergence_was_failure_counts_no_nan(swept: tuple, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """A store an older kwlab wrote holds finished trials with NaN losses (its numbers come from NaN logits): the
    store reads them as diverged, so the report leaves them out."""
    root, _, _ = swept
    old = tmp_path / "old"
    shutil.copytree(root / "torn", old, ignore=shutil.ignore_patterns("report", store.TRIALS_TABLE, store.EPOCHS_TABLE))
    trials = kwlab.results.load(old).trials.set_index("variant")
    kw = store.Store(old).trial(trials.loc["kw", "trial_id"])
    epochs = [json.loads(line) for line in kw.file(store.METRICS).read_text().splitlines()]
    epochs[-1]["val_loss"] = float("nan")
    kw.file(store.METRICS).write_text("".join(json.dumps(e) + "\n" for e in epochs))  # a bare NaN, as before
    summary = json.loads(kw.file(store.SUMMARY).read_text()) | {"test_loss": float("nan")}
    kw.file(store.SUMMARY).write_text(json.dumps(summary))
    reread = kwlab.results.load(old).trials.set_index("variant")
    assert reread.loc["kw", "status"] == "failed"
    assert reread.loc["kw", "error"] == "diverged: val_loss is nan at epoch 2"
    assert main(["report", str(old)]) == 0
    counted = pd.read_csv(old / "report" / "summary.csv").set_index("variant")
    assert counted.loc["kw", "n_seeds"] == 0 and pd.isna(counted.loc["kw", "mean"])


@pytest.mark.usefixtures("shared_ray")
def test_torn_files_are_read_as_what_they_are_and_the_rerun_recovers(swept: tuple,
                                                                     capsys: pytest.CaptureFixture) -> None:
    """Before: a torn or zeroed last line of metrics.jsonl made `kwlab report` and the rerun exit 1 with a
    JSONDecodeError traceback naming no file; binary garbage in summary.json was a UnicodeDecodeError traceback; a
    zero-length checkpoint.pt failed its trial ('delete it to restart'); a torn trials.parquet was an Arrow error."""
    root, spec, _ = swept
    folder = root / "torn"
    before = kwlab.results.load(folder).trials.set_index("variant")
    static, kw = (store.Store(folder).trial(before.loc[v, "trial_id"]) for v in ("static", "kw"))
    # a power cut: static's last epoch record torn mid-line and its summary.json garbage; KW 1x's last epoch record
    # zeroed, its checkpoint.pt empty and its summary never written; trials.parquet cut short
    text = static.file(store.METRICS).read_bytes()
    static.file(store.METRICS).write_bytes(text[:-25])
    static.file(store.SUMMARY).write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe" + bytes(range(256)))
    lines = kw.file(store.METRICS).read_bytes().splitlines(keepends=True)
    kw.file(store.METRICS).write_bytes(b"".join(lines[:-1]) + b"\0" * len(lines[-1]))
    kw.file(store.CHECKPOINT).write_bytes(b"")
    kw.file(store.SUMMARY).unlink()
    table = folder / store.TRIALS_TABLE
    table.write_bytes(table.read_bytes()[: table.stat().st_size // 2])

    loaded = kwlab.results.load(folder)  # trials.parquet is torn: the tables are rebuilt
    assert len(loaded.trials) == 3
    assert (f"warning: {folder}: cannot read {store.TRIALS_TABLE} or {store.EPOCHS_TABLE} ("
            in capsys.readouterr().err)
    report = kwlab_cli("report", str(folder))
    assert report.returncode == 0, report.stderr
    assert "Traceback" not in report.stdout + report.stderr
    for trial in (static, kw):
        assert f"warning: {trial.file(store.METRICS)}: line 2 of 2 is unreadable" in report.stderr
    assert statuses(folder) == {"static": "running", "kw": "running", "diverges": "failed"}  # unfinished: rerun

    rerun = kwlab_cli("sweep", str(spec), "--results", str(root), "--set", "optim.lr=5e-2")
    assert rerun.returncode == 1 and "2 of 3 trials finished, 1 failed" in rerun.stderr  # diverges, again
    assert "Traceback" not in rerun.stdout + rerun.stderr
    assert "unreadable" in kw.file(store.LOG).read_text()  # the empty checkpoint: started again, with a warning
    after = kwlab.results.load(folder)
    trials = after.trials.set_index("variant")
    for variant in ("static", "kw"):  # static re-tested from its checkpoint, KW 1x trained again: the same numbers
        assert trials.loc[variant, "status"] == "finished"
        assert trials.loc[variant, "test_top1"] == before.loc[variant, "test_top1"]
        assert trials.loc[variant, "best_val_loss"] == before.loc[variant, "best_val_loss"]
    epochs = after.epochs.groupby("variant")["epoch"].agg(list)
    assert epochs["static"] == [1, 2] and epochs["kw"] == [1, 2]


def test_report_on_a_read_only_store_suggests_out(swept: tuple, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    """Before: `kwlab report` on a read-only store and a sweep on it were EROFS tracebacks."""
    root, spec, _ = swept
    folder = root / "torn"
    with read_only(folder):
        assert main(["report", str(folder)]) == 2
        line = one_line(capsys.readouterr().err)
        assert main(["sweep", str(spec), "--results", str(root)]) == 1
        assert one_line(capsys.readouterr().err).startswith(f"kwlab sweep: {folder}: cannot write {store.LOCK}: ")
        assert main(["report", str(folder), "--out", str(tmp_path / "report")]) == 0
    assert line.startswith(f"kwlab report: error: {folder}") and "cannot write the report (" in line
    assert line.endswith("); write it elsewhere with --out DIR")
    assert (tmp_path / "report" / "report.md").is_file()


# -- SIGTERM, and a second sweep on the same machine

@pytest.mark.slow  # two sweeps through Ray: about 90 s on a busy 2-core machine
def test_sigterm_takes_the_ctrl_c_path_and_a_second_local_sweep_is_told(tmp_path: Path) -> None:
    """Before: SIGTERM (a scheduler's preemption) ended the runner with exit 134 and Ray's C++ '*** SIGTERM received'
    dump, no kwlab line, the lock and tables left as they happened to be; two local sweeps at once each took the
    whole machine without a word."""
    spec = write_spec(tmp_path, "preempted", base={**TINY, "epochs": 2}, seeds=[0, 1], max_concurrent_trials=1,
                      cases=[{"name": "static", "set": {"kw": None}}, {"name": "kw", "set": {}}])
    folder = tmp_path / "preempted"
    sweep = start_cli("sweep", str(spec), "--results", str(tmp_path))
    deadline = time.time() + 300
    while not list(folder.glob(f"{store.TRIALS}/*/{store.SUMMARY}")) and time.time() < deadline:
        time.sleep(0.2)
    os.kill(sweep.pid, signal.SIGTERM)  # the runner alone, as a scheduler does
    out, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 143, err
    done = kwlab.results.load(folder).trials["status"].tolist().count("finished")
    assert 1 <= done < 4
    assert f"{done} of 4 trials finished" in err and "terminated (SIGTERM): finished trials are kept; resume with: " \
                                                     "kwlab sweep" in err
    assert "SIGTERM received" not in out + err and "Traceback" not in out + err
    assert not (folder / store.LOCK).exists()
    # the rerun, while this test's process stands for another kwlab sweep running a local Ray instance
    with store.Lock(Storage.of(runner.LOCAL_SWEEPS), f"{os.getpid()}.json", "results/other"):
        resumed = kwlab_cli("sweep", str(spec), "--results", str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr
    assert f"another kwlab sweep runs on this machine (pid {os.getpid()}, results/other); each local Ray instance " \
           f"takes all {os.cpu_count()} CPUs" in resumed.stderr
    results = kwlab.results.load(folder)
    assert (results.trials["status"] == "finished").all() and len(results.trials) == 4
    assert results.epochs.groupby("trial_id")["epoch"].agg(list).map(lambda e: e == [1, 2]).all()  # none repeated


@pytest.mark.slow
def test_two_local_sweeps_at_once_say_that_they_share_the_cores(tmp_path: Path) -> None:
    """Two real sweeps on two folders at once: the second names the first in one line; both finish."""
    first_spec = write_spec(tmp_path, "first", base={**TINY, "epochs": 3, "data": {"name": "digits",
                                                                                   "train_size": 900}},
                            parameters={"kw.budget": {"values": [1, 2, 3]}}, seeds=[0, 1], max_concurrent_trials=1)
    second_spec = write_spec(tmp_path, "second", cases=[{"name": "static", "set": {"kw": None}}])
    first = start_cli("sweep", str(first_spec), "--results", str(tmp_path))
    deadline = time.time() + 300
    while not list((tmp_path / "first").glob(f"{store.TRIALS}/*/{store.METRICS}")) and time.time() < deadline:
        time.sleep(0.2)
    second = kwlab_cli("sweep", str(second_spec), "--results", str(tmp_path))
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert second.returncode == 0, second.stderr
    assert f"another kwlab sweep runs on this machine (pid {first.pid}, {tmp_path / 'first'})" in second.stderr


# -- a full disk

@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs (root only), unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip() or 'not root'}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_disk_before_launch_is_one_line(small_disk: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    spec = write_spec(tmp_path, "full", cases=[{"name": "static", "set": {"kw": None}}])
    filler = os.open(small_disk / "filler", os.O_WRONLY | os.O_CREAT)
    with pytest.raises(OSError, match="No space left"):
        while True:
            os.write(filler, b"\0" * 2**16)
    os.close(filler)
    assert main(["sweep", str(spec), "--results", str(small_disk)]) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"kwlab sweep: {small_disk / 'full'}: cannot write ")
    assert line.endswith(": No space left on device (the disk is full)")


@pytest.mark.slow
def test_a_disk_that_fills_mid_sweep_stops_launching_and_the_rerun_finishes(small_disk: Path, tmp_path: Path) -> None:
    """Before: about 170 lines of chained tracebacks (ENOSPC again inside on_trial_error), no summary line, no tables,
    and the other trials never started. A KW 2x trial's files take 1.6 MB: the second does not fit in 3 MB."""
    spec = write_spec(tmp_path, "full", cases=[{"name": "kw2", "set": {"kw.budget": 2}}], seeds=[0, 1, 2],
                      failure={"max_retries": 0}, max_concurrent_trials=1)
    folder = small_disk / "full"
    result = kwlab_cli("sweep", str(spec), "--results", str(small_disk))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "no more trials start" in result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("stopped launching trials: ") and "No space left on device (the disk is full)" in last
    assert str(folder) in last and last.endswith(f"resume with: kwlab sweep {spec} --results {small_disk}")
    left = kwlab.results.load(folder).trials["status"].tolist()
    assert left.count("finished") == 1 and "pending" in left
    finished = {p: p.stat().st_mtime_ns for p in folder.glob(f"{store.TRIALS}/*/{store.SUMMARY}")}
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    rerun = kwlab_cli("sweep", str(spec), "--results", str(small_disk))
    assert rerun.returncode == 0, rerun.stderr
    assert kwlab.results.load(folder).trials["status"].tolist() == ["finished"] * 3
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # kept, not trained again


@pytest.mark.slow
def test_two_trials_failing_at_once_on_a_full_disk_are_one_line_each(small_disk: Path, tmp_path: Path) -> None:
    """Before: kwlab's one-liners, then Ray's 50-line 'Unhandled error' dump of the second trial's exception. Two KW 2x
    trials (1.6 MB of files each) start together on a 3 MB disk: what fails is said in kwlab's lines, Ray's dump goes
    to the store's log, and the closing line counts every trial."""
    spec = write_spec(tmp_path, "full", cases=[{"name": "kw2", "set": {"kw.budget": 2}}], seeds=[0, 1, 2],
                      failure={"max_retries": 0}, max_concurrent_trials=2)
    result = kwlab_cli("sweep", str(spec), "--results", str(small_disk))
    printed = result.stdout + result.stderr
    assert result.returncode == 1, printed
    assert "Traceback" not in printed and "Unhandled error" not in printed and "(raylet)" not in printed
    assert "No space left on device (the disk is full)" in printed
    assert f"resume with: kwlab sweep {spec} --results {small_disk}" in printed


# -- read-only and missing locations, hostile specs: refused before anything runs

def test_a_results_location_that_cannot_be_written_is_one_line_before_launch(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    """Before: `--results /proc/x` was a FileNotFoundError traceback from Lock.acquire."""
    spec = write_spec(tmp_path, "nowhere", cases=[{"name": "static", "set": {"kw": None}}])
    assert main(["sweep", str(spec), "--results", "/proc/kwlab-results"]) == 1
    assert one_line(capsys.readouterr().err).startswith(f"kwlab sweep: /proc/kwlab-results/nowhere: cannot write "
                                                        f"{store.LOCK}: ")


def huge_spec(folder: Path) -> Path:
    """A grid of 7 keys x 10 values: 10^7 variants."""
    return write_spec(folder, "huge", parameters={f"model.kwargs.k{i}": {"values": list(range(10))} for i in range(7)})


@pytest.mark.parametrize("args", [["validate"], ["sweep", "--dry-run"], ["sweep"]])
def test_a_huge_grid_is_counted_and_refused_before_it_is_built(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    """Before: a 10^7 grid held 4-5.5 GB and printed nothing until killed; 10^3 variants took 51 s and 1 GB."""
    monkeypatch.setattr(command, "expand", lambda *a: pytest.fail("the grid was built"))
    spec = huge_spec(tmp_path)
    results = ["--results", str(tmp_path)] if args[0] == "sweep" else []
    assert main([args[0], str(spec), *args[1:], *results]) == 2
    error = one_line(capsys.readouterr().err)
    assert error == (f"kwlab {args[0]}: error: {spec}: 10,000,000 variants, 10,000,000 trials (counted before "
                     "constraints): over the cap of 10,000 variants; narrow the parameters, or raise the cap with "
                     "--max-variants 10000000")
    assert not (tmp_path / "huge").exists()


def test_the_variant_cap_can_be_raised_and_large_specs_say_their_size_first(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = write_spec(tmp_path, "grid", parameters={"kw.budget": {"values": [1, 2, 3]}},
                      cases=[{"name": "static", "set": {"kw": None}, "seeds": [0, 1]}])
    assert main(["validate", str(spec), "--max-variants", "3"]) == 2
    assert "4 variants, 5 trials (counted before constraints): over the cap of 3" in capsys.readouterr().err
    monkeypatch.setattr(command, "ANNOUNCE", 4)
    assert main(["validate", str(spec), "--max-variants", "4"]) == 0
    out, err = capsys.readouterr()
    assert one_line(err) == f"{spec}: 4 variants, 5 trials (counted before constraints); building and pricing them"
    assert "4 variants x 1-2 seeds = 5 trials" in out
    assert main(["validate", str(spec), "--max-variants", "0"]) == 2
    assert "--max-variants: expected a number > 0, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("tree", [
    {"parameters": {"kw.budget": {"values": [1, 2]}, "optim.lr": {"values": [0.1, 0.2, 0.3]}}},
    {"parameters": {"kw.budget": {"values": [1, 2]}, "kw.reduction": {"values": [0.25, 0.5]},
                    "optim.lr": {"values": [0.1, 0.2, 0.3]}}, "zip": [["kw.budget", "kw.reduction"]], "seeds": [0, 1],
     "cases": [{"name": "static", "set": {"kw": None}, "seeds": [0, 1, 2]}]},
    {"method": "random", "num_samples": 4, "parameters": {"optim.lr": {"distribution": "uniform", "min": 0.1,
                                                                       "max": 0.2}}},
])
def test_the_count_before_building_is_what_expansion_builds(tmp_path: Path, tree: dict) -> None:
    spec = load_spec(write_spec(tmp_path, "count", **tree))
    trials = expand(spec, dict(TINY), "count")
    assert variant_count(spec) == len({t.variant_id for t in trials})
    assert size_line(spec) == f"{variant_count(spec)} variants, {len(trials)} trials (counted before constraints)"


def test_a_yaml_alias_bomb_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Before: an alias bomb inside a case's `set` grew `kwlab validate` to 4.8 GB until it was killed."""
    spec = tmp_path / "bomb.yaml"
    rows = "\n".join(f"      l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 12))
    spec.write_text(f"name: bomb\ncases:\n  - name: a\n    set:\n      l0: &l0 [lol, lol, lol]\n{rows}\n")
    assert main(["validate", str(spec)]) == 2
    assert one_line(capsys.readouterr().err) == (f"kwlab validate: error: {spec}: invalid YAML at line 6: alias *l0 "
                                                 "is not allowed (kwlab reads no anchors or aliases; write the values "
                                                 "out)")


@pytest.mark.parametrize("content", [bytes(range(256)), b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", b"name: x\0\0\0"])
def test_a_spec_that_is_not_text_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, content: bytes) -> None:
    """Before: a binary file given as a spec was a UnicodeDecodeError traceback."""
    spec = tmp_path / "binary.yaml"
    spec.write_bytes(content)
    for args in (["validate", str(spec)], ["sweep", str(spec), "--results", str(tmp_path)]):
        assert main(args) == 2
        error = one_line(capsys.readouterr().err)
        assert f": error: {spec}: " in error and ("not UTF-8 text" in error or "invalid YAML" in error)


def test_numbers_in_scientific_notation_are_numbers(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Before: `--set optim.lr=1e-3` was refused ("expected a number, got '1e-3'"), YAML 1.1's float rule."""
    spec = tmp_path / "sci.yaml"
    spec.write_text("name: sci\nbase: {epochs: 1, optim: {lr: 1e-3, weight_decay: 5E-4}}\n"
                    "parameters: {optim.min_lr: {values: [1e-6, 0]}}\n")
    plan = command.plan_sweep(str(spec), None, ["optim.momentum=9e-1"])
    optim = [t.config["optim"] for t in plan.trials]
    assert [o["lr"] for o in optim] == [1e-3, 1e-3] and optim[0]["weight_decay"] == 5e-4
    assert [o["min_lr"] for o in optim] == [1e-6, 0] and optim[0]["momentum"] == 0.9
    assert main(["validate", str(spec), "--set", "optim.lr=1e6"]) == 0
    assert ": ok:" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["0", "-3"])
def test_max_concurrent_below_one_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture, value: str) -> None:
    """Before: 0 ran unlimited trials at once, -3 one at a time."""
    spec = write_spec(tmp_path, "capped", cases=[{"name": "static", "set": {"kw": None}}])
    assert main(["sweep", str(spec), "--results", str(tmp_path), "--max-concurrent", value]) == 2
    assert one_line(capsys.readouterr().err) == f"kwlab sweep: error: --max-concurrent: expected an integer >= 1, " \
                                                f"got {value}"
    assert not (tmp_path / "capped").exists()


@pytest.mark.parametrize("name", ["..", "."])
def test_dot_names_are_not_sweep_names(tmp_path: Path, capsys: pytest.CaptureFixture, name: str) -> None:
    """Before: a sweep named `..` wrote into the parent of --results."""
    results = tmp_path / "results"
    spec = tmp_path / "dots.yaml"
    spec.write_text(yaml.safe_dump({"name": name, "base": TINY, "cases": [{"name": "static", "set": {"kw": None}}]}))
    assert main(["sweep", str(spec), "--results", str(results)]) == 2
    assert one_line(capsys.readouterr().err) == (f"kwlab sweep: error: {spec}: name: {name!r} is not a folder name "
                                                 "(the results go to <results>/<name>)")
    renamed = write_spec(tmp_path, "ok", cases=[{"name": "static", "set": {"kw": None}}])
    assert main(["validate", str(renamed), "--set", f"name={name}"]) == 2
    assert f"name: {name!r} is not a folder name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dots.yaml", "ok.yaml"]


def test_every_reader_survives_garbage_in_every_file(tmp_path: Path) -> None:
    """Torn sweep.json, error.json, stopped.json, runner.lock and manifest.json: read as absent, never a traceback."""
    results = store.Store(tmp_path)
    for name in ("a", "b"):
        trial = results.trial(name)
        trial.write_sweep_meta({"trial_id": name, "variant_id": name, "variant": name, "is_baseline": False,
                                "seed": 0, "parameters": {}})
    garbage = b"\xff\xfe\0{\"torn"
    a, b = results.trial("a"), results.trial("b")
    a.file(store.STOPPED).write_bytes(garbage)
    a.file(store.ERROR).write_bytes(garbage)
    b.file(store.SWEEP).write_bytes(garbage)
    results.file(store.MANIFEST).write_bytes(garbage)
    results.file(store.LOCK).write_bytes(garbage)  # a lock torn by a power cut: its holder is gone
    loaded = kwlab.results.load(tmp_path)
    assert loaded.trials[["trial_id", "status"]].values.tolist() == [["a", "failed"]] and loaded.manifest == {}
    with results.lock("kwlab sweep x") as lock:
        assert lock.taken_over == {} and results.lock().holder()["command"] == "kwlab sweep x"


@pytest.mark.parametrize("torn", [store.CHECKPOINT, store.BEST])
def test_an_unreadable_checkpoint_restarts_the_trial_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                   torn: str) -> None:
    """Before: a zero-length checkpoint.pt (a power cut) failed the trial: 'delete it to restart'."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"name": "cifar_resnet8", "kwargs": {"width": 0.5}}, "epochs": 2, "batch_size": 32,
        "data": {"name": "synthetic", "shape": [1, 8, 8], "length": 96, "num_classes": 4},
        "runtime": {"device": "cpu", "threads": 1}}))
    out, whole = tmp_path / "trial", tmp_path / "whole"
    threads = torch.get_num_threads()
    try:
        assert main(["train", str(config), "--out", str(whole)]) == 0  # the same trial, never interrupted
        first = store.TrialDir(whole).summary()
        interrupted = run(load_config(config), out)
        next(interrupted)
        interrupted.close()  # a power cut after epoch 1: its checkpoint.pt and best.pt torn
        path = out / torn
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2] if torn == store.BEST else b"")
        capsys.readouterr()
        assert main(["train", str(config), "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    output = capsys.readouterr()
    assert f"warning: {path}: unreadable (" in output.err
    assert "the trial starts again from its first epoch" in output.err
    assert "epoch   1/2" in output.out and "epoch   2/2" in output.out  # trained again from the first epoch
    again = store.TrialDir(out).summary()
    assert again["test_top1"] == first["test_top1"] and again["best_val_loss"] == first["best_val_loss"]
