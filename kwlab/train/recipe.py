"""`run(cfg)`: one trial as a plain generator of per-epoch metrics (the Ray Tune and Optuna adapters wrap it).

Per iteration: the learning rate (cosine with linear warm-up) and the method's temperature are set from the global
step, the batch is augmented (and mixed, with mixup/cutmix), the loss is label-smoothed cross-entropy (soft-target
cross-entropy under mixup), gradients may be clipped, and an EMA copy of the model may follow the weights.

Splits: the model is selected on `val` (held out of the training data) every epoch; `test` (the dataset's own test
split) is evaluated once, at the end, on the final model and on the best-validation weights (and the EMA model).

Seeded: model init from `seed`; data order, augmentation and mixup from generators seeded by (seed, epoch); dropout
from the torch RNG saved in the checkpoint. An interrupted trial resumed from its directory therefore ends with the
same metrics as an uninterrupted one (bit-exact on CPU; CUDA kernels need not be deterministic).
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import track
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from kwlab import data as kwdata
from kwlab import store
from kwlab.allocator import keep_freed_memory
from kwlab.best import best_epoch
from kwlab.errors import KWLabError
from kwlab.methods import METHODS, Price, build_model, price_model, set_paths, training_paths
from kwlab.methods.protocol import Schedule
from kwlab.provenance import describe_device, git_state, peak_memory_mb, versions
from kwlab.tracking.tensorboard import TrialBoard
from kwlab.train import checkpoint
from kwlab.train.config import RuntimeConfig, TrainConfig
from kwlab.train.distributed import SINGLE, Distributed, global_batchnorm
from kwlab.train.optim import build_optimizer, build_scheduler, scaled_lr

TEST_METRICS = ("test_loss", "test_top1", "test_top5")
KEEP = ("best",)  # what a finished trial keeps of its checkpoints by default: best.pt (not the resume state)


@dataclass(frozen=True)
class Runtime:
    """Resolved runtime: device, autocast dtype (None: fp32) and memory format of model and inputs."""

    device: torch.device
    autocast_dtype: torch.dtype | None
    memory_format: torch.memory_format

    @classmethod
    def resolve(cls, cfg: RuntimeConfig, assigned: torch.device | None = None) -> Runtime:
        """Turn the 'auto' settings into concrete ones (CUDA: bf16 autocast and channels_last); `assigned` is the
        GPU a launcher gave this worker."""
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise KWLabError("runtime.device: 'cuda' was asked for but torch sees no CUDA device")
        cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and cuda)
        channels_last = cuda if cfg.channels_last == "auto" else cfg.channels_last
        device = (assigned or torch.device("cuda")) if cuda else torch.device("cpu")
        return cls(device, torch.bfloat16 if bf16 else None,
                   torch.channels_last if channels_last else torch.contiguous_format)

    def autocast(self) -> AbstractContextManager:
        """Mixed-precision context for forward passes (a no-op in fp32)."""
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None)


def seed_for(seed: int, epoch: int, stream: int) -> int:
    """A 63-bit seed for one random stream (0: data order, 1: augmentation, 2: mixup) of one epoch."""
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1, np.uint64)[0] >> 1)


def epoch_order(size: int, seed: int, epoch: int) -> torch.Tensor:
    """The training permutation of `epoch`, a pure function of (seed, epoch)."""
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed_for(seed, epoch, 0)))


def batches(
    dataset: Dataset, order: torch.Tensor, batch_size: int, runtime: Runtime, workers: int = 1, seed: int = 0,
    dist: Distributed = SINGLE,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) of `dataset` in `order`, `batch_size` at a time, on the device: this worker's share of each
    batch (all of it in a one-worker trial). In-memory sets are sliced; others go via a DataLoader with `workers`
    processes (at least one), whose random transforms are seeded from `seed`."""
    # every worker takes the same number of steps: a last batch with fewer samples than workers is left out
    shares = [dist.share(chunk) for chunk in order.split(batch_size) if len(chunk) >= dist.world]
    if isinstance(dataset, TensorDataset):
        images, labels = dataset.tensors
        parts = ((images[share.to(images.device)], labels[share.to(images.device)]) for share in shares)
    else:  # lazily decoded sets (imagefolder): torch seeds each worker's torch and `random` from the generator
        parts = DataLoader(dataset, batch_sampler=[share.tolist() for share in shares], num_workers=max(1, workers),
                           pin_memory=runtime.device.type == "cuda", generator=torch.Generator().manual_seed(seed))
    for x, y in parts:
        yield (x.to(runtime.device, non_blocking=True, memory_format=runtime.memory_format),
               y.to(runtime.device, non_blocking=True))


