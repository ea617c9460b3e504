"""`runtime.compile: true`: a compiled trial computes what the eager one does; Inductor's options and its on-disk
cache (kwlab.train.compiling)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kwlab.methods import build_model
from kwlab.train import TrainConfig, run
from kwlab.train.compiling import compile_options

METRICS = ("train_loss", "val_loss", "val_top1")


def tiny(compile: bool) -> TrainConfig:
    """A KW 1x trial of two epochs of two steps on 8x8 one-channel synthetic images, ResNet-8 at half width: 64
    training and 16 validation images, whole batches only, so that it compiles one training and one evaluation
    graph."""
    return TrainConfig.from_dict({
        "method": "kw", "kw": {"budget": 1},
        "model": {"name": "cifar_resnet8", "kwargs": {"width": 0.5}},
        "data": {"name": "synthetic", "shape": [1, 8, 8], "length": 80, "num_classes": 4},
        "optim": {"lr": 0.05, "warmup_epochs": 0.5}, "temperature": {"fraction": 0.5},
        "runtime": {"device": "cpu", "threads": 1, "compile": compile},
        "epochs": 2, "batch_size": 32, "eval_batch_size": 16,
    })



def test_compile_options_keep_channels_first_where_the_engine_runs() -> None:
    assert compile_options(build_model("cifar_resnet8", "static", None)) == {}
    assert compile_options(build_model("cifar_resnet8", "dyconv", None)) == {"layout_optimization": False}


@pytest.mark.slow
def test_a_compiled_trial_matches_the_eager_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same seeded trial eager and compiled (about 2 minutes of compiling on a 2-core CPU, tau annealing through
    1 without a recompile): its losses and accuracies agree to float tolerance, and the compiled graphs land in
    Inductor's on-disk cache, which the trials of a machine share."""
    cache = tmp_path / "inductor-cache"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(cache))
    torch._dynamo.reset()
    eager = list(run(tiny(False), tmp_path / "eager"))
    torch._dynamo.utils.counters.clear()
    compiled = list(run(tiny(True), tmp_path / "compiled"))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2  # one training, one evaluation graph
    for e, c in zip(eager, compiled, strict=True):
        for key in METRICS:
            assert c[key] == pytest.approx(e[key], rel=2e-2, abs=2e-2), key
    assert any(cache.rglob("*")), "nothing was cached"


@pytest.mark.slow
def test_a_compiled_sweep_matches_the_eager_one(tmp_path: Path) -> None:
    """`kwlab sweep` with `runtime.compile: true` (two seeds of KW 1x on digits, about 3 minutes of compiling on a
    2-core CPU) against the same sweep eager: every trial finishes, and each epoch's losses and accuracies agree
    to float tolerance seed by seed."""
    from sweep_helpers import kwlab_cli, write_spec

    import kwlab.results

    tables = {}
    for compiled in (False, True):
        name = "compiled" if compiled else "eager"
        spec = write_spec(tmp_path, name, cases=[{"name": "kw1x"}], seeds=[0, 1], fixed={"runtime.compile": compiled})
        done = kwlab_cli("sweep", str(spec), "--results", str(tmp_path / "results"),
                         env={"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor-cache")})
        assert done.returncode == 0, done.stdout + done.stderr
        tables[name] = kwlab.results.load(tmp_path / "results" / name)
        assert (tables[name].trials["status"] == "finished").all() and len(tables[name].trials) == 2
    eager, compiled = (tables[n].epochs.set_index(["seed", "epoch"]).sort_index() for n in ("eager", "compiled"))
    assert list(eager.index) == list(compiled.index)
    for key in METRICS:
        assert compiled[key].to_numpy() == pytest.approx(eager[key].to_numpy(), rel=2e-2, abs=2e-2), key
    assert any((tmp_path / "inductor-cache").rglob("*")), "nothing was cached"
