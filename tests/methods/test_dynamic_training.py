"""A trial of each dynamic convolution through the recipe: the method's section, its temperature schedule, its price
in the summary and its attention file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kwlab import store
from kwlab.methods import build_model
from kwlab.train import TrainConfig, run


@pytest.mark.parametrize(("method", "section", "groups", "first_tau"), [
    ("condconv", {"experts": 2}, ["routing"], None),
    # 64 training images (the rest validate): 2 steps per epoch, S = 4; T after step 2 of 4
    ("dyconv", {"kernels": 2, "temperature": {"epochs": 2}}, ["routing"], 1 + 29 * 2 / 4),
    ("odconv", {"kernels": 2, "temperature": {"epochs": 0}}, ["kernel", "spatial_3x3"], 1.0),
])
def test_one_epoch_trial(method: str, section: dict, groups: list[str], first_tau: float | None,
                         tmp_path: Path) -> None:
    cfg = TrainConfig.from_dict({
        "model": {"name": "cifar_resnet8", "kwargs": {"width": 0.5}},
        "data": {"name": "synthetic", "shape": [1, 8, 8], "length": 96, "num_classes": 4},
        "runtime": {"device": "cpu", "threads": 1}, "epochs": 1, "batch_size": 32, "eval_batch_size": 32,
        "method": method, method: section,
    })
    (record,) = list(run(cfg, tmp_path))
    assert record["tau"] == (None if first_tau is None else pytest.approx(first_tau))  # T after the epoch's last step
    summary = store.TrialDir(tmp_path).summary()
    model = build_model("cifar_resnet8", method, cfg.settings, num_classes=4, in_chans=1, width=0.5)
    assert summary["method"] == method and summary["params_total"] == sum(p.numel() for p in model.parameters())
    assert summary["macs_per_image"] == summary["macs_conv"] + summary["macs_attention"] + summary["macs_mixing"]
    arrays = np.load(tmp_path / store.ATTENTION)
    assert sorted({name.split("/")[0] for name in arrays.files}) == groups
    assert all(np.isfinite(arrays[f"{g}/alpha"]).all() for g in groups)
