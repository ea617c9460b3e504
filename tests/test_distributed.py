"""Data-parallel trials: the recipe's sharding, reductions and rank-0 records, checked against one worker.

The equivalence test starts two gloo processes itself (torch.multiprocessing) to check the recipe's arithmetic in
seconds; the sweep tests go through Ray Train as a user's sweep does (tests/test_sweep_workers.py).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
from torch import nn

from kwlab import store
from kwlab.train import TrainConfig, run
from kwlab.train.distributed import Distributed
from kwlab.train.recipe import steps_per_epoch

# 160 digits, global batch 32: five full batches, so each worker's share is exactly half of every batch. Five steps
# and tau falling over the whole run keep the first epoch out of the chaotic phase of pure CAF training, where a
# 1e-6 change of the learning rate moves the loss by 0.5% within ten steps (measured). The lr is given at batch 64:
# 0.05 at the global batch of 32, whatever the number of workers.
CONFIG = {"method": "kw", "model": {"kwargs": {"width": 0.5}}, "data": {"name": "digits", "train_size": 160},
          "optim": {"warmup_epochs": 0, "lr": 0.1, "reference_batch": 64}, "runtime": {"device": "cpu", "threads": 1, "sync_bn": True},
          "temperature": {"fraction": 1.0}, "epochs": 2, "batch_size": 32, "seed": 3}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, config: dict, trial_dir: str, results: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch_dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        dist = Distributed(rank, world, nn.parallel.DistributedDataParallel)
        history = list(run(TrainConfig.from_dict(config), trial_dir, dist=dist))
        Path(results, f"rank{rank}.json").write_text(json.dumps(history))
    finally:
        torch_dist.destroy_process_group()


def two_workers(config: dict, folder: Path) -> tuple[list[dict], list[dict]]:
    """Both workers' epoch metrics of a 2-worker trial of `config` in `folder`/two."""
    mp.spawn(_worker, args=(2, _free_port(), config, str(folder / "two"), str(folder)), nprocs=2, join=True)
    return tuple(json.loads((folder / f"rank{rank}.json").read_text()) for rank in (0, 1))


# slow: the default suite runs a two-worker trial through Ray Train (test_sweep_workers); this one checks the numbers
@pytest.mark.slow
def test_two_workers_with_syncbn_train_like_one(tmp_path: Path) -> None:
    """Same global batch, same seed, SyncBatchNorm: the first epoch's training loss of two workers equals one
    worker's. Each step's loss and gradient are means over the same 32 samples, computed in two halves (batch
    statistics all-reduced) and averaged by DDP: they differ from one worker's only in float32 summation order
    (~1e-7 relative), as a rounding-sized change of the learning rate does: the test checks that noise (measured:
    8e-8 for the nudged learning rate, 8e-8 for two workers) and allows 1e-4, while per-worker BatchNorm alone
    moves the loss by 9.5e-3 (the control below), so a wrong shard, reduction or normalisation cannot pass."""
    single = list(run(TrainConfig.from_dict(CONFIG), tmp_path / "one"))
    nudged = list(run(TrainConfig.from_dict({**CONFIG, "optim": {**CONFIG["optim"], "lr": 0.1 * (1 + 1e-6)}})))
    assert nudged[0]["train_loss"] == pytest.approx(single[0]["train_loss"], rel=1e-5)  # the rounding noise
    rank0, rank1 = two_workers(CONFIG, tmp_path)
    assert rank0[0]["train_loss"] == pytest.approx(single[0]["train_loss"], rel=1e-4)
    assert [m["lr"] for m in rank0] == [m["lr"] for m in single]  # scaled to the global batch, not a worker's 16
    # every worker reports the same (reduced) numbers; validation counts each sample once
    for a, b in zip(rank0, rank1, strict=True):
        assert {k: v for k, v in a.items() if "time" not in k and "per_s" not in k and "memory" not in k} == \
            {k: v for k, v in b.items() if "time" not in k and "per_s" not in k and "memory" not in k}
    assert abs(rank0[0]["val_top1"] - single[0]["val_top1"]) <= 100 * 2 / 288 + 1e-9  # two of 288 images at most
    # rank 0 alone wrote the trial directory, with the records of a one-worker trial
    two = store.TrialDir(tmp_path / "two")
    summary = two.summary()
    assert summary["workers"] == 2 and summary["test_images"] == 360 and summary["val_images"] == 288
    assert [m["epoch"] for m in two.metrics()] == [1, 2]
    assert set(store.TrialDir(tmp_path / "one").summary()) == set(summary)
    # the control: without SyncBatchNorm each worker normalises its half batch, and the loss moves well past 1e-4
    (tmp_path / "control").mkdir()
    plain, _ = two_workers({**CONFIG, "runtime": {**CONFIG["runtime"], "sync_bn": False}}, tmp_path / "control")
    assert abs(plain[0]["train_loss"] / single[0]["train_loss"] - 1) > 1e-3


@pytest.mark.parametrize(("size", "batch", "world", "steps"), [
    (320, 32, 2, 10), (330, 32, 2, 11), (321, 32, 2, 10), (321, 32, 1, 11), (7, 4, 4, 1), (9, 4, 2, 2),
])
def test_every_worker_takes_the_same_steps(size: int, batch: int, world: int, steps: int) -> None:
    """A last batch with fewer samples than workers is left out (a worker without samples would stall the others);
    each worker's share of a batch is contiguous and the shares cover the batch once."""
    assert steps_per_epoch(size, batch, world) == steps
    order = torch.randperm(size)
    chunks = [c for c in order.split(batch) if len(c) >= world]
    assert len(chunks) == steps
    for chunk in chunks:
        shares = [Distributed(rank, world).share(chunk) for rank in range(world)]
        assert torch.equal(torch.cat(shares), chunk) and all(len(s) for s in shares)
    scored = torch.cat([Distributed(rank, world).eval_indices(size) for rank in range(world)])
    assert sorted(scored.tolist()) == list(range(size))  # every evaluated sample exactly once


def test_a_global_batch_that_does_not_divide_is_one_line(tmp_path: Path) -> None:
    from kwlab.errors import KWLabError

    with pytest.raises(KWLabError, match=r"^batch_size: 30 does not divide among 4 workers"):
        next(run(TrainConfig.from_dict({**CONFIG, "batch_size": 30}), tmp_path, dist=Distributed(0, 4)))
