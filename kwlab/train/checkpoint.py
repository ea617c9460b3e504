"""checkpoint.pt: what a trial needs to continue after its last finished epoch exactly as if never stopped (on CPU).

It holds the model, optimizer and LR-scheduler states, the global step, the torch RNG states (dropout), the metrics
of the finished epochs, the wall time spent so far and the config it was trained with. Data order needs no state: it
is drawn from a generator seeded by (seed, epoch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from timm.scheduler.scheduler import Scheduler
from torch import nn
from torch.optim import Optimizer

from kwlab.errors import KWLabError
from kwlab.train.config import TrainConfig
from kwlab.files import atomic_path

FILE = "checkpoint.pt"


def _identity(cfg: TrainConfig) -> dict[str, Any]:
    """The part of a config that fixes the trial's results; `runtime` only changes where and how fast it runs."""
    return {key: value for key, value in cfg.to_dict().items() if key != "runtime"}


def _first_difference(old: Any, new: Any, key: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for name in sorted(set(old) | set(new)):
            if old.get(name) != new.get(name):
                return _first_difference(old.get(name), new.get(name), f"{key}.{name}" if key else name)
    return f"{key}: {old!r} there, {new!r} here"


def save(
    trial: Path, *, cfg: TrainConfig, model: nn.Module, optimizer: Optimizer, scheduler: Scheduler, step: int,
    history: list[dict[str, Any]], wall_time_s: float,
) -> None:
    """Write checkpoint.pt atomically after a finished epoch."""
    state = {
        "config": _identity(cfg),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": step,
        "history": history,
        "wall_time_s": wall_time_s,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }
    with atomic_path(trial / FILE) as tmp:
        torch.save(state, tmp)


def load(trial: Path, cfg: TrainConfig) -> dict[str, Any] | None:
    """The checkpoint in `trial`, or None if there is none; one of another config is an error."""
    path = trial / FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        raise KWLabError(f"{path}: cannot read the checkpoint ({type(error).__name__}); delete it to restart") from None
    if state["config"] != _identity(cfg):
        difference = _first_difference(state["config"], _identity(cfg))
        raise KWLabError(f"{path}: holds a trial of a different config ({difference}); use another trial directory")
    return state


def restore(state: dict[str, Any], model: nn.Module, optimizer: Optimizer, scheduler: Scheduler) -> None:
    """Load a checkpoint's model, optimizer, scheduler and RNG states in place."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng_cpu"])
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