def steps_per_epoch(size: int, batch_size: int, world: int = 1) -> int:
    """Updates per epoch: the batches of `size` samples, less a last one too small to share among `world`."""
    return size // batch_size + (size % batch_size >= max(world, 1) if size % batch_size else 0)


def on_device(dataset: Dataset | None, device: torch.device) -> Dataset | None:
    """An in-memory dataset moved to `device` once (others are left to the DataLoader)."""
    if isinstance(dataset, TensorDataset) and device.type != "cpu":
        return TensorDataset(*(t.to(device) for t in dataset.tensors))
    return dataset


def loader_workers(threads: int | None) -> int:
    """DataLoader worker processes for a lazily decoded set: the trial's CPU threads, at most the machine's."""
    return max(1, min(threads or os.cpu_count() or 1, os.cpu_count() or 1))


@dataclass(kw_only=True)
class Training(checkpoint.Resumable):
    """The live objects of a trial (model, EMA, optimizer, LR schedule and step are what a checkpoint holds) and its
    passes: training, evaluation and the end-of-trial test."""

    cfg: TrainConfig
    runtime: Runtime
    forward: nn.Module  # the model, or its DDP / torch.compile wrapper
    temperature: Schedule | None  # the method's schedule (KW's tau, DY-Conv's and ODConv's T), if it has one
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None  # batched, on the device
    mixup: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None
    steps_per_epoch: int
    dist: Distributed = SINGLE
    workers: int = 1
    best_weights: dict[str, torch.Tensor] | None = None  # the best epoch's weights so far (on the CPU), every rank

    def train_epoch(self, dataset: Dataset, epoch: int, progress: bool, max_steps: int | None = None) -> dict[str, Any]:
        """One epoch of updates (this worker's share of each batch), or its first `max_steps`; raises KWLabError on
        a non-finite loss."""
        cfg, dist = self.cfg, self.dist
        self.model.train()
        order = epoch_order(len(dataset), cfg.seed, epoch)
        stream = 1 + 3 * dist.rank  # each worker draws its own augmentation and mixing
        parts = batches(dataset, order, cfg.batch_size, self.runtime, self.workers, seed_for(cfg.seed, epoch, stream),
                        dist)
        if max_steps is not None:
            parts = itertools.islice(parts, max_steps)
        if progress:
            parts = track(parts, total=self.steps_per_epoch, description=f"epoch {epoch}/{cfg.epochs}", transient=True)
        generator = torch.Generator(self.runtime.device).manual_seed(seed_for(cfg.seed, epoch, stream))
        np.random.seed(seed_for(cfg.seed, epoch, stream + 1) % 2**32)  # timm's Mixup draws from numpy's generator
        loss_sum = correct = seen = torch.zeros((), device=self.runtime.device)
        tau = None
        for index, (images, labels) in enumerate(parts, start=1):
            self.step += 1
            self.scheduler.step_update(self.step)
            if self.temperature is not None:
                tau = self.temperature(self.model, self.step)
            if self.augment is not None:
                images = self.augment(images, generator)
            targets = labels
            if self.mixup is not None:
                images, targets = self.mixup(images, labels)
            with self.runtime.autocast():
                logits = self.forward(images)
                loss = self._loss(logits.float(), targets)
            if not math.isfinite(value := dist.sum(loss.detach()).item()):  # every worker stops together
                raise KWLabError(
                    f"non-finite loss at epoch {epoch} step {index}: {value} (lr {self._lr():.3g}); "
                    "lower optim.lr or set optim.grad_clip"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.model, step=self.step)
            loss_sum = loss_sum + loss.detach() * len(labels)
            correct = correct + (logits.argmax(1) == labels).sum()
            seen = seen + len(labels)
        loss_sum, correct, seen = (dist.sum(t).item() for t in (loss_sum, correct, seen))
        return {"train_loss": loss_sum / seen, "train_top1": 100 * correct / seen, "lr": self._lr(), "tau": tau}

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.dim() == 2:  # soft targets from mixup/cutmix (label smoothing is folded in)
            return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()
        return F.cross_entropy(logits, targets, label_smoothing=self.cfg.optim.label_smoothing)

    @torch.no_grad()
    def evaluate(self, dataset: Dataset, prefix: str, model: nn.Module | None = None,
                 dist: Distributed | None = None) -> dict[str, float]:
        """`<prefix>_loss` (plain cross-entropy, as the reference), `<prefix>_top1` and `_top5` (%) in eval mode,
        over the workers of `dist` (the trial's by default), each scoring its share of the samples; raises KWLabError
        when a logit or the loss is not finite (a diverged model's accuracy means nothing)."""
        dist = self.dist if dist is None else dist
        forward = self.forward if model is None else model
        (self.model if model is None else model).eval()
        order = dist.eval_indices(len(dataset))  # every sample scored once, by one worker
        loss_sum = top1 = top5 = broken = torch.zeros((), device=self.runtime.device)
        for images, labels in batches(dataset, order, self.cfg.eval_batch_size, self.runtime, self.workers):
            with self.runtime.autocast():
                logits = forward(images).float()
            broken = broken + (~torch.isfinite(logits)).sum()
            loss_sum = loss_sum + F.cross_entropy(logits, labels, reduction="sum")
            ranked = logits.topk(min(5, logits.shape[1]), dim=1).indices  # (B, k)
            hits = ranked == labels[:, None]
            top1, top5 = top1 + hits[:, 0].sum(), top5 + hits.any(1).sum()
        size = len(dataset)
        loss_sum, top1, top5, broken = (dist.sum(t).item() for t in (loss_sum, top1, top5, broken))
        if broken or not math.isfinite(loss_sum):  # every worker holds the same sums, so all stop together
            raise KWLabError(f"diverged: {prefix}_loss is {loss_sum / size} ({int(broken)} non-finite logits; lr "
                             f"{self._lr():.3g}); lower optim.lr or set optim.grad_clip")
        return {f"{prefix}_loss": loss_sum / size, f"{prefix}_top1": 100 * top1 / size,
                f"{prefix}_top5": 100 * top5 / size}

    def _lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]


