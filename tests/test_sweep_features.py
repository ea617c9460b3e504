"""Every documented sweep feature used the way a user uses it: `kwlab sweep` on a spec, through Ray, then
`kwlab report` where it shows; assertions on what the user sees (store contents, statuses, exit code, printed lines).

Each test names the failure of an earlier version it guards against.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

import kwlab
import kwlab.results
from kwlab import store
from kwlab.cli import main
from kwlab.tracking.optuna_store import storage_url
from sweep_helpers import TINY, kwlab_cli, start_cli, write_spec


def statuses(folder: Path) -> dict[str, str]:
    """variant/seed -> status, from the store's trials table."""
    trials = kwlab.results.load(folder).trials
    return {f"{row.variant}/{row.seed}": row.status for row in trials.itertuples()}


@pytest.mark.usefixtures("shared_ray")
def test_asha_stops_whole_variants_on_any_metric_with_mixed_value_types(tmp_path: Path) -> None:
    """Before: ASHA-stopped trials were written as failures (exit 1) and retrained on a rerun; `val_loss` printed
    'n/a'; a grid over `kw.sharing: [none, 2]` crashed the results table with a pyarrow traceback."""
    spec = write_spec(
        tmp_path, "asha", base={**TINY, "epochs": 3},
        parameters={"kw.sharing": {"values": ["none", 2]}, "optim.lr": {"values": [0.3, 0.001]}},
        cases=[{"name": "static", "set": {"kw": None}}], baseline="static", seeds=[0, 1],
        metric={"name": "val_loss", "goal": "minimize"},
        early_terminate={"type": "asha", "grace_period": 1, "reduction_factor": 2}, max_concurrent_trials=1)
    first = kwlab_cli("sweep", str(spec), "--results", str(tmp_path))
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "asha"
    trials = kwlab.results.load(folder).trials
    by_variant = trials.groupby("variant")["status"].agg(set)
    assert set(trials["status"]) == {"finished", "stopped"}  # stopped early is not failed
    assert all(len(s) == 1 for s in by_variant)  # a variant's seeds are stopped (or go on) together
    stopped = trials[trials["status"] == "stopped"]
    assert len(stopped) >= 2 and stopped["error"].isna().all()
    assert (stopped["epochs_done"] < 3).all() and (stopped["stopped_epoch"] == stopped["epochs_done"]).all()
    n_stopped = len(stopped)
    assert f"{n_stopped} stopped early, 0 failed" in first.stdout and "val_loss=" in first.stdout
    assert "n/a" not in first.stdout
    # any metric: best follows its direction
    finished = trials[trials["status"] == "finished"].iloc[0]
    epochs = kwlab.results.load(folder).epochs
    losses = epochs.loc[epochs["trial_id"] == finished["trial_id"], "val_loss"]
    assert finished["best_val_loss"] == losses.min() and finished["final_val_loss"] == losses.iloc[-1]
    # typed results: the swept values come back as swept, a string and an int in one column
    sharing = trials.set_index("variant")["kw.sharing"]
    assert set(sharing[sharing.index.str.startswith("sharing=none")]) == {"none"}
    assert [type(v) for v in sharing[sharing.index.str.startswith("sharing=2")]] == [int] * 4
    mtimes = {p: p.stat().st_mtime_ns for p in (folder / store.TRIALS).glob(f"*/{store.METRICS}")}
    again = kwlab_cli("sweep", str(spec), "--results", str(tmp_path))
    assert again.returncode == 0 and "0 of 10 fixed trials to run (10 done earlier)" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # not retrained
    report = kwlab_cli("report", str(folder))
    assert report.returncode == 0, report.stderr
    text = (folder / "report" / "report.md").read_text()
    assert f"{n_stopped} stopped" in text


