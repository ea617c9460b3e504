"""Each tracking integration on a results store written by hand (the default suite; tests/test_tracking.py drives
them all through one `kwlab sweep` with real servers): the Optuna mirror and its states, TensorBoard event files from
a trial, MLflow runs through the batch API and their resume, parameter importance in the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kwlab import store
from kwlab.sweep.runner import tracking
from kwlab.sweep.spec import SweepSpec, parse_spec
from kwlab.tracking.optuna_store import OptunaMirror, storage_url
from kwlab.tracking.trackers import Trackers
from sweep_helpers import TINY

optuna = pytest.importorskip("optuna")

SPEC = {"name": "mirror", "parameters": {"optim.lr": {"values": [0.1, 0.01]}, "kw.budget": {"values": [1, 2]}},
        "cases": [{"name": "static", "set": {"kw": None}}]}


def make_trial(results: store.Store, trial_id: str, variant: str, parameters: dict[str, Any], top1: list[float],
               status: str, seed: int = 0, test_top1: float | None = None) -> store.TrialDir:
    """A trial directory as a sweep leaves it: sweep.json, config, epochs, and the file of its status."""
    trial = results.trial(trial_id)
    trial.path.mkdir(parents=True)
    trial.write_sweep_meta({"trial_id": trial_id, "variant_id": f"v-{variant}", "variant": variant,
                            "is_baseline": False, "seed": seed, "parameters": parameters, "price": {}})
    if status == "pending":
        return trial
    trial.write_config({"method": "kw", "epochs": 3, "seed": seed})
    trial.write_metrics([{"epoch": i, "val_top1": v, "val_loss": 1 / v, "epoch_time_s": 1.0}
                         for i, v in enumerate(top1, start=1)])
    if status == "finished":
        trial.write_summary({"status": "finished", "method": "kw", "seed": seed, "epochs": len(top1),
                             "wall_time_s": 3.0, "test_top1": max(top1) if test_top1 is None else test_top1,
                             **store.summarize_epochs(trial.metrics())})
    elif status == "stopped":
        trial.write_stopped(len(top1), "stopped early by ASHA")
    elif status == "failed":
        trial.write_error("KWLabError: non-finite loss at epoch 2 step 1")
    return trial


def mirror(spec: SweepSpec, folder: Path) -> OptunaMirror:
    """The Optuna mirror a runner keeps for `spec` in the store at `folder`."""
    return Trackers(tracking(spec, store.Store(folder)), store.Store(folder)).optuna


def db(folder: Path) -> str:
    """The storage URL of the optuna.db of the store at `folder`."""
    return storage_url(folder / store.OPTUNA_DB)


def test_the_optuna_mirror_follows_the_store_and_a_resume(tmp_path: Path) -> None:
    spec = parse_spec(SPEC, "spec")
    results = store.Store(tmp_path)
    grid = {"optim.lr": 0.1, "kw.budget": 2}
    make_trial(results, "done", "lr=0.1,budget=2", grid, [50.0, 60.0, 55.0], "finished")
    make_trial(results, "asha", "lr=0.01,budget=1", {"optim.lr": 0.01, "kw.budget": 1}, [40.0], "stopped")
    failed = make_trial(results, "broke", "static", {"kw": None}, [30.0], "failed")
    running = make_trial(results, "going", "lr=0.01,budget=2", {"optim.lr": 0.01, "kw.budget": 2}, [20.0, 25.0],
                         "running")
    make_trial(results, "later", "lr=0.1,budget=1", {"optim.lr": 0.1, "kw.budget": 1}, [], "pending")
    for _ in range(2):  # a second runner on the same store (a resume) changes nothing
        optuna_mirror = mirror(spec, tmp_path)
        for record in results.records():
            optuna_mirror.sync(record)
    study = optuna.load_study(study_name="mirror", storage=db(tmp_path))
    by_id = {t.user_attrs["trial_id"]: t for t in study.trials}
    assert len(study.trials) == 4 and set(by_id) == {"done", "asha", "broke", "going"}  # pending: not yet
    done = by_id["done"]
    assert (done.state, done.value, done.params) == (optuna.trial.TrialState.COMPLETE, 60.0, grid)
    assert done.intermediate_values == {1: 50.0, 2: 60.0, 3: 55.0}
    assert done.distributions["kw.budget"] == optuna.distributions.CategoricalDistribution([1, 2])
    assert {k: done.user_attrs[k] for k in ("variant", "variant_id", "seed", "method", "status")} == {
        "variant": "lr=0.1,budget=2", "variant_id": "v-lr=0.1,budget=2", "seed": 0, "method": "kw",
        "status": "finished"}
    assert by_id["asha"].state == optuna.trial.TrialState.PRUNED and by_id["asha"].user_attrs["status"] == "stopped"
    assert by_id["broke"].state == optuna.trial.TrialState.FAIL and by_id["broke"].params == {"case": "static"}
    assert by_id["going"].state == optuna.trial.TrialState.RUNNING
    # the running trial resumes and finishes; the failed one runs again: a new Optuna trial (finished ones are final)
    running.write_metrics([*running.metrics(), {"epoch": 3, "val_top1": 30.0, "val_loss": 0.1}])
    running.write_summary({"status": "finished", "method": "kw"})
    failed.clear_outcome()
    optuna_mirror = mirror(spec, tmp_path)
    for record in results.records():
        optuna_mirror.sync(record)
    trials = optuna.load_study(study_name="mirror", storage=db(tmp_path)).trials
    going = [t for t in trials if t.user_attrs["trial_id"] == "going"]
    assert len(going) == 1 and going[0].state == optuna.trial.TrialState.COMPLETE and going[0].value == 30.0
    assert going[0].intermediate_values == {1: 20.0, 2: 25.0, 3: 30.0}
    broke = [t for t in trials if t.user_attrs["trial_id"] == "broke"]
    assert [(t.state, t.user_attrs["attempt"]) for t in broke] == [(optuna.trial.TrialState.FAIL, 1),
                                                                   (optuna.trial.TrialState.RUNNING, 2)]


def test_a_trial_writes_tensorboard_events_per_epoch_and_its_hparams(tmp_path: Path) -> None:
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                            reason="TensorBoard absent: pip install tensorboard")
    from kwlab.train import TrainConfig, run

    trial = store.TrialDir(tmp_path / "trial")
    trial.path.mkdir()
    trial.write_sweep_meta({"trial_id": "trial", "variant_id": "v", "variant": "budget=2", "is_baseline": False,
                            "seed": 1, "parameters": {"kw.budget": 2}, "price": {}})
    config = TrainConfig.from_dict({**TINY, "epochs": 2, "seed": 1, "kw": {"budget": 2}})
    epochs = list(run(config, trial.path))
    board = trial.file(store.TENSORBOARD) / "budget=2 seed 1"  # the run's name in TensorBoard
    events = event_accumulator.EventAccumulator(str(board))
    events.Reload()
    assert {"train_loss", "val_top1", "val_loss", "lr", "tau", "epoch_time_s"} <= set(events.Tags()["scalars"])
    scalars = events.Scalars("val_top1")  # float32 in the event file
    assert [e.step for e in scalars] == [1, 2]
    assert [e.value for e in scalars] == pytest.approx([m["val_top1"] for m in epochs], rel=1e-6)
    hparams = event_accumulator.EventAccumulator(str(board / "hparams"))
    hparams.Reload()
    assert hparams.Scalars("test_top1")[0].value == pytest.approx(trial.summary()["test_top1"])
    assert hparams.PluginTagToContent("hparams")


def test_mlflow_logs_each_trial_in_batches_and_a_resumed_trial_continues_its_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mlflow = pytest.importorskip("mlflow", reason="MLflow absent: pip install 'kwlab[mlflow]'")
    from kwlab.tracking.mlflow import MLflowTracker

    monkeypatch.chdir(tmp_path)  # a local tracking store puts its artifacts under the working directory
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    results = store.Store(tmp_path / "sweep")
    done = make_trial(results, "done", "lr=0.1,budget=2", {"optim.lr": 0.1, "kw.budget": 2}, [50.0, 60.0], "finished")
    going = make_trial(results, "going", "lr=0.01,budget=2", {"optim.lr": 0.01, "kw.budget": 2}, [20.0], "running")
    tracker = MLflowTracker(uri, "watch", "mirror", "val_top1")
    batches = []
    real = tracker.client.log_batch
    monkeypatch.setattr(tracker.client, "log_batch", lambda *a, **k: batches.append(k) or real(*a, **k))
    monkeypatch.setattr(tracker.client, "log_metric", None)  # never one request per metric
    for trial in (done, going, done):
        tracker.sync(trial.record(), trial)
    client = mlflow.MlflowClient(uri)
    runs = {run.data.tags["trial_id"]: run for run in client.search_runs(
        [client.get_experiment_by_name("watch").experiment_id])}
    run = runs["done"]
    assert run.info.status == "FINISHED" and run.info.run_name == "lr=0.1,budget=2 seed 0"
    assert run.data.params == {"optim.lr": "0.1", "kw.budget": "2", "method": "kw", "seed": "0"}
    assert {k: run.data.tags[k] for k in ("sweep", "variant", "status")} == {
        "sweep": "mirror", "variant": "lr=0.1,budget=2", "status": "finished"}
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_top1")] == [(1, 50.0),
                                                                                                   (2, 60.0)]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {store.SUMMARY, store.CONFIG}
    assert sum("metrics" in batch for batch in batches) == 2  # one request per trial's new epochs
    assert runs["going"].info.status == "RUNNING"
    # another runner (a resume) continues the running trial's own run, from the epoch the server holds
    going.write_metrics([*going.metrics(), {"epoch": 2, "val_top1": 30.0}])
    going.write_summary({"status": "finished", "method": "kw"})
    MLflowTracker(uri, "watch", "mirror", "val_top1").sync(going.record(), going)
    run_id = json.loads(going.file(store.MLFLOW_RUN).read_text())["run_id"]
    assert run_id == runs["going"].info.run_id and client.get_run(run_id).info.status == "FINISHED"
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "val_top1")] == [(1, 20.0), (2, 30.0)]


def write_store_spec(results: store.Store, parameters: dict[str, Any]) -> None:
    """spec.yaml as `kwlab sweep` writes it (the model dump: every field of a parameter, unset ones null)."""
    full = {key: {"value": None, "values": None, "distribution": None, "min": None, "max": None, "q": None,
                  "mu": None, "sigma": None, **p} for key, p in parameters.items()}
    results.write_spec({"name": "grid", "parameters": full, "metric": {"name": "val_top1", "goal": "maximize"}})


def test_report_ranks_the_swept_keys_and_counts_what_it_left_out(tmp_path: Path) -> None:
    from analysis.report import write_report

    results = store.Store(tmp_path / "grid")
    write_store_spec(results, {"optim.lr": {"values": [0.1, 0.01]}, "kw.budget": {"values": [1, 2]}})
    for lr in (0.1, 0.01):
        for budget in (1, 2):
            for seed in (0, 1, 2):  # the metric follows lr (20 points), hardly the budget (0.5), plus seed noise
                top1 = 60 + 20 * (lr == 0.1) + 0.5 * budget + 0.2 * seed
                make_trial(results, f"t{lr}-{budget}-{seed}", f"lr={lr},budget={budget}",
                           {"optim.lr": lr, "kw.budget": budget}, [top1], "finished", seed=seed)
    make_trial(results, "nan", "lr=0.1,budget=1", {"optim.lr": 0.1, "kw.budget": 1}, [50.0], "finished", seed=3,
               test_top1=float("nan"))
    make_trial(results, "broke", "lr=0.1,budget=2", {"optim.lr": 0.1, "kw.budget": 2}, [10.0], "failed", seed=3)
    out = write_report([results.path]).parent
    text = (out / "report.md").read_text()
    assert "## Which setting mattered" in text and "FanovaImportanceEvaluator" in text
    assert "12 finished trials (one per seed; left out: 1 failed, 1 NaN test_top1)" in text
    importance = pd.read_csv(out / "importance.csv").set_index("key")["importance"]
    assert importance["optim.lr"] > 0.9 > importance["kw.budget"]
    assert all((out / f"{stem}.{kind}").is_file() for stem in ("importance", "parallel_coordinates", "slices")
               for kind in ("png", "pdf"))


def test_report_says_when_there_are_too_few_trials_for_importance(tmp_path: Path) -> None:
    from analysis.report import write_report

    results = store.Store(tmp_path / "grid")
    write_store_spec(results, {"optim.lr": {"values": [0.1, 0.01]}, "kw.budget": {"values": [1, 2]}})
    make_trial(results, "a", "lr=0.1,budget=1", {"optim.lr": 0.1, "kw.budget": 1}, [70.0], "finished")
    make_trial(results, "b", "lr=0.01,budget=2", {"optim.lr": 0.01, "kw.budget": 2}, [60.0], "finished")
    make_trial(results, "c", "lr=0.01,budget=1", {"optim.lr": 0.01, "kw.budget": 1}, [10.0], "running")
    out = write_report([results.path]).parent
    text = (out / "report.md").read_text()
    assert ("No parameter importance of lr, budget yet: it uses the finished trials with a finite test top-1 (%), "
            "and this sweep has 2 finished trials (one per seed; left out: 1 running): too few so far (it needs at "
            "least 4)." in text)
    assert not (out / "importance.png").exists() and not (out / "parallel_coordinates.png").exists()


def test_a_bayes_rerun_asks_only_for_new_suggestions_and_again_for_broken_ones(tmp_path: Path) -> None:
    from kwlab.sweep.space import optuna_distributions
    from kwlab.tracking.optuna_store import RETRY_OF

    spec = parse_spec({"name": "search", "method": "bayes", "num_samples": 4, "parameters": {
        "optim.lr": {"distribution": "log_uniform_values", "min": 0.01, "max": 0.2}}}, "spec")
    search = mirror(spec, tmp_path)
    space = optuna_distributions(spec.parameters)
    states = optuna.trial.TrialState
    for lr, state in ((0.02, states.COMPLETE), (0.05, states.FAIL), (0.1, states.RUNNING)):  # a runner killed
        search.study.add_trial(optuna.trial.create_trial(state=state, params={"optim.lr": lr}, distributions=space,
                                                         value=70.0 if state == states.COMPLETE else None))
    assert search.suggestions_to_run(4) == 3  # one not made yet, two again
    trials = search.study.trials
    assert trials[2].state == states.FAIL  # its runner is gone: this runner holds the store's lock
    assert [t.state for t in trials[3:]] == [states.WAITING] * 2
    assert mirror(spec, tmp_path).suggestions_to_run(4) == 3 and len(search.study.trials) == 5  # not twice
    asked = [search.study.ask(space) for _ in range(3)]  # what OptunaSearch does: the enqueued points come first
    assert [(t.params, t.user_attrs.get(RETRY_OF)) for t in asked[:2]] == [({"optim.lr": 0.05}, 1),
                                                                           ({"optim.lr": 0.1}, 2)]
    assert RETRY_OF not in asked[2].user_attrs and len(search.study.trials) == 6


def test_a_tracker_that_fails_mid_sweep_is_one_line_and_the_sweep_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow", reason="MLflow absent: pip install 'kwlab[mlflow]'")
    monkeypatch.chdir(tmp_path)
    spec = parse_spec({**SPEC, "tracking": {"mlflow": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}}}, "spec")
    results = store.Store(tmp_path / "sweep")
    trials = [make_trial(results, f"t{i}", "lr=0.1,budget=2", {"optim.lr": 0.1, "kw.budget": 2}, [50.0], "running",
                         seed=i) for i in range(2)]
    trackers = Trackers(tracking(spec, results), results)
    said: list[str] = []
    trackers.say = said.append

    def gone(record: store.TrialRecord, trial: store.TrialDir) -> None:
        raise ConnectionError("HTTPConnectionPool(host='127.0.0.1', port=5000): Max retries exceeded\nmore")

    monkeypatch.setattr(trackers.mlflow, "sync", gone)
    records = [trial.record() for trial in trials]
    trackers.sync(records)  # the server went away mid-sweep: said once, never raised
    trackers.sync(records)
    assert len(said) == 1 and said[0].startswith("MLflow (sqlite:///") and "ConnectionError: HTTPConnectionPool" \
        in said[0] and "the sweep goes on" in said[0] and "\n" not in said[0]
    study = optuna.load_study(study_name="mirror", storage=db(results.path))
    assert len(study.trials) == 2  # the other trackers still follow the store