def _mixup(cfg: TrainConfig, num_classes: int) -> Callable | None:
    augment = cfg.data.augment
    if not (augment.mixup > 0 or augment.cutmix > 0):
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=augment.mixup, cutmix_alpha=augment.cutmix, prob=augment.mixup_prob,
                 switch_prob=augment.mixup_switch_prob, label_smoothing=cfg.optim.label_smoothing,
                 num_classes=num_classes)


def build_training(cfg: TrainConfig, splits: kwdata.Splits, runtime: Runtime, dist: Distributed = SINGLE) -> Training:
    """Seeded model (converted by the config's method), optimizer, LR and temperature schedules, EMA; with several
    workers, SyncBatchNorm (when `runtime.sync_bn`) and the launcher's DDP wrapper; with `runtime.compile`, the
    forward compiled (kwlab.train.compiling)."""
    from kwlab.train.compiling import compile_model

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model.name, cfg.method, cfg.settings, init=cfg.model.init, **model_kwargs(cfg, splits))
    if cfg.model.init_from_reference is not None:  # a resumed trial then loads its own checkpoint over it
        from kwlab.methods.kw.reference_checkpoint import load_reference_checkpoint

        load_reference_checkpoint(model, cfg.model.init_from_reference)
    set_paths(model, cfg.runtime.paths)
    if dist.world > 1 and cfg.runtime.sync_bn:
        model = global_batchnorm(model, runtime.device)
    model.to(device=runtime.device, memory_format=runtime.memory_format)
    per_epoch = steps_per_epoch(len(splits.train), cfg.batch_size, dist.world)
    total_steps = cfg.epochs * per_epoch
    optimizer = build_optimizer(model, cfg.optim, scaled_lr(cfg.optim, cfg.batch_size))
    ema = None
    if cfg.optim.ema_decay:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=cfg.optim.ema_decay)
    forward = dist.wrap(model)
    return Training(
        cfg=cfg,
        runtime=runtime,
        model=model,
        forward=compile_model(forward) if cfg.runtime.compile else forward,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg.optim, per_epoch, total_steps),
        temperature=METHODS.get(cfg.method).schedule(cfg.settings, per_epoch, total_steps),
        augment=splits.augment,
        mixup=_mixup(cfg, splits.num_classes),
        ema=ema,
        steps_per_epoch=per_epoch,
        dist=dist,
        workers=loader_workers(cfg.runtime.threads),
    )


