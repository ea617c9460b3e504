"""checkpoint.pt: what a trial needs to continue after its last finished epoch exactly as if never stopped (on CPU);
best.pt: the model weights at the best validation epoch, for the end-of-trial test.

checkpoint.pt holds the model, EMA, optimizer and LR-scheduler states, the global step, the torch RNG states
(dropout), the metrics of the finished epochs, the wall time spent so far and the config it was trained with. Data
order, augmentation and mixup need no state: they are drawn from generators seeded by (seed, epoch).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from timm.scheduler.scheduler import Scheduler
from torch import nn
from torch.optim import Optimizer

from kwlab import store
from kwlab.errors import KWLabError, warn
from kwlab.files import atomic_path
from kwlab.train.config import TrainConfig


@dataclass
class Resumable:
    """The live state a checkpoint saves and restores: the model, its EMA, the optimizer, the LR schedule and the
    number of updates done."""

    model: nn.Module
    ema: nn.Module | None
    optimizer: Optimizer
    scheduler: Scheduler
    step: int = 0


def _identity(cfg: TrainConfig) -> dict[str, Any]:
    """The part of a config that fixes the trial's results; `runtime` only changes where and how fast it runs."""
    return {key: value for key, value in cfg.to_dict().items() if key != "runtime"}


def _first_difference(old: Any, new: Any, key: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for name in sorted(set(old) | set(new)):
            if old.get(name) != new.get(name):
                return _first_difference(old.get(name), new.get(name), f"{key}.{name}" if key else name)
    return f"{key}: {old!r} there, {new!r} here"


def _save(path: Any, state: dict[str, Any]) -> None:
    # NOTE: serialised in memory first: torch turns a failed write into a RuntimeError without errno, and a full disk
    # must be told apart from a bug (see kwlab.files.writing)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def _read(path: Path) -> Any:
    """A saved state, or None with a warning when the file is unreadable (empty or torn by a power cut)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        warn(f"{path}: unreadable ({type(error).__name__}, {path.stat().st_size} bytes); the trial starts again from "
             "its first epoch")
        return None


def save(trial: store.TrialDir, *, cfg: TrainConfig, state: Resumable, history: list[dict[str, Any]],
         wall_time_s: float) -> None:
    """Write checkpoint.pt atomically after a finished epoch."""
    _save(trial.file(store.CHECKPOINT), {
        "config": _identity(cfg),
        "model": state.model.state_dict(),
        "ema": state.ema.state_dict() if state.ema is not None else None,
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "step": state.step,
        "history": history,
        "wall_time_s": wall_time_s,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    })


def load(trial: store.TrialDir, cfg: TrainConfig) -> dict[str, Any] | None:
    """The checkpoint in `trial`, or None if there is none, or if it or best.pt is unreadable (the trial then starts
    again, with a warning); one of another config is an error."""
    path, best = trial.file(store.CHECKPOINT), trial.file(store.BEST)
    if not path.is_file():
        return None
    state = _read(path)
    if state is None or (best.is_file() and _read(best) is None):
        return None
    if state["config"] != _identity(cfg):
        difference = _first_difference(state["config"], _identity(cfg))
        raise KWLabError(f"{path}: holds a trial of a different config ({difference}); use another trial directory")
    return state


def finished(trial: store.TrialDir, cfg: TrainConfig) -> bool:
    """Whether `trial` holds this config's trial finished (nothing left to run); one of another config is an
    error."""
    summary = trial.summary() or {}
    if summary.get("status") != "finished" or trial.file(store.CHECKPOINT).is_file():
        return False  # a checkpoint left: `load` compares its config
    recorded = {key: value for key, value in trial.config().items() if key != "runtime"}
    if recorded != _identity(cfg):
        difference = _first_difference(recorded, _identity(cfg))
        raise KWLabError(f"{trial.path}: holds a finished trial of a different config ({difference}); use another "
                         "trial directory")
    return True


def drop(trial: store.TrialDir, keep: tuple[str, ...]) -> None:
    """A finished trial's checkpoints that `keep` does not name are removed: "last" keeps checkpoint.pt (the resume
    state, which a finished trial never reads again), "best" keeps best.pt."""
    if "last" not in keep:
        trial.drop_resume_state()
    if "best" not in keep:
        trial.storage.delete(store.BEST)


def restore(saved: dict[str, Any], state: Resumable) -> None:
    """Load a checkpoint's model, EMA, optimizer, scheduler, step and RNG states into `state` in place."""
    state.model.load_state_dict(saved["model"])
    if state.ema is not None and saved.get("ema") is not None:
        state.ema.load_state_dict(saved["ema"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    state.step = saved["step"]
    torch.set_rng_state(saved["rng_cpu"])
    if saved["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["rng_cuda"])


def save_best(trial: store.TrialDir, model: nn.Module) -> None:
    """Write best.pt: the model's weights at a new best validation epoch."""
    _save(trial.file(store.BEST), model.state_dict())


def load_best(trial: store.TrialDir) -> dict[str, Any] | None:
    """best.pt's weights, or None."""
    path = trial.file(store.BEST)
    return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None
