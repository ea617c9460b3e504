"""`run(cfg)`: one trial as a plain generator of per-epoch metrics (Ray Tune and Optuna adapters wrap it).

Per iteration: cosine LR with linear warm-up, KW temperature tau (both tied to the global step), label-smoothed
cross-entropy, optional gradient clipping. Seeded: model init from `seed`, data order from a generator seeded by
(seed, epoch), dropout from the torch RNG saved in the checkpoint, so an interrupted trial resumed from its directory
ends with the same metrics as an uninterrupted one (bit-exact on CPU; CUDA kernels need not be deterministic).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import track
from timm.scheduler import CosineLRScheduler
from torch import nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader, Dataset, TensorDataset

import kwlab
from kwlab import data as kwdata
from kwlab.allocator import keep_freed_memory
from kwlab.errors import KWLabError
from kwlab.methods.kw.temperature import TemperatureSchedule
from kwlab.train import checkpoint, records
from kwlab.train.config import RuntimeConfig, TrainConfig
from kwlab.train.optim import build_optimizer, build_scheduler


@dataclass(frozen=True)
class Runtime:
    """Resolved runtime: device, autocast dtype (None: fp32) and memory format of model and inputs."""

    device: torch.device
    autocast_dtype: torch.dtype | None
    memory_format: torch.memory_format

    @classmethod
    def resolve(cls, cfg: RuntimeConfig) -> Runtime:
        """Turn the 'auto' settings into concrete ones (CUDA: bf16 autocast and channels_last)."""
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise KWLabError("runtime.device: 'cuda' was asked for but torch sees no CUDA device")
        cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and cuda)
        channels_last = cuda if cfg.channels_last == "auto" else cfg.channels_last
        return cls(torch.device("cuda" if cuda else "cpu"), torch.bfloat16 if bf16 else None,
                   torch.channels_last if channels_last else torch.contiguous_format)

    def autocast(self) -> AbstractContextManager:
        """Mixed-precision context for forward passes (a no-op in fp32)."""
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None)


def epoch_order(size: int, seed: int, epoch: int) -> torch.Tensor:
    """The training permutation of `epoch`, a pure function of (seed, epoch)."""
    state = int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0])
    return torch.randperm(size, generator=torch.Generator().manual_seed(state))


def batches(
    dataset: Dataset, order: torch.Tensor, batch_size: int, runtime: Runtime
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) of `dataset` in `order` on the device: in-memory sets are sliced, others go via a DataLoader."""
    if isinstance(dataset, TensorDataset):
        images, labels = dataset.tensors
        parts = ((images[chunk], labels[chunk]) for chunk in order.to(images.device).split(batch_size))
    else:  # lazily decoded sets (imagefolder)
        workers = min(4, os.cpu_count() or 1)
        parts = DataLoader(dataset, batch_size, sampler=order.tolist(), num_workers=workers,
                           pin_memory=runtime.device.type == "cuda")
    for x, y in parts:
        yield (x.to(runtime.device, non_blocking=True, memory_format=runtime.memory_format),
               y.to(runtime.device, non_blocking=True))


def on_device(dataset: Dataset, device: torch.device) -> Dataset:
    """An in-memory dataset moved to `device` once (others are left to the DataLoader)."""
    if isinstance(dataset, TensorDataset) and device.type != "cpu":
        return TensorDataset(*(t.to(device) for t in dataset.tensors))
    return dataset


@dataclass
class Training:
    """The live objects of a trial and its two passes, training and evaluation."""

    cfg: TrainConfig
    runtime: Runtime
    model: nn.Module
    forward: nn.Module  # the model, or its torch.compile wrapper
    optimizer: Optimizer
    scheduler: CosineLRScheduler
    temperature: TemperatureSchedule
    steps_per_epoch: int
    step: int = 0  # updates done so far

    def train_epoch(self, dataset: Dataset, epoch: int, progress: bool) -> dict[str, Any]:
        """One epoch of updates; raises KWLabError on a non-finite loss."""
        cfg, kw = self.cfg, self.cfg.kw is not None
        self.model.train()
        order = epoch_order(len(dataset), cfg.seed, epoch)
        parts = batches(dataset, order, cfg.batch_size, self.runtime)
        if progress:
            parts = track(parts, total=self.steps_per_epoch, description=f"epoch {epoch}/{cfg.epochs}", transient=True)
        loss_sum = correct = torch.zeros((), device=self.runtime.device)
        tau = None
        for index, (images, labels) in enumerate(parts, start=1):
            self.step += 1
            self.scheduler.step_update(self.step)
            if kw:
                tau = self.temperature(self.model, self.step - 1)
            with self.runtime.autocast():
                logits = self.forward(images)
                loss = F.cross_entropy(logits, labels, label_smoothing=cfg.optim.label_smoothing)
            if not math.isfinite(value := loss.item()):
                raise KWLabError(
                    f"non-finite loss at epoch {epoch} step {index}: {value} (lr {self._lr():.3g}); "
                    "lower optim.lr or set optim.grad_clip"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
            self.optimizer.step()
            loss_sum = loss_sum + loss.detach() * len(labels)
            correct = correct + (logits.argmax(1) == labels).sum()
        return {"train_loss": loss_sum.item() / len(dataset), "train_top1": 100 * correct.item() / len(dataset),
                "lr": self._lr(), "tau": tau}

    @torch.no_grad()
    def evaluate(self, dataset: Dataset, model: nn.Module | None = None) -> dict[str, float]:
        """Validation loss (plain cross-entropy, as the reference), top-1 and top-5 (%) in eval mode."""
        forward = self.forward if model is None else model
        self.model.eval()
        order = torch.arange(len(dataset))
        loss_sum = top1 = top5 = torch.zeros((), device=self.runtime.device)
        for images, labels in batches(dataset, order, self.cfg.eval_batch_size, self.runtime):
            with self.runtime.autocast():
                logits = forward(images).float()
            loss_sum = loss_sum + F.cross_entropy(logits, labels, reduction="sum")
            ranked = logits.topk(min(5, logits.shape[1]), dim=1).indices  # (B, k)
            hits = ranked == labels[:, None]
            top1, top5 = top1 + hits[:, 0].sum(), top5 + hits.any(1).sum()
        size = len(dataset)
        return {"val_loss": loss_sum.item() / size, "val_top1": 100 * top1.item() / size,
                "val_top5": 100 * top5.item() / size}

    def _lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]