def model_kwargs(cfg: TrainConfig, splits: kwdata.Splits) -> dict[str, Any]:
    """The timm arguments of the trial's model: the data's classes and channels, dropout, drop path, model.kwargs."""
    extra = {"drop_path_rate": cfg.model.drop_path_rate} if cfg.model.drop_path_rate else {}
    return {"num_classes": splits.num_classes, "in_chans": splits.in_chans, "drop_rate": cfg.model.drop_rate,
            **extra, **cfg.model.kwargs}


def price(cfg: TrainConfig, num_classes: int, in_chans: int, image_size: int) -> Price:
    """The trial's model priced by its method: parameters and MACs per image (see Method.price)."""
    extra = {"drop_path_rate": cfg.model.drop_path_rate} if cfg.model.drop_path_rate else {}
    return price_model(cfg.model.name, cfg.method, cfg.settings, (in_chans, image_size, image_size),
                       num_classes=num_classes, in_chans=in_chans, **extra, **cfg.model.kwargs)


def run(cfg: TrainConfig, trial_dir: str | Path | None = None, progress: bool = False,
        dist: Distributed = SINGLE, keep: tuple[str, ...] = KEEP,
        wandb: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Train one trial, yielding each finished epoch's metrics (keys: EPOCH_METRICS, lr, tau and timings).

    With `trial_dir`, the trial directory's files are written as epochs finish (see kwlab.store) and a checkpoint
    there from an interrupted run is resumed: only the remaining epochs are yielded; a finished trial yields
    nothing. When the trial finishes it keeps the checkpoints named in `keep` ("best": best.pt, "last": the
    resume state checkpoint.pt). `progress` shows a per-batch progress bar. `dist` places this process among the
    workers of a data-parallel trial (see kwlab.train.distributed): every worker runs this generator; rank 0 writes
    the files, its TensorBoard run and, with `wandb` (the spec's tracking.wandb as plain values), its W&B run.
    """
    started = time.perf_counter()
    trial = store.TrialDir(trial_dir) if trial_dir is not None else None
    if trial is not None and checkpoint.finished(trial, cfg):
        return
    if cfg.batch_size % dist.world:
        raise KWLabError(f"batch_size: {cfg.batch_size} does not divide among {dist.world} workers (batch_size is "
                         "the global batch)")
    runtime = Runtime.resolve(cfg.runtime, dist.device)
    keep_freed_memory()
    if cfg.runtime.threads is not None:
        torch.set_num_threads(cfg.runtime.threads)
    splits = kwdata.load(cfg.data, seed=cfg.seed)
    train_set, val_set = on_device(splits.train, runtime.device), on_device(splits.val, runtime.device)
    training = build_training(cfg, splits, runtime, dist)
    history: list[dict[str, Any]] = []
    previous_time = 0.0  # wall time of earlier sessions of this trial
    loggers: list[Any] = []  # the trial's TensorBoard (and W&B) run, written by its main process
    if trial is not None:
        state = checkpoint.load(trial, cfg)
        if state is not None:
            checkpoint.restore(state, training)
            history, previous_time = state["history"], state["wall_time_s"]
            training.best_weights = checkpoint.load_best(trial)
            if dist.main:
                print(f"resuming after epoch {len(history)} of {cfg.epochs} from {store.CHECKPOINT}", flush=True)
        if dist.main:
            trial.path.mkdir(parents=True, exist_ok=True)
            trial.write_config(cfg.to_dict())
            trial.write_metrics(history)
            loggers.append(TrialBoard(trial, cfg.seed, first_epoch=len(history) + 1))
            if wandb is not None:
                from kwlab.tracking.wandb import TrialRun

                loggers.append(TrialRun(trial, cfg.seed, cfg.method, wandb))
    try:
        yield from _epochs(cfg, training, trial, train_set, val_set, history, loggers, progress, previous_time,
                           started)
        summary = None
        if trial is not None:
            summary = finish(training, trial, splits, history, previous_time + time.perf_counter() - started)
            if dist.main:
                checkpoint.drop(trial, keep)
    except BaseException:  # a failure, or the consumer stopped the trial (ASHA): the runs end too
        for logger in loggers:
            logger.finish(None, failed=True)
        raise
    for logger in loggers:
        logger.finish(summary)


def _epochs(cfg: TrainConfig, training: Training, trial: store.TrialDir | None, train_set: Dataset, val_set: Dataset,
            history: list[dict[str, Any]], loggers: list[Any], progress: bool, previous_time: float,
            started: float) -> Iterator[dict[str, Any]]:
    """The trial's remaining epochs: train, validate, record (rank 0: best.pt, checkpoint.pt, metrics.jsonl and the
    loggers), yield the epoch's metrics."""
    runtime, dist = training.runtime, training.dist
    for epoch in range(len(history) + 1, cfg.epochs + 1):
        if runtime.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(runtime.device)
        epoch_start = time.perf_counter()
        trained = training.train_epoch(train_set, epoch, progress)
        train_time = time.perf_counter() - epoch_start
        validated = training.evaluate(val_set, "val")
        if training.ema is not None:
            validated |= training.evaluate(val_set, "ema_val", model=training.ema.module)
        metrics = {
            "epoch": epoch, "train_loss": trained["train_loss"], "train_top1": trained["train_top1"], **validated,
            "lr": trained["lr"], "tau": trained["tau"], "epoch_time_s": time.perf_counter() - epoch_start,
            "images_per_s": len(train_set) / train_time, "peak_memory_mb": peak_memory_mb(runtime.device),
        }
        improved = best_epoch([*history, metrics], cfg.metric.name, cfg.metric.goal) is metrics  # the first of equals
        history.append(metrics)
        if improved:  # every rank keeps them: a rank's own folder may not be rank 0's (a store at a URI)
            training.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in training.model.state_dict().items()}
        if trial is not None and dist.main:  # record before yielding: a consumer may stop at any yield
            if improved:
                checkpoint.save_best(trial, training.model)
            checkpoint.save(trial, cfg=cfg, state=training, history=history,
                            wall_time_s=previous_time + time.perf_counter() - started)
            trial.write_metrics(history)
            if not trial.file(store.CONFIG).is_file():  # its folder was removed while it ran: identity again
                trial.write_config(cfg.to_dict())
            for logger in loggers:
                logger.epoch(metrics)
        dist.barrier()  # every worker ends the epoch with rank 0's records written
        yield metrics


