"""kwlab beyond one machine, driven through the CLI: a results store on S3 (moto's server on loopback) that no node
shares as a folder, and a multi-node Ray cluster (Ray's `cluster_utils.Cluster`) that loses a node mid-training."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from pyarrow.fs import FSSpecHandler, PyFileSystem

from cluster_helpers import epochs_of, no_local_store_files, serve_s3, wait_for
from kwlab import store
from kwlab.storage import Storage
from kwlab.train.staging import Staged
from kwlab.tracking.optuna_store import storage_url
from sweep_helpers import ROOT, TINY, kwlab_cli, write_spec


@pytest.fixture(scope="module")
def s3():
    """An S3 API on loopback with a bucket, for the module."""
    yield from serve_s3()


def fake_remote(folder: Path) -> Storage:
    """A folder seen through a pyarrow PyFileSystem: a filesystem kwlab cannot reach by local paths."""
    from fsspec.implementations.dirfs import DirFileSystem
    from fsspec.implementations.local import LocalFileSystem

    folder.mkdir(parents=True, exist_ok=True)
    fs = PyFileSystem(FSSpecHandler(DirFileSystem(path=str(folder), fs=LocalFileSystem())))
    return Storage(fs, "store", "fake://store")


def test_the_store_format_holds_on_a_filesystem_without_local_paths(tmp_path: Path) -> None:
    """Records, tables, the plan, the lock and a staged trial through a PyFileSystem (nothing reads a local path)."""
    remote = fake_remote(tmp_path / "bucket")
    results = store.Store(remote)
    assert not results.local and not results.exists()
    trial = results.trial("t1")
    trial.write_sweep_meta({"trial_id": "t1", "variant_id": "v", "variant": "static", "is_baseline": True, "seed": 0,
                            "parameters": {"kw": None}, "price": {"params_total": 10},
                            "metric": {"name": "val_loss", "goal": "minimize"}})
    trial.write_metrics([{"epoch": 1, "val_loss": 2.0, "val_top1": 10.0}, {"epoch": 2, "val_loss": 1.0,
                                                                           "val_top1": 5.0}])
    results.write_plan([{"trial_id": "t1", "variant_id": "v", "variant": "static", "is_baseline": True, "seed": 0}])
    record = trial.record()
    assert (record.status, record.best["epoch"], record.metric) == ("running", 2, ("val_loss", "minimize"))
    trials, epochs = results.write_tables()
    assert results.exists() and trials["best_epoch"].tolist() == [2] and len(epochs) == 2
    assert results.tables()[0]["status"].tolist() == ["running"] and results.plan()["trials"][0]["trial_id"] == "t1"
    with results.lock("kwlab sweep x") as lock:
        assert lock.holder()["command"] == "kwlab sweep x"
        with pytest.raises(Exception, match="another kwlab runner"):
            results.lock().acquire()
    assert results.lock().holder() is None
    # a trial staged on a node: pulled, trained locally (here: one more epoch), pushed back; removed files go too
    staged = Staged(trial, store.TrialDir(tmp_path / "work"))
    staged.pull()
    assert staged.local.metrics() == trial.metrics() and (tmp_path / "work" / store.SWEEP).is_file()
    staged.local.write_metrics([*trial.metrics(), {"epoch": 3, "val_loss": 0.5, "val_top1": 20.0}])
    staged.local.write_summary({"status": "finished", "best_epoch": 3, "best_metric": "val_loss",
                                "best_goal": "minimize"})
    staged.push()
    assert trial.record().status == "finished" and [e["epoch"] for e in trial.metrics()] == [1, 2, 3]
    assert results.tables()[0]["best_epoch"].tolist() == [3]  # the changed trial is read again


def test_a_sweep_status_report_and_power_on_an_s3_store(s3, tmp_path: Path) -> None:
    """Before: `--results s3://...` made a local folder named `s3:` and a pyarrow traceback; status and report exited
    2. Now the store lives in the bucket, in the README's layout; nothing of it lands in the working folder, and
    every command that reads a store takes its URI."""
    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    spec = write_spec(tmp_path, "remote", base={**TINY, "epochs": 2}, seeds=[0, 1],
                      cases=[{"name": "static", "set": {"kw": None}}], parameters={"kw.budget": {"values": [1]}})
    env = {"XDG_CACHE_HOME": str(cache)}
    swept = kwlab_cli("sweep", str(spec), "--results", s3.uri("team"), cwd=work, env=env)
    assert swept.returncode == 0, swept.stderr
    uri = s3.uri("team/remote")
    assert f"4 of 4 trials finished, 0 failed, 0 not finished; results in {uri}" in swept.stdout
    assert no_local_store_files(work) == []  # the working folder holds nothing of the store
    results = store.Store(uri)
    names = {entry.path for entry in results.storage.listing(recursive=True) if not entry.is_dir}
    assert {store.SPEC, store.PLAN, store.MANIFEST, store.TRIALS_TABLE, store.EPOCHS_TABLE, store.OPTUNA_DB} <= names
    trial_files = {name.split("/", 2)[2] for name in names if name.startswith(f"{store.TRIALS}/")}
    assert {store.CONFIG, store.METRICS, store.SUMMARY, store.SWEEP, store.BEST, store.LOG} <= trial_files
    assert store.CHECKPOINT not in trial_files  # a finished trial keeps best.pt, not its resume state
    assert any(name.startswith(f"{store.TENSORBOARD}/") for name in trial_files)
    assert any(name.startswith(f"{store.LOGS}/ray-") for name in names)
    records = results.records()
    assert len(records) == 4 and all(r.status == "finished" and epochs_of(
        results.trial(r.trial_id).storage.read_text(store.METRICS)) == [1, 2] for r in records)
    db = tmp_path / "optuna.db"  # the store's copy of optuna.db, as a user would fetch it
    assert results.storage.download(store.OPTUNA_DB, db)
    assert len(optuna.load_study(study_name="remote", storage=storage_url(db)).trials) == 4

    status = kwlab_cli("status", uri, cwd=work, env=env)
    assert status.returncode == 0 and "remote: 4 trials: 4 finished" in status.stdout, status.stderr
    report = kwlab_cli("report", uri, cwd=work, env=env)
    assert report.returncode == 0, report.stderr
    assert f"report written: {results.storage.child(store.REPORT, 'report.md').uri}" in report.stdout
    assert results.storage.read_text(f"{store.REPORT}/report.md").startswith("# remote")
    power = kwlab_cli("power", uri, cwd=work, env=env)
    assert power.returncode == 0 and "budget=1" in power.stdout, power.stderr
    again = kwlab_cli("sweep", str(spec), "--results", s3.uri("team"), cwd=work, env=env)  # a rerun: nothing to do
    assert again.returncode == 0 and "0 of 4 fixed trials to run (4 done earlier)" in again.stdout
    assert no_local_store_files(work) == []


@pytest.fixture(scope="module")
def cluster():
    """A Ray cluster on this machine: a head without CPUs and a worker node of 2 CPUs; each test adds the node of
    1 CPU it removes."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": 80 * 2**20})
    cluster.add_node(num_cpus=2, object_store_memory=80 * 2**20, resources={"big": 1})
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