def build_training(cfg: TrainConfig, splits: kwdata.Splits, runtime: Runtime) -> Training:
    """Seeded model, optimizer, LR schedule and temperature schedule of `cfg`."""
    torch.manual_seed(cfg.seed)
    model = kwlab.create_model(cfg.model.name, kw=cfg.kw, num_classes=splits.num_classes, in_chans=splits.in_chans,
                               drop_rate=cfg.model.drop_rate, **cfg.model.kwargs)
    model.to(device=runtime.device, memory_format=runtime.memory_format)
    steps_per_epoch = math.ceil(len(splits.train) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    optimizer = build_optimizer(model, cfg.optim)
    return Training(
        cfg=cfg,
        runtime=runtime,
        model=model,
        forward=torch.compile(model) if cfg.runtime.compile else model,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg.optim, steps_per_epoch, total_steps),
        temperature=TemperatureSchedule.over_fraction(cfg.temperature.fraction, total_steps, cfg.temperature.start),
        steps_per_epoch=steps_per_epoch,
    )


def run(cfg: TrainConfig, trial_dir: str | Path | None = None, progress: bool = False) -> Iterator[dict[str, Any]]:
    """Train one trial, yielding each finished epoch's metrics (see records.py for the keys).

    With `trial_dir`, the trial directory's files are written as epochs finish and a checkpoint there from an
    interrupted run is resumed: only the remaining epochs are yielded. `progress` shows a per-batch progress bar.
    """
    started = time.perf_counter()
    trial_path = Path(trial_dir) if trial_dir is not None else None
    runtime = Runtime.resolve(cfg.runtime)
    keep_freed_memory()
    if cfg.runtime.threads is not None:
        torch.set_num_threads(cfg.runtime.threads)
    splits = kwdata.load(cfg.data, seed=cfg.seed)
    train_set, val_set = on_device(splits.train, runtime.device), on_device(splits.val, runtime.device)
    training = build_training(cfg, splits, runtime)
    history: list[dict[str, Any]] = []
    previous_time = 0.0  # wall time of earlier sessions of this trial
    if trial_path is not None:
        state = checkpoint.load(trial_path, cfg)
        if state is not None:
            checkpoint.restore(state, training.model, training.optimizer, training.scheduler)
            training.step, history, previous_time = state["step"], state["history"], state["wall_time_s"]
        trial_path.mkdir(parents=True, exist_ok=True)
        records.write_config(trial_path, cfg.to_dict())
        records.write_metrics(trial_path, history)

    for epoch in range(len(history) + 1, cfg.epochs + 1):
        if runtime.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(runtime.device)
        epoch_start = time.perf_counter()
        trained = training.train_epoch(train_set, epoch, progress)
        train_time = time.perf_counter() - epoch_start
        validated = training.evaluate(val_set)
        epoch_time = time.perf_counter() - epoch_start
        metrics = {
            "epoch": epoch, "train_loss": trained["train_loss"], "train_top1": trained["train_top1"], **validated,
            "lr": trained["lr"], "tau": trained["tau"], "epoch_time_s": epoch_time,
            "images_per_s": len(train_set) / train_time, "peak_memory_mb": records.peak_memory_mb(runtime.device),
        }
        history.append(metrics)
        if trial_path is not None:  # record before yielding: a consumer may stop at any yield
            checkpoint.save(trial_path, cfg=cfg, model=training.model, optimizer=training.optimizer,
                            scheduler=training.scheduler, step=training.step, history=history,
                            wall_time_s=previous_time + time.perf_counter() - started)
            records.write_metrics(trial_path, history)
        yield metrics

    if trial_path is not None:
        finish(training, trial_path, splits, val_set, history, previous_time + time.perf_counter() - started)


def finish(
    training: Training, trial_path: Path, splits: kwdata.Splits, val_set: Dataset, history: list[dict[str, Any]],
    wall_time_s: float,
) -> None:
    """Write attention.npz (KW models: one validation pass with hooks) and summary.json."""
    cfg, model = training.cfg, training.model
    if cfg.kw is not None:
        with records.AttentionRecorder(model) as recorder:
            training.evaluate(val_set, model=model)  # hooks fire on the plain module, not a compiled graph
        records.write_attention(trial_path, recorder.arrays())
    macs = records.count_macs(cfg.model.name, cfg.model.kwargs, cfg.kw, splits.in_chans, splits.image_size,
                              splits.num_classes)
    summary = records.build_summary(history, records.param_counts(model), macs, cfg.seed, wall_time_s,
                                    records.describe_device(training.runtime.device))
    records.write_summary(trial_path, summary)
