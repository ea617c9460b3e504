"""`runtime.compile: true`: a compiled trial computes what the eager one does; Inductor's options and its shared
on-disk cache (kwlab.train.compiling)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from kwlab.methods import build_model
from kwlab.train import TrainConfig, run
from kwlab.train.compiling import compile_options, use_compile_cache

METRICS = ("train_loss", "val_loss", "val_top1")


def tiny(method: str, settings: dict | None, compile: bool) -> TrainConfig:
    """Three steps of a 8x8 one-channel synthetic trial on ResNet-8 at half width."""
    return TrainConfig.from_dict({
        "method": method, **({method: settings} if settings else {}),
        "model": {"name": "cifar_resnet8", "kwargs": {"width": 0.5}},
        "data": {"name": "synthetic", "shape": [1, 8, 8], "length": 96, "num_classes": 4},
        "optim": {"lr": 0.05, "warmup_epochs": 0.5},
        "runtime": {"device": "cpu", "threads": 1, "compile": compile},
        "epochs": 1, "batch_size": 32, "eval_batch_size": 16,
    })


@pytest.fixture(autouse=True)
def _keep_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_compile_options_keep_channels_first_where_the_engine_runs() -> None:
    assert compile_options(build_model("cifar_resnet8", "static", None)) == {}
    assert compile_options(build_model("cifar_resnet8", "dyconv", None)) == {"layout_optimization": False}


@pytest.mark.slow
@pytest.mark.parametrize(("method", "settings"), [("kw", {"budget": 1}), ("dyconv", {"kernels": 4})])
def test_a_compiled_trial_matches_the_eager_one(method: str, settings: dict, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The same seeded trial eager and compiled (about 1-2 minutes of compiling on a 2-core CPU): its losses and
    accuracies agree to float tolerance, and the compiled graphs land in the cache folder the trial was given."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "default-cache"))
    cache = use_compile_cache(tmp_path / "shared-cache")
    torch._dynamo.reset()
    eager = list(run(tiny(method, settings, False), tmp_path / "eager"))
    compiled = list(run(tiny(method, settings, True), tmp_path / "compiled"))
    for e, c in zip(eager, compiled, strict=True):
        for key in METRICS:
            assert c[key] == pytest.approx(e[key], rel=1e-3, abs=1e-3), key
    assert any(cache.rglob("*")), "nothing was cached"