# long enough that the cluster marks the removed node dead while trials still run
EPOCHS = 12


@pytest.mark.slow  # two sweeps on a three-node cluster: about a minute each on 2 cores
@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_lost_node_costs_its_trials_no_finished_epoch(cluster, s3, where: str, tmp_path: Path) -> None:
    """Before: on a store no node shares, a lost node's checkpoints went with it, and 42 lines of Ray's raylet
    `[state-dump]` reached the terminal. Now the lost node's trials resume on the other node from their last finished
    epoch (from the store), the sweep exits 0 with true counts, every epoch is recorded once, and Ray's dump goes to
    the store's logs/ while kwlab says one line for the node."""
    small = cluster.add_node(num_cpus=1, object_store_memory=80 * 2**20, resources={"small": 1})
    cluster.wait_for_nodes()
    location = str(tmp_path) if where == "local" else s3.uri(f"lost-{os.getpid()}")
    spec = write_spec(tmp_path, "lose", base={**TINY, "epochs": EPOCHS, "data": {"name": "digits", "train_size": 1100}},
                      seeds=[0], parameters={"kw.budget": {"values": [1, 2, 3, 4]}})
    runner = subprocess.Popen([sys.executable, "-m", "kwlab.cli", "sweep", str(spec), "--results", location,
                               "--address", cluster.address], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    results = store.Store(Storage.of(location).child("lose"))

    def three_have_an_epoch() -> bool:  # every node's trials are under way, each past its first epoch
        return sum(bool(r.epochs) for r in results.records()) >= 3 if results.exists() else False

    wait_for(three_have_an_epoch, what="three trials with a finished epoch")
    cluster.remove_node(small, allow_graceful=False)
    out, err = runner.communicate(timeout=600)
    assert runner.returncode == 0, out + err
    assert "4 of 4 trials finished, 0 failed, 0 not finished" in out
    assert out.count("lost node") == 1 and "[state-dump]" not in out + err and "Traceback" not in out + err
    assert "retrying" in out  # the lost node's trial
    logs = [e.path for e in results.storage.listing(store.LOGS)]
    assert any("[state-dump]" in (results.storage.read_text(f"{store.LOGS}/{name}") or "") for name in logs)
    resumed = []
    for record in results.records():
        log = results.trial(record.trial_id).storage.read_text(store.LOG) or ""
        assert record.status == "finished" and [e["epoch"] for e in record.epochs] == list(range(1, EPOCHS + 1))
        resumed += [line for line in log.splitlines() if line.startswith("resuming after epoch")]
    assert len(resumed) == 1 and not resumed[0].startswith("resuming after epoch 0")