def test_a_variants_seeds_train_an_epoch_each_in_turn_and_tune_sees_their_mean(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Tune trainable of a variant (what ASHA stops and Optuna judges): its seeds train side by side, and after
    each round Tune gets the mean over the seeds of each seed's best metric so far, in the metric's direction."""
    from ray import tune

    from kwlab.sweep.command import plan_sweep
    from kwlab.sweep.runner import SCORE, Job, describe_trial, prepare, train_variant

    spec = write_spec(tmp_path, "pair", base={**TINY, "epochs": 3}, seeds=[0, 1],
                      cases=[{"name": "static", "set": {"kw": None}}], metric={"name": "val_loss", "goal": "minimize"})
    trials = plan_sweep(str(spec), None, []).trials
    folder = tmp_path / "pair"
    prepare(store.Store(folder), trials, {})
    reports: list[dict] = []
    monkeypatch.setattr(tune, "report", reports.append)
    train_variant({"job": Job((), "val_loss", "minimize", 1,
                              seeds=tuple(describe_trial(t, store.Store(folder)) for t in trials))})
    losses = [[m["val_loss"] for m in store.Store(folder).trial(t.trial_id).metrics()] for t in trials]
    assert [r["epoch"] for r in reports] == [1, 2, 3, 3] and all(r["seeds"] == 2 for r in reports)
    for epoch, report in zip([1, 2, 3], reports, strict=False):  # both seeds have trained `epoch` epochs by then
        assert report[SCORE] == pytest.approx(sum(min(loss[:epoch]) for loss in losses) / 2)
    assert reports[-1].get("final") and reports[-1][SCORE] == reports[-2][SCORE]


@pytest.mark.usefixtures("shared_ray")
def test_bayes_suggests_variants_trained_at_every_seed(bayes_sweep: tuple) -> None:
    """Before: `method: bayes` died on its first trial with `KeyError: 'trial'` in the event callback. OptunaSearch
    samples from the store's optuna.db, and a rerun asks for no suggestion it has made."""
    tmp_path, spec, result = bayes_sweep  # conftest.BAYES through `kwlab sweep`, once for the session
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    trials = kwlab.results.load(tmp_path / "search").trials
    assert len(trials) == 4 and (trials["status"] == "finished").all()
    assert sorted(trials.groupby("variant_id")["seed"].agg(sorted).tolist()) == [[0, 1], [0, 1]]
    assert trials["optim.lr"].between(0.01, 0.2).all() and set(trials["kw.budget"]) <= {1, 2}
    assert (trials["params_total"] > 0).all()  # priced, like a grid's trials
    assert result.stdout.count("finished ") == 2 and "seeds 0,1" in result.stdout
    results = tmp_path / "search"
    study = optuna.load_study(study_name="search", storage=storage_url(results / store.OPTUNA_DB))  # OptunaSearch used the store's db
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for trial in study.trials:  # OptunaSearch's trial is the variant, valued at the mean of its seeds' best epochs
        assert set(trial.params) == {"optim.lr", "kw.budget"} and trial.user_attrs["seeds"] == [0, 1]
        assert trial.user_attrs["method"] == "kw" and trial.user_attrs["status"] == "finished"
        best = [max(e["val_top1"] for e in store.Store(results).trial(t).metrics())
                for t in trial.user_attrs["trial_ids"]]
        assert trial.value == pytest.approx(sum(best) / 2)
    mtimes = {p: p.stat().st_mtime_ns for p in results.glob(f"{store.TRIALS}/*/{store.SUMMARY}")}
    again = kwlab_cli("sweep", str(spec), "--results", str(tmp_path))  # the seeded search replays, trains nothing
    assert again.returncode == 0 and len(kwlab.results.load(results).trials) == 4
    assert "then 0 Optuna suggestions" in again.stdout
    assert len(optuna.load_study(study_name="search", storage=storage_url(results / store.OPTUNA_DB)).trials) == 2
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


@pytest.mark.usefixtures("shared_ray")
def test_a_case_with_its_own_seeds_is_paired_on_the_seeds_both_sides_have(tmp_path: Path) -> None:
    """More seeds where a comparison needs them (`kwlab power`): a case lists its own seeds; the dry run shows them,
    the sweep trains them, a rerun trains nothing, and the report pairs each comparison on the common seeds."""
    spec = write_spec(tmp_path, "more", seeds=[0, 1, 2], baseline="static",
                      cases=[{"name": "static", "set": {"kw": None}, "seeds": [0, 1, 2, 3, 4]},
                             {"name": "kw_2x", "set": {"kw.budget": 2}, "seeds": [1, 2]}, {"name": "kw_1x"}])
    dry = kwlab_cli("sweep", str(spec), "--dry-run", "--results", str(tmp_path))
    assert dry.returncode == 0, dry.stderr
    assert "3 variants x 2-5 seeds = 10 trials" in dry.stdout and "0-4" in dry.stdout and "1,2" in dry.stdout
    result = kwlab_cli("sweep", str(spec), "--results", str(tmp_path))
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "more"
    assert statuses(folder) == {**{f"static/{s}": "finished" for s in range(5)},
                                **{f"kw_2x/{s}": "finished" for s in (1, 2)},
                                **{f"kw_1x/{s}": "finished" for s in (0, 1, 2)}}
    again = kwlab_cli("sweep", str(spec), "--results", str(tmp_path))
    assert again.returncode == 0 and "0 of 10 fixed trials to run (10 done earlier)" in again.stdout
    assert main(["report", str(folder)]) == 0
    summary = pd.read_csv(folder / "report" / "summary.csv").set_index("variant")
    assert summary.loc["kw_1x", "n_pairs"] == 3 and summary.loc["kw_2x", "n_pairs"] == 2
    assert "Missing" not in (folder / "report" / "report.md").read_text()


@pytest.mark.usefixtures("shared_ray")
def test_one_runner_per_store_and_ctrl_c_keeps_what_finished(tmp_path: Path) -> None:
    """Before: two runners on one store trained the same trials at once; Ctrl-C printed '6 trials finished' when 2
    had."""
    spec = write_spec(tmp_path, "long", base={**TINY, "epochs": 2}, parameters={"kw.budget": {"values": [1, 2, 3]}},
                      cases=[{"name": "static", "set": {"kw": None}}], seeds=[0, 1], max_concurrent_trials=1)
    folder = tmp_path / "long"
    runner = start_cli("sweep", str(spec), "--results", str(tmp_path))
    deadline = time.time() + 300
    while not list(folder.glob(f"{store.TRIALS}/*/{store.SUMMARY}")) and time.time() < deadline:
        time.sleep(0.2)
    holder = json.loads((folder / store.LOCK).read_text())
    assert holder["pid"] == runner.pid and holder["host"]
    os.kill(runner.pid, signal.SIGSTOP)  # hold the first runner mid-sweep while a second one tries the store
    try:
        live = statuses(folder)  # the tables as they stand: the trials changed since their rows are read again
        second = kwlab_cli("sweep", str(spec), "--results", str(tmp_path))
    finally:
        os.kill(runner.pid, signal.SIGCONT)
    assert len(live) == 8 and "finished" in live.values()
    assert set(live.values()) <= {"finished", "running", "pending"}
    assert second.returncode == 1 and second.stderr.count("\n") == 1
    assert f"pid {runner.pid}" in second.stderr and "another kwlab runner" in second.stderr
    os.killpg(runner.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole process group
    out, err = runner.communicate(timeout=120)
    assert runner.returncode == 130, err
    trials = kwlab.results.load(folder).trials
    done = int((trials["status"] == "finished").sum())
    assert 1 <= done < 8
    assert f"{done} of 8 trials finished" in err and "resume with: kwlab sweep" in err
    assert not (folder / store.LOCK).exists()
    resumed = kwlab_cli("sweep", str(spec), "--results", str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr
    store_after = kwlab.results.load(folder)
    assert (store_after.trials["status"] == "finished").all()
    assert store_after.epochs.groupby("trial_id")["epoch"].agg(list).map(lambda e: e == [1, 2]).all()  # no duplicate


@pytest.mark.usefixtures("shared_ray")
def test_a_trial_that_cannot_be_placed_is_refused_not_waited_for(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Before: on a cluster without the GPUs a spec asked for, Ray waited forever."""
    spec = write_spec(tmp_path, "gpu", cases=[{"name": "static", "set": {"kw": None}}])
    code = main(["sweep", str(spec), "--results", str(tmp_path), "--set", "resources.gpu=1"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == "kwlab sweep: error: resources: each trial asks for 1 GPU; the cluster has 0"
    assert not list((tmp_path / "gpu").glob(f"{store.TRIALS}/*/{store.METRICS}"))


@pytest.mark.parametrize(("sets", "message"), [
    (["runtime.device=cuda"], "resources.gpu: the trials ask for runtime.device 'cuda' but resources.gpu is 0"),
    (["metric.name=val_acc"], "bad.yaml: metric.name: 'val_acc' is not recorded every epoch; use one of "
                              "train_loss, train_top1, val_loss, val_top1, val_top5"),
    (["metric.name=test_top1"], "test metrics are measured once, at the end, and never pick an epoch or steer a sweep"),
    (["metric.name=val_loss", "metric.goal=maximize"], "bad.yaml: metric.goal: val_loss is to minimize, not to maximize"),
    (["model.name=resnet18"], "model.kwargs.width: timm model 'resnet18' takes no argument 'width'; remove it"),
    (["resources.workers=0"], "resources.workers: expected an integer >= 1, got 0"),
])
def test_a_spec_the_trials_cannot_honour_is_one_line_before_launch(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                    sets: list[str], message: str) -> None:
    """Before: any metric.name was accepted; a GPU profile gave trials 0 GPUs; the imagenet profile passed
    `model.kwargs.width` to timm's ResNet, which failed inside every trial."""
    spec = write_spec(tmp_path, "bad", cases=[{"name": "static", "set": {"kw": None}}])
    code = main(["sweep", str(spec), "--results", str(tmp_path), *(a for s in sets for a in ("--set", s))])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err and str(spec) in err
    assert not (tmp_path / "bad").exists()


def gpu_profiles() -> list[tuple[str, str]]:
    """(spec, profile) of every shipped profile that puts its trials on CUDA."""
    import yaml

    root = Path(__file__).parents[1]
    return [(str(path.relative_to(root)), name) for path in sorted((root / "sweeps").rglob("*.yaml"))
            for name, profile in (yaml.safe_load(path.read_text()).get("profiles") or {}).items()
            if (profile or {}).get("runtime.device") == "cuda"]


@pytest.mark.parametrize(("spec", "name"), gpu_profiles())
def test_gpu_profiles_ask_for_a_gpu(spec: str, name: str) -> None:
    """Every shipped GPU profile gives each trial a GPU (per worker) and builds its model (no stray model.kwargs)."""
    from kwlab.sweep.spec import resolve_spec
    from kwlab.train import TrainConfig

    resolved = resolve_spec(spec, name, [])
    assert resolved.spec.resources.gpu == 1 and resolved.config_overrides["runtime.device"] == "cuda"
    if name.startswith("imagenet"):
        assert resolved.config_overrides["model.kwargs"] == {}
    if name == "imagenet_8gpu":  # the README's multi-GPU example: 8 workers of one GPU, BatchNorm over the batch
        assert resolved.spec.resources.workers == 8 and resolved.config_overrides["runtime.sync_bn"] is True
        cfg = TrainConfig.from_dict({"optim": {"lr": 0.004, "reference_batch": 4096}, "batch_size": 1024})
        assert cfg.batch_size % resolved.spec.resources.workers == 0


@pytest.mark.slow
def test_a_gpu_trial_on_a_cluster_with_a_logical_gpu(tmp_path: Path) -> None:
    """A Ray head started with one (logical) GPU on this CPU machine places a GPU trial, which then fails with
    kwlab's one-line error, recorded in the store; a trial asking for two GPUs is refused up front; two trials of
    half a GPU each are both placed."""
    from cluster_helpers import free_port, start_head, stop_head

    env = {"RAY_AUTH_MODE": "disabled"}  # a loopback-only test cluster needs no token
    port = free_port()
    head = start_head(port, "--num-gpus=1", "--node-ip-address=127.0.0.1", env={**os.environ, **env})
    try:
        spec = write_spec(tmp_path, "gpu", cases=[{"name": "static", "set": {"kw": None}}])
        address = ["--address", f"127.0.0.1:{port}"]
        gpu = kwlab_cli("sweep", str(spec), "--results", str(tmp_path), *address, "--set", "resources.gpu=1",
                        "--set", "runtime.device=cuda", env=env)
        assert gpu.returncode == 1
        trials = kwlab.results.load(tmp_path / "gpu").trials
        assert trials["status"].tolist() == ["failed"]
        assert trials["error"].item() == "KWLabError: runtime.device: 'cuda' was asked for but torch sees no CUDA device"
        two = kwlab_cli("sweep", str(spec), "--results", str(tmp_path / "two"), *address, "--set", "resources.gpu=2",
                        "--set", "runtime.device=cuda", env=env)
        assert two.returncode == 2 and "each trial asks for 2 GPUs; the cluster has 1" in two.stderr
        # a fraction of a GPU: two trials share the one GPU, both placed (each then fails for want of CUDA)
        half = kwlab_cli("sweep", str(spec), "--results", str(tmp_path / "half"), *address, "--set",
                         "resources.gpu=0.5", "--set", "runtime.device=cuda", "--set", "seeds=[0, 1]", env=env)
        assert half.returncode == 1 and "each trial asks for" not in half.stderr
        shared = kwlab.results.load(tmp_path / "half" / "gpu").trials
        assert shared["status"].tolist() == ["failed", "failed"]
        assert shared["error"].str.contains("torch sees no CUDA device").all()
    finally:
        stop_head(head)


PLUGIN = '''
"""A user's own attention function, dataset and method, registered the kwlab way."""
import torch
from kwlab import register_attention
from kwlab.data import DataSpec, load, register
from kwlab.methods import register_method
from kwlab.methods.static import Static


@register_attention("tanh_gate")
def tanh_gate(logits: torch.Tensor) -> torch.Tensor:
    return torch.tanh(logits) / logits.shape[-1]


@register("few_digits")
def few_digits(spec: DataSpec, seed: int):
    return load(DataSpec(name="digits", train_size=300), seed)


@register_method("plain")
class Plain(Static):
    """The static model under a name of the user's."""
'''


MODEL_PLUGIN = '''
"""A user's model, registered with timm, in a module imported by name (from PYTHONPATH)."""
from timm.models import create_model, register_model


@register_model
def plugin_resnet8(pretrained: bool = False, **kwargs):
    return create_model("cifar_resnet8", **kwargs)
'''


def test_feature_matrix_random_zip_cases_constraints_fixed_profile_set_and_plugins(tmp_path: Path) -> None:
    """One sweep over the spec keys a study combines: a random search over a registered plugin attention function and
    zipped cell ratios, on a plugin dataset, with a plugin method among the cases, a constraint, fixed values (the
    measured path choice among them), a profile that sets spec keys, --set on the spec and on the config. Before: a
    plugin's attention function never reached the Ray workers."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "gate.py").write_text(PLUGIN)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "kwlab_test_models.py").write_text(MODEL_PLUGIN)
    spec = write_spec(
        tmp_path, "matrix", imports=["plugins/gate.py", "kwlab_test_models"], method="random", num_samples=4,
        sampler_seed=3,
        parameters={"kw.attention": {"values": ["caf", "tanh_gate"]}, "kw.cell_in_ratio": {"values": [1, 0.5]},
                    "kw.cell_out_ratio": {"values": [1, 0.5]}},
        zip=[["kw.cell_in_ratio", "kw.cell_out_ratio"]],
        cases=[{"name": "static", "set": {"kw": None}}, {"name": "huge", "set": {"kw.budget": 16}},
               {"name": "plain", "set": {"method": "plain", "model.name": "plugin_resnet8"}}],
        baseline="static", constraints=["params < 800_000"],
        fixed={"optim.label_smoothing": 0.0, "batch_size": 32, "data.name": "few_digits", "data.train_size": None,
               "runtime.paths": "measured"},
        profiles={"default": {}, "quick": {"seeds": [3], "max_concurrent_trials": 1, "optim.lr": 0.2}})
    result = kwlab_cli("sweep", str(spec), "--profile", "quick", "--set", "optim.lr=0.05", "--set",
                       "failure.max_retries=0", "--results", str(tmp_path),
                       env={"PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])})
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "matrix-quick"  # a profile other than default gets its own results folder
    trials = kwlab.results.load(folder).trials
    assert (trials["status"] == "finished").all() and set(trials["seed"]) == {3}
    assert "huge" not in set(trials["variant"])  # priced above the cap: never trained
    assert len(trials) == 6 and set(trials["kw.attention"].dropna()) == {"caf", "tanh_gate"}
    assert trials.set_index("variant").loc["plain", "method"] == "plain"  # the plugin method reached the workers
    plain = store.Store(folder).trial(trials.set_index("variant").loc["plain", "trial_id"]).config()
    assert plain["model"]["name"] == "plugin_resnet8"  # and the model of a module imported by name
    assert (trials["train_images"] == 300).all()  # and so did the plugin dataset
    kw_rows = trials[~trials["variant"].isin(["static", "plain"])]
    assert (kw_rows["kw.cell_in_ratio"] == kw_rows["kw.cell_out_ratio"]).all()  # zipped: lock-step
    for trial in store.Store(folder).trials():
        config = trial.config()
        assert config["optim"]["label_smoothing"] == 0.0 and config["batch_size"] == 32  # fixed
        assert config["optim"]["lr"] == 0.05  # --set over the profile over the base
        assert config["runtime"]["paths"] == "measured"
        layers = trial.summary()["paths"]  # the paths the 8 KW layers of cifar_resnet8 took in training
        kw_trial = trial.sweep_meta()["variant"] not in ("static", "plain")
        assert (sum(layers.values()) == 8 and set(layers) <= {"batched", "mixed", "grouped", "shared"}) if kw_trial \
            else layers == {}
    attention = {}
    for row in kw_rows.itertuples():
        arrays = dict(__import__("numpy").load(store.Store(folder).trial(row.trial_id).file(store.ATTENTION)))
        attention[(row.variant.split(",attention=")[0], row.variant.split("attention=")[1])] = arrays
    for ratios in {key[0] for key in attention}:
        caf, gate = attention[(ratios, "caf")], attention[(ratios, "tanh_gate")]
        alpha = next(k for k in caf if k.endswith("/alpha"))
        assert caf[alpha].shape == gate[alpha].shape and not (caf[alpha] == gate[alpha]).all()
    manifest = json.loads((folder / store.MANIFEST).read_text())
    assert manifest["profile"] == "quick" and "--set optim.lr=0.05" in manifest["command"]
    assert manifest["versions"]["kwlab"] == kwlab.__version__ and manifest["hardware"]["cpus"] >= 1
    assert set(manifest["git"]) == {"commit", "dirty"}
    resolved = store.Store(folder).spec()  # spec.yaml: the spec as the profile and --set made it
    assert resolved["seeds"] == [3] and resolved["max_concurrent_trials"] == 1 and resolved["failure"]["max_retries"] == 0
    report = kwlab_cli("report", str(folder))
    assert report.returncode == 0, report.stderr
    assert "tanh_gate" in (folder / "report" / "report.md").read_text()


def test_a_plugin_that_fails_to_import_is_one_line_before_launch(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "broken.py").write_text("import not_a_module_anywhere\n")
    spec = write_spec(tmp_path, "plugin", imports=["broken.py"], cases=[{"name": "static", "set": {"kw": None}}])
    assert main(["sweep", str(spec), "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "imports: cannot import" in err and "broken.py" in err
    assert "ModuleNotFoundError: No module named 'not_a_module_anywhere'" in err
    assert not (tmp_path / "plugin").exists()