@dataclass(frozen=True)
class Timing:
    """What one trial of a config costs on this machine, measured on a few steps (see `time_trial`)."""

    setup_s: float  # loading the data and building the model, once per trial
    step_s: float  # one training update
    eval_image_s: float  # scoring one image in eval mode
    steps_per_epoch: int
    val_images: int
    test_images: int
    epochs: int
    measure_s: float = 0.0  # timing the layers' paths (runtime.paths: measured): once per variant, before the sweep

    @property
    def trial_s(self) -> float:
        """Estimated wall time of the whole trial: every epoch's updates and validation, then the test."""
        per_epoch = self.steps_per_epoch * self.step_s + self.val_images * self.eval_image_s
        return self.setup_s + self.epochs * per_epoch + 2 * self.test_images * self.eval_image_s


def untracked_training(cfg: TrainConfig, runtime: Runtime) -> tuple[kwdata.Splits, Training]:
    """`cfg`'s data splits and training, built as its trial builds them at its threads, with no trial folder (what
    `time_trial` and `meet_shapes` run)."""
    if cfg.runtime.threads is not None:
        torch.set_num_threads(cfg.runtime.threads)
    splits = kwdata.load(cfg.data, seed=cfg.seed)
    return splits, build_training(cfg, splits, runtime)


def time_trial(cfg: TrainConfig, steps: int = 3) -> Timing:
    """Time `steps` training updates (after one untimed) and one evaluation batch (after one untimed) of `cfg` at its
    threads, as a sweep's trial would run them; nothing is written."""
    from kwlab.methods.mixing.measured import timed

    runtime = Runtime.resolve(cfg.runtime)
    built: list[tuple[kwdata.Splits, Training]] = []
    setup = timed(runtime.device, lambda: built.append(untracked_training(cfg, runtime)))
    split, training = built[0]
    train_set, val_set = on_device(split.train, runtime.device), on_device(split.val, runtime.device)
    # the first step and evaluation are untimed warm-ups: first-call allocations, measured paths, compilation
    warm_step = timed(runtime.device, lambda: training.train_epoch(train_set, 1, progress=False, max_steps=1))
    step = timed(runtime.device, lambda: training.train_epoch(train_set, 1, progress=False, max_steps=steps))
    step /= max(1, min(steps, training.steps_per_epoch))
    sample = head(val_set, min(len(val_set), cfg.eval_batch_size))
    warm_eval = timed(runtime.device, lambda: training.evaluate(sample, "val"))
    eval_batch = timed(runtime.device, lambda: training.evaluate(sample, "val"))
    eval_image = eval_batch / max(1, len(sample))
    first_calls = max(0.0, warm_step - step) + max(0.0, warm_eval - eval_batch)
    if cfg.runtime.compile:  # compiling the training and evaluation graphs is once per trial: part of its set-up
        setup += first_calls
    measured = cfg.runtime.paths == "measured" and not cfg.runtime.compile  # (compiled layers take the model's path)
    return Timing(setup, step, eval_image, training.steps_per_epoch, len(split.val),
                  len(split.test) if split.test is not None else 0, cfg.epochs, first_calls if measured else 0.0)


