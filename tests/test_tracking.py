"""Watching a sweep while it runs, the way a user does: `kwlab sweep` with MLflow tracking on a small digits grid;
while it runs (its runner held with SIGSTOP) the test reads optuna.db through `optuna.load_study`, the TensorBoard
event files, the runs on a real local `mlflow server`, and `kwlab status`; after it, optuna-dashboard serves the
study and `kwlab report` shows which setting mattered. The default suite covers each integration on its own in
tests/test_tracking_units.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from kwlab import store
from kwlab.cli import main
from kwlab.tracking.optuna_store import storage_url
from sweep_helpers import TINY, kwlab_cli, start_cli, write_spec

optuna = pytest.importorskip("optuna")
mlflow = pytest.importorskip("mlflow", reason="MLflow absent: pip install 'kwlab[mlflow]'")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                        reason="TensorBoard absent: pip install tensorboard")

# a static model learns on digits within a few epochs (the metric varies with the swept keys); one case diverges
SPEC = {"base": {**TINY, "epochs": 3, "kw": None}, "seeds": [0], "max_concurrent_trials": 1,
        "parameters": {"optim.lr": {"values": [0.3, 0.03]}, "batch_size": {"values": [32, 64]}},
        "cases": [{"name": "diverge", "set": {"optim.lr": 1.0e+6}}], "failure": {"max_retries": 0}}


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(command: list[str], url: str, log: Path, timeout: float = 90) -> subprocess.Popen:
    """Start a server in its own process group and wait (bounded) until `url` answers."""
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{command[0]} exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return process
        except OSError:
            time.sleep(0.5)
    stop(process)
    raise AssertionError(f"{command[0]} did not answer {url} within {timeout} s: {log.read_text()[-2000:]}")


def stop(process: subprocess.Popen) -> None:
    """Stop a server started by `serve` (its whole process group)."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server on 127.0.0.1 with a SQLite backend; its URI."""
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    process = serve([shutil.which("mlflow") or "mlflow", "server", "--backend-store-uri",
                     f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination", str(folder / "artifacts"),
                     "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                    f"http://127.0.0.1:{port}/health", folder / "server.log", timeout=180)
    yield f"http://127.0.0.1:{port}"
    stop(process)


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory, mlflow_server: str) -> dict:
    """The sweep, run through `kwlab sweep`, with what was read from the store while its runner was held after the
    first finished trial, and the sweep's outcome."""
    folder = tmp_path_factory.mktemp("watch")
    spec = write_spec(folder, "watch", **SPEC, tracking={"mlflow": {"uri": mlflow_server, "experiment": "kw-watch"}})
    results = folder / "watch"
    runner = start_cli("sweep", str(spec), "--results", str(folder))
    deadline = time.time() + 300
    while not list(results.glob(f"{store.TRIALS}/*/{store.SUMMARY}")) and time.time() < deadline:
        time.sleep(0.1)
    os.kill(runner.pid, signal.SIGSTOP)  # hold the runner mid-sweep: what a second terminal sees
    try:
        seen = {"study": optuna.load_study(study_name="watch", storage=storage_url(results / store.OPTUNA_DB)),
                "status": kwlab_cli("status", str(results), "--json"),
                "status_text": kwlab_cli("status", str(results)),
                "runs": mlflow.MlflowClient(mlflow_server).search_runs(
                    [mlflow.MlflowClient(mlflow_server).get_experiment_by_name("kw-watch").experiment_id]),
                "report": kwlab_cli("report", str(results), "--out", str(folder / "early"))}
    finally:
        os.kill(runner.pid, signal.SIGCONT)
    out, err = runner.communicate(timeout=300)
    return {**seen, "folder": results, "pid": runner.pid, "code": runner.returncode, "out": out, "err": err,
            "uri": mlflow_server}


def epochs_of(results: Path, trial_id: str) -> list[dict]:
    """The epoch records of a trial, as kwlab stored them."""
    return store.Store(results).trial(trial_id).metrics()


@pytest.mark.slow  # real servers and a sweep: minutes on 2 cores
def test_optuna_db_holds_the_sweep_while_it_runs_and_after(watched: dict) -> None:
    results = watched["folder"]
    live = [t for t in watched["study"].trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert live, "a finished trial is an Optuna trial while the sweep runs"
    for trial in live:
        epochs = epochs_of(results, trial.user_attrs["trial_id"])
        assert trial.value == max(e["val_top1"] for e in epochs)
        assert trial.intermediate_values == {e["epoch"]: e["val_top1"] for e in epochs}
    assert watched["code"] == 1 and "1 failed" in watched["out"] + watched["err"]  # the diverging case
    study = optuna.load_study(study_name="watch", storage=storage_url(results / store.OPTUNA_DB))
    by_variant = {t.user_attrs["variant"]: t for t in study.trials}
    assert len(study.trials) == 5 and set(by_variant) == {"lr=0.3,batch_size=32", "lr=0.3,batch_size=64",
                                                          "lr=0.03,batch_size=32", "lr=0.03,batch_size=64",
                                                          "diverge"}
    grid = by_variant["lr=0.03,batch_size=64"]
    assert grid.params == {"optim.lr": 0.03, "batch_size": 64} and grid.state == optuna.trial.TrialState.COMPLETE
    assert grid.distributions["optim.lr"] == optuna.distributions.CategoricalDistribution([0.3, 0.03])
    assert {k: grid.user_attrs[k] for k in ("seed", "method", "status")} == {"seed": 0, "method": "static",
                                                                          "status": "finished"}
    assert by_variant["diverge"].state == optuna.trial.TrialState.FAIL and by_variant["diverge"].params == {
        "case": "diverge"} and by_variant["diverge"].user_attrs["status"] == "failed"


@pytest.mark.slow  # real servers and a sweep: minutes on 2 cores
def test_tensorboard_event_files_per_trial(watched: dict) -> None:
    results = watched["folder"]
    trials = store.Store(results).trials()
    finished = [t for t in trials if t.status() == "finished"]
    assert len(finished) == 4
    for trial in finished:
        meta = trial.sweep_meta()
        run = trial.file(store.TENSORBOARD) / f"{meta['variant']} seed {meta['seed']}"
        events = event_accumulator.EventAccumulator(str(run))
        events.Reload()
        assert {"val_top1", "train_loss", "lr"} <= set(events.Tags()["scalars"])
        assert [(e.step, round(e.value, 3)) for e in events.Scalars("val_top1")] == [
            (m["epoch"], round(m["val_top1"], 3)) for m in trial.metrics()]
        hparams = event_accumulator.EventAccumulator(str(run / "hparams"))
        hparams.Reload()
        summary = trial.summary()
        assert hparams.Scalars("test_top1")[0].value == pytest.approx(summary["test_top1"], rel=1e-6)
        assert hparams.PluginTagToContent("hparams")  # the hyperparameters, for TensorBoard's HParams view


@pytest.mark.slow  # real servers and a sweep: minutes on 2 cores
def test_mlflow_runs_on_a_real_server(watched: dict) -> None:
    assert watched["runs"], "a trial is an MLflow run while the sweep runs"
    client = mlflow.MlflowClient(watched["uri"])
    experiment = client.get_experiment_by_name("kw-watch").experiment_id
    runs = {run.data.tags["variant"]: run for run in client.search_runs([experiment])}
    assert len(runs) == 5
    run = runs["lr=0.3,batch_size=32"]
    assert run.info.status == "FINISHED" and run.data.tags["status"] == "finished" and run.data.tags["sweep"] == "watch"
    assert run.data.params == {"optim.lr": "0.3", "batch_size": "32", "method": "static", "seed": "0"}
    trial = store.Store(watched["folder"]).trial(run.data.tags["trial_id"])
    assert json.loads(trial.file(store.MLFLOW_RUN).read_text())["run_id"] == run.info.run_id
    history = client.get_metric_history(run.info.run_id, "val_top1")
    assert [(m.step, m.value) for m in history] == [(e["epoch"], e["val_top1"]) for e in trial.metrics()]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {store.SUMMARY, store.CONFIG}
    failed = runs["diverge"]
    assert failed.info.status == "FAILED" and failed.data.tags["status"] == "failed"


@pytest.mark.slow  # real servers and a sweep: minutes on 2 cores
def test_kwlab_status_while_the_sweep_runs(watched: dict) -> None:
    assert watched["status"].returncode == 0, watched["status"].stderr
    status = json.loads(watched["status"].stdout)
    assert status["trials"] == 5 and sum(status["counts"].values()) == 5 and status["counts"]["finished"] >= 1
    assert status["runner"]["pid"] == watched["pid"]
    assert status["best"]["variant"] in {"lr=0.3,batch_size=32", "lr=0.3,batch_size=64", "lr=0.03,batch_size=32",
                                         "lr=0.03,batch_size=64"}
    text = watched["status_text"].stdout
    assert f"runner: pid {watched['pid']}" in text and "best so far: " + status["best"]["variant"] in text
    after = json.loads(kwlab_cli("status", str(watched["folder"]), "--json").stdout)
    assert after["counts"] == {"finished": 4, "stopped": 0, "failed": 1, "running": 0, "pending": 0}
    assert after["runner"] is None and after["time_left_s"] == 0


@pytest.mark.slow  # real servers and a sweep: minutes on 2 cores
def test_report_says_which_setting_mattered(watched: dict) -> None:
    early = watched["report"]
    assert early.returncode == 0, early.stderr
    text = (watched["folder"].parent / "early" / "report.md").read_text()
    assert "too few so far" in text  # the runner was held after the first finished trial, before the fourth
    report = kwlab_cli("report", str(watched["folder"]))
    assert report.returncode == 0, report.stderr
    out = watched["folder"] / "report"
    text = (out / "report.md").read_text()
    assert "## Which setting mattered" in text and "fANOVA" in text and "left out: 1 failed" in text
    assert all((out / f"{stem}.png").is_file() for stem in ("importance", "parallel_coordinates", "slices"))
    importance = pd.read_csv(out / "importance.csv")
    assert sorted(importance["key"]) == ["batch_size", "optim.lr"]
    assert importance["importance"].sum() == pytest.approx(1.0)


@pytest.mark.slow  # real servers and a sweep: minutes on 2 cores
def test_optuna_dashboard_serves_the_study(watched: dict, tmp_path: Path) -> None:
    if shutil.which("optuna-dashboard") is None:
        pytest.skip("optuna-dashboard absent: pip install 'kwlab[dashboard]'")
    port = free_port()
    server = serve(["optuna-dashboard", storage_url(watched["folder"] / store.OPTUNA_DB), "--host", "127.0.0.1", "--port", str(port)],
                   f"http://127.0.0.1:{port}/api/studies", tmp_path / "dashboard.log")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=10) as answer:
            studies = json.loads(answer.read())["study_summaries"]
    finally:
        stop(server)
    assert [s["study_name"] for s in studies] == ["watch"]


def test_an_unreachable_mlflow_server_is_one_line_before_launch(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    spec = write_spec(tmp_path, "nowhere", cases=[{"name": "static", "set": {"kw": None}}])
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.time()
    code = main(["sweep", str(spec), "--results", str(tmp_path), "--mlflow", uri])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and time.time() - started < 60
    assert f"tracking.mlflow.uri: cannot reach the MLflow tracking server at {uri}" in err
    assert not list((tmp_path / "nowhere").glob(f"{store.TRIALS}/*/{store.METRICS}"))
