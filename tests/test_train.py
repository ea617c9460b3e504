"""The trial recipe: seeded determinism, exact resume, the trial-directory files, failure modes and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import kwlab
from kwlab import cli
from kwlab.errors import KWLabError
from kwlab.methods.kw.attention import KWAttention
from kwlab.train import TrainConfig, load_config, run
from kwlab.train.config import OptimConfig
from kwlab.train.optim import build_optimizer, build_scheduler, param_groups, scaled_lr
from kwlab import store

TIMING = ("epoch_time_s", "images_per_s", "peak_memory_mb")
METRIC_KEYS = {"epoch", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr", "tau", *TIMING}


def read_metrics(trial: Path) -> list[dict]:
    return store.TrialDir(trial).metrics()
DEFAULT_CONFIG = Path(__file__).parents[1] / "configs" / "default.yaml"


def tiny(**changes: object) -> TrainConfig:
    """A seconds-long trial: 8x8 one-channel synthetic images, ResNet-8 at half width, KW 1x."""
    tree = {
        "method": "kw", "model": {"name": "cifar_resnet8", "kwargs": {"width": 0.5}},
        "data": {"name": "synthetic", "shape": [1, 8, 8], "length": 96, "num_classes": 4},
        "optim": {"lr": 0.05, "warmup_epochs": 0.5},
        "runtime": {"device": "cpu", "threads": 1},
        "epochs": 3, "batch_size": 32, "eval_batch_size": 16,
    }
    tree.update(changes)
    return TrainConfig.from_dict(tree)



def exact(history: list[dict]) -> list[dict]:
    """The metrics a seeded CPU run must reproduce bit for bit (timings excluded)."""
    return [{k: v for k, v in m.items() if k not in TIMING} for m in history]


@pytest.fixture(scope="module")
def kw_trial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """An uninterrupted 3-epoch KW trial in its own directory."""
    trial = tmp_path_factory.mktemp("kw_trial")
    return trial, list(run(tiny(), trial))


def test_same_seed_same_metrics_other_seed_differs(kw_trial: tuple[Path, list[dict]]) -> None:
    _, history = kw_trial
    assert exact(list(run(tiny()))) == exact(history)
    assert exact(list(run(tiny(seed=1)))) != exact(history)


def test_resume_after_a_kill_ends_like_an_uninterrupted_run(
    kw_trial: tuple[Path, list[dict]], tmp_path: Path
) -> None:
    _, history = kw_trial
    first = run(tiny(), tmp_path)
    assert next(first)["epoch"] == 1
    first.close()  # the consumer stops after epoch 1, as a killed process would
    assert len(read_metrics(tmp_path)) == 1 and not (tmp_path / store.SUMMARY).exists()
    rest = list(run(tiny(), tmp_path))
    assert [m["epoch"] for m in rest] == [2, 3]
    assert exact(rest) == exact(history[1:])
    assert exact(read_metrics(tmp_path)) == exact(history)
    assert list(run(tiny(), tmp_path)) == []  # a finished trial yields nothing more
    assert not (tmp_path / store.CHECKPOINT).exists()  # a finished trial keeps best.pt, not its resume state
    with pytest.raises(KWLabError, match=r"holds a finished trial of a different config \(optim\.lr: "):
        next(run(tiny(optim={"lr": 0.01}), tmp_path))
    kept = list(run(tiny(), tmp_path / "kept", keep=("best", "last")))  # what a sweep's `keep: [best, last]` asks
    assert len(kept) == 3 and (tmp_path / "kept" / store.CHECKPOINT).is_file()
    interrupted = run(tiny(), tmp_path / "interrupted")
    next(interrupted)
    interrupted.close()
    with pytest.raises(KWLabError, match=r"checkpoint\.pt: holds a trial of a different config \(optim\.lr: "):
        next(run(tiny(optim={"lr": 0.01}), tmp_path / "interrupted"))


def test_trial_directory_files(kw_trial: tuple[Path, list[dict]]) -> None:
    trial, history = kw_trial
    assert {p.name for p in trial.iterdir()} == {store.CONFIG, store.METRICS, store.SUMMARY, store.ATTENTION,
                                                 store.BEST, store.TENSORBOARD}
    assert load_config(trial / store.CONFIG) == tiny()
    recorded = read_metrics(trial)
    assert [set(m) for m in recorded] == [METRIC_KEYS] * 3 and recorded == json.loads(json.dumps(history))
    assert recorded[-1]["tau"] == 0.0  # tau reaches 0 at 30% of training (3 of 9 steps: the first epoch's last)
    summary = store.TrialDir(trial).summary()
    assert set(store.SUMMARY_KEYS) <= set(summary) and summary["status"] == "finished" and summary["epochs"] == 3
    for metric in ("val_top1", "val_top5", "train_top1"):  # best follows the metric's direction
        values = [m[metric] for m in history]
        assert summary[f"best_{metric}"] == max(values) and summary[f"final_{metric}"] == values[-1]
        assert summary[f"best_{metric}_epoch"] == 1 + values.index(max(values))
    for metric in ("val_loss", "train_loss"):
        assert summary[f"best_{metric}"] == min(m[metric] for m in history)
    assert set(summary["versions"]) == {"python", "torch", "timm", "kwlab"}
    assert set(summary["git"]) == {"commit", "dirty"}
    assert summary["method"] == "kw" and summary["train_images"] + summary["val_images"] == 96

    model = kwlab.create_model("cifar_resnet8", kw={}, num_classes=4, in_chans=1, width=0.5)
    plan = model.kw_plan
    counts = [summary[f"params_{part}"] for part in ("total", "warehouse", "attention", "other")]
    assert counts == [plan.params, plan.warehouse_params, plan.attention_params, plan.other_params]
    assert plan.params == sum(p.numel() for p in model.parameters())
    priced = kwlab.price_model("cifar_resnet8", "kw", {}, (1, 8, 8), num_classes=4, in_chans=1, width=0.5)
    assert summary["macs_per_image"] == priced.macs > 0

    arrays = np.load(trial / store.ATTENTION)
    assert set(arrays.files) == {f"{w.name}/{k}" for w in plan.warehouses for k in ("alpha", "layer", "mixture")}
    for w in plan.warehouses:
        rows = sum(w.mixtures)
        assert arrays[f"{w.name}/alpha"].shape == (rows, w.cells) and arrays[f"{w.name}/alpha"].dtype == np.float32
        assert list(arrays[f"{w.name}/layer"]) == [name for name, m in zip(w.layers, w.mixtures) for _ in range(m)]
        assert list(arrays[f"{w.name}/mixture"]) == [i for m in w.mixtures for i in range(m)]
        assert np.isfinite(arrays[f"{w.name}/alpha"]).all()


def test_static_model_has_no_attention_file(tmp_path: Path) -> None:
    history = list(run(tiny(kw=None, epochs=1), tmp_path))
    assert history[0]["tau"] is None
    assert not (tmp_path / store.ATTENTION).exists()
    summary = store.TrialDir(tmp_path).summary()
    assert summary["method"] == "static" and "params_warehouse" not in summary
    assert summary["params_other"] == summary["params_total"] > 0
    model = kwlab.create_model("cifar_resnet8", num_classes=4, in_chans=1, width=0.5)
    assert summary["params_total"] == sum(p.numel() for p in model.parameters())
    kw_macs = kwlab.price_model("cifar_resnet8", "kw", {}, (1, 8, 8), num_classes=4, in_chans=1, width=0.5).macs
    assert summary["macs_per_image"] == summary["macs_conv"] < kw_macs


def test_non_finite_loss_raises_one_line(tmp_path: Path) -> None:
    with pytest.raises(KWLabError, match=r"^non-finite loss at epoch 1 step \d+") as error:
        list(run(tiny(optim={"lr": 1e30, "warmup_epochs": 0}), tmp_path))
    assert "\n" not in str(error.value)


def test_weight_decay_groups() -> None:
    kw = {"nonlocal_basis_ratio": 0.5, "sharing": "network"}  # every layer has other layers' cells to predict
    model = kwlab.create_model("cifar_resnet8", kw=kw, num_classes=4, in_chans=1, width=0.5)
    no_decay, decay = param_groups(model, 5e-4)
    assert (no_decay["weight_decay"], decay["weight_decay"]) == (0.0, 5e-4)
    decayed = {id(p) for p in decay["params"]}
    names = {name for name, p in model.named_parameters() if id(p) in decayed}
    assert all(p.ndim >= 2 for name, p in model.named_parameters() if id(p) in decayed)
    assert {f"kw_warehouses.{key}.cells" for key in model.kw_warehouses} <= names  # warehouse cells like conv weights
    attention = next(m for m in model.modules() if isinstance(m, KWAttention))
    assert id(attention.fc2.weight) in decayed and id(attention.basis_bias) not in decayed  # as the reference


def test_lr_schedule_warms_up_then_anneals_to_min_lr() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    cfg = OptimConfig(lr=1.0, warmup_epochs=1, min_lr=0.01)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch=4, total_steps=20)
    lrs = []
    for step in range(1, 21):
        scheduler.step_update(step)
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0]) and lrs[-1] == pytest.approx(0.01)
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))
    capped = build_scheduler(optimizer, OptimConfig(lr=1.0, warmup_epochs=5), steps_per_epoch=4, total_steps=8)
    capped.step_update(7)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1.0)  # warm-up ends one step before the last


def test_cli_writes_the_trial_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "trial.yaml"
    config.write_text(yaml.safe_dump(tiny(epochs=1).to_dict()))
    out = tmp_path / "trial"
    assert cli.main(["train", str(config), "--out", str(out), "--set", "optim.lr=0.02"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1] == str(out) and any("val top-1" in line for line in printed)
    assert load_config(out / store.CONFIG).optim.lr == 0.02
    assert {store.METRICS, store.SUMMARY, store.ATTENTION, store.BEST} <= {p.name for p in out.iterdir()}
    assert cli.main(["train", str(config), "--set", "optim.lrr=1"]) == 2
    assert capsys.readouterr().err.strip() == "kwlab train: error: optim.lrr: unknown key; allowed: name, lr, " \
        "momentum, nesterov, weight_decay, warmup_epochs, label_smoothing, grad_clip, min_lr, eps, " \
        "reference_batch, ema_decay"


@pytest.mark.slow
def test_default_config_learns_digits(tmp_path: Path) -> None:
    history = list(run(load_config(DEFAULT_CONFIG), tmp_path))
    assert history[-1]["val_top1"] > 90


def test_augmented_mixed_trial_resumes_exactly_and_is_tested_once(tmp_path: Path) -> None:
    """Crop, flip and mixup draw from generators seeded by (seed, epoch): a trial stopped after epoch 1 and resumed
    ends like an uninterrupted one; the test split is evaluated once, at the end (final and best-val weights)."""
    data = {"name": "synthetic", "shape": [1, 8, 8], "length": 96, "num_classes": 4,
            "augment": {"crop_padding": 1, "flip": True, "mixup": 0.2, "cutmix": 1.0}}
    whole = list(run(tiny(data=data), tmp_path / "whole"))
    first = run(tiny(data=data), tmp_path / "resumed")
    next(first)
    first.close()
    rest = list(run(tiny(data=data), tmp_path / "resumed"))
    assert exact(rest) == exact(whole[1:])
    assert exact(list(run(tiny(data={**data, "augment": {}}), tmp_path / "plain"))) != exact(whole)
    summary = store.TrialDir(tmp_path / "whole").summary()
    assert summary == {**store.TrialDir(tmp_path / "resumed").summary(), "wall_time_s": summary["wall_time_s"]}
    assert summary["test_images"] == 24 and 0 <= summary["test_top1"] <= 100
    assert {"test_loss", "test_top5", "test_top1_at_best"} <= set(summary)
    assert not any(key.startswith(("best_test", "final_test")) for key in summary)  # never a max over test epochs


def test_ema_is_evaluated_beside_the_model_and_the_lr_scales_to_the_batch(tmp_path: Path) -> None:
    """optim.ema_decay keeps a timm ModelEmaV3 evaluated on val every epoch and on test at the end; optim.lr given at
    optim.reference_batch is scaled linearly to the batch used."""
    history = list(run(tiny(optim={"lr": 0.2, "reference_batch": 128, "warmup_epochs": 0, "ema_decay": 0.9}),
                       tmp_path))
    assert {"ema_val_loss", "ema_val_top1", "ema_val_top5"} <= set(history[0])
    summary = store.TrialDir(tmp_path).summary()
    assert {"ema_test_top1", "best_ema_val_top1", "final_ema_val_loss"} <= set(summary)
    assert history[0]["ema_val_top1"] != history[0]["val_top1"] or history[0]["ema_val_loss"] != history[0]["val_loss"]
    optimizer = build_optimizer(torch.nn.Linear(2, 2), OptimConfig(lr=0.2, reference_batch=128),
                                scaled_lr(OptimConfig(lr=0.2, reference_batch=128), 32))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)  # 0.2 at 128, so 0.05 at the trial's 32
    assert scaled_lr(OptimConfig(lr=0.2), 32) == 0.2