def head(dataset: Dataset, size: int) -> Dataset:
    """The first `size` samples of `dataset` (sliced tensors for an in-memory set)."""
    if isinstance(dataset, TensorDataset):
        return TensorDataset(*(t[:size] for t in dataset.tensors))
    return Subset(dataset, range(size))


def batch_sizes(samples: int, batch_size: int) -> list[int]:
    """The batch sizes a pass over `samples` meets: a full batch and the last, partial one."""
    sizes = [min(samples, batch_size)]
    if samples > batch_size and samples % batch_size:
        sizes.append(samples % batch_size)
    return sizes


def meet_shapes(cfg: TrainConfig) -> None:
    """Run `cfg`'s model once on every batch shape its (one-worker) trial meets, at its threads: a training step on
    a full and on the last, partial batch, and an evaluation of a full and a partial batch of each evaluated split.
    With `runtime.paths: measured` each layer shape is timed here (kwlab.methods.mixing.export_measurements then
    has them all); nothing is written."""
    runtime = Runtime.resolve(cfg.runtime)
    splits, training = untracked_training(cfg, runtime)
    train_set = on_device(splits.train, runtime.device)
    for size in batch_sizes(len(train_set), cfg.batch_size):
        training.train_epoch(head(train_set, size), 1, progress=False, max_steps=1)
    for split in (splits.val, splits.test):
        if split is not None:
            split = on_device(split, runtime.device)
            for size in batch_sizes(len(split), cfg.eval_batch_size):
                training.evaluate(head(split, size), "val")


def finish(training: Training, trial: store.TrialDir, splits: kwdata.Splits, history: list[dict[str, Any]],
           wall_time_s: float) -> dict[str, Any]:
    """The end of a trial: the test split once (final weights, the best epoch's and the EMA's), the method's attention
    statistics on the validation set, and summary.json (naming the best epoch and the metric and goal that chose
    it)."""
    cfg, model = training.cfg, training.model
    val_set, test_set = on_device(splits.val, training.runtime.device), on_device(splits.test, training.runtime.device)
    tested = training.evaluate(test_set, "test", model=model) if test_set is not None else {}
    best = training.best_weights if test_set is not None else None
    if best is not None:
        best_model = copy.deepcopy(model)
        best_model.load_state_dict(best)
        tested |= {f"{k}_at_best": v for k, v in training.evaluate(test_set, "test", model=best_model).items()}
    if training.ema is not None and test_set is not None:
        tested |= training.evaluate(test_set, "ema_test", model=training.ema.module)
    if not training.dist.main:
        return tested
    recorder = METHODS.get(cfg.method).recorder(model)
    if recorder is not None:  # rank 0 alone, on the plain module (hooks do not fire in a compiled graph)
        with recorder:
            training.evaluate(val_set, "val", model=model, dist=SINGLE)
        trial.write_attention(recorder.arrays())
    # a sweep priced the trial's variant before launching it (sweep.json): its model is not planned again here
    priced = (trial.sweep_meta() or {}).get("price") or price(cfg, splits.num_classes, splits.in_chans,
                                                               splits.image_size).to_dict()
    workers = training.dist.world
    chosen = best_epoch(history, cfg.metric.name, cfg.metric.goal)
    summary = {
        "status": "finished", "method": cfg.method, **priced, "epochs": len(history), "seed": cfg.seed,
        "best_epoch": chosen["epoch"] if chosen else None, "best_metric": cfg.metric.name, "best_goal": cfg.metric.goal,
        "train_images": len(splits.train), "val_images": len(splits.val),
        "test_images": len(splits.test) if splits.test is not None else 0, **store.summarize_epochs(history),
        **tested, "wall_time_s": round(wall_time_s, 3), "workers": workers,
        "device": describe_device(training.runtime.device) + (f" x {workers} workers" if workers > 1 else ""),
        "paths": training_paths(model), "versions": versions(), "git": git_state(),
    }
    trial.write_summary(summary)
    return summary
