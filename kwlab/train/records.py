"""The files of a trial directory, each written atomically (a temporary sibling, then os.replace).

Trial directory layout:

    config.yaml     the resolved TrainConfig; `kwlab.train.load_config(trial / "config.yaml")` rebuilds it
    metrics.jsonl   one JSON object per finished epoch, in order:
                      epoch          1-based epoch number
                      train_loss     mean training loss (label-smoothed, as optimised) over the epoch
                      train_top1     top-1 accuracy (%) on the training batches, in training mode
                      val_loss       mean cross-entropy (no smoothing) on the validation set
                      val_top1       top-1 accuracy (%) on the validation set
                      val_top5       top-5 accuracy (%) (top-k with k = min(5, classes))
                      lr             learning rate of the epoch's last update
                      tau            KW temperature of the epoch's last update (null for a static model)
                      epoch_time_s   seconds of training plus validation
                      images_per_s   training images per second of training
                      peak_memory_mb CUDA: peak allocated memory in the epoch; CPU: peak resident size of the process
    summary.json    written when the trial finishes:
                      params_total, params_warehouse, params_attention, params_other (static: 0, 0, total),
                      macs_per_image (one image, eval mode, FLOPs / 2), best_val_top1, final_val_top1, epochs, seed,
                      wall_time_s (all sessions of the trial), versions {python, torch, timm, kwlab},
                      git {commit, dirty} of the kwlab checkout (both null outside a git checkout), device,
                      status ("finished")
    attention.npz   KW models only; for every warehouse W (the plan's name, e.g. "stage0.dense"):
                      W/alpha   float32 (rows, n)  mean attention alpha over the validation set
                      W/layer   str (rows,)        the layer each row belongs to
                      W/mixture int (rows,)        the mixture index of the row within its layer
                    rows are the m mixtures of each of W's layers, layers in plan order
    checkpoint.pt   the latest finished epoch (see kwlab.train.checkpoint); kept, so that running the same config
                    on the directory again resumes an interrupted trial or returns at once for a finished one
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import timm
import torch
import yaml
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import kwlab
from kwlab.files import atomic_path, write_text
from kwlab.methods.kw.attention import KWAttention
from kwlab.methods.kw.config import KWConfig

CONFIG, METRICS, SUMMARY, ATTENTION = "config.yaml", "metrics.jsonl", "summary.json", "attention.npz"


def write_config(trial: Path, config: dict[str, Any]) -> None:
    """config.yaml: the resolved config tree (TrainConfig.to_dict())."""
    write_text(trial / CONFIG, yaml.safe_dump(config, sort_keys=False))


def write_metrics(trial: Path, history: list[dict[str, Any]]) -> None:
    """metrics.jsonl: one line per finished epoch (rewritten whole, so it never holds a torn line)."""
    write_text(trial / METRICS, "".join(json.dumps(metrics) + "\n" for metrics in history))


def read_metrics(trial: str | Path) -> list[dict[str, Any]]:
    """The epoch metrics recorded in a trial directory (empty before the first epoch)."""
    path = Path(trial) / METRICS
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.is_file() else []


def write_summary(trial: Path, summary: dict[str, Any]) -> None:
    """summary.json."""
    write_text(trial / SUMMARY, json.dumps(summary, indent=2) + "\n")


def write_attention(trial: Path, arrays: dict[str, np.ndarray]) -> None:
    """attention.npz from `AttentionRecorder.arrays()`."""
    with atomic_path(trial / ATTENTION) as tmp, tmp.open("wb") as file:
        np.savez(file, **arrays)


class AttentionRecorder:
    """Forward hooks on every KW layer's attention summing alpha (B, m, n) over samples, while in a `with` block."""

    def __init__(self, model: nn.Module) -> None:
        self.plan = model.kw_plan
        self.sums: dict[str, torch.Tensor] = {}
        self.samples: dict[str, int] = {}
        self.handles = [
            model.get_submodule(layer.spec.name).attention.register_forward_hook(self._hook(layer.spec.name))
            for layer in self.plan.layers
        ]

    def _hook(self, name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], None]:
        def add(module: nn.Module, inputs: tuple[torch.Tensor, ...], alpha: torch.Tensor) -> None:
            total = alpha.detach().double().sum(0)  # (B, m, n) -> (m, n)
            self.sums[name] = self.sums[name] + total if name in self.sums else total
            self.samples[name] = self.samples.get(name, 0) + alpha.shape[0]

        return add

    def __enter__(self) -> AttentionRecorder:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        for handle in self.handles:
            handle.remove()

    def arrays(self) -> dict[str, np.ndarray]:
        """attention.npz's arrays: per warehouse, the layers' mean alpha stacked in plan order (see module doc)."""
        arrays: dict[str, np.ndarray] = {}
        for warehouse in self.plan.warehouses:
            means = [self.sums[name] / self.samples[name] for name in warehouse.layers]  # each (m, n)
            arrays[f"{warehouse.name}/alpha"] = torch.cat(means).float().cpu().numpy()  # (sum m, n)
            arrays[f"{warehouse.name}/layer"] = np.array(
                [name for name, m in zip(warehouse.layers, warehouse.mixtures) for _ in range(m)]
            )
            arrays[f"{warehouse.name}/mixture"] = np.concatenate([np.arange(m) for m in warehouse.mixtures])
        return arrays


def param_counts(model: nn.Module) -> dict[str, int]:
    """Parameters split as in summary.json: warehouse cells, KW attentions and everything else."""
    total = sum(p.numel() for p in model.parameters())
    warehouses = getattr(model, "kw_warehouses", None)
    warehouse = sum(p.numel() for p in warehouses.parameters()) if warehouses is not None else 0
    attention = sum(p.numel() for m in model.modules() if isinstance(m, KWAttention) for p in m.parameters())
    return {"params_total": total, "params_warehouse": warehouse, "params_attention": attention,
            "params_other": total - warehouse - attention}


def count_macs(
    model_name: str, model_kwargs: dict[str, Any], kw: KWConfig | None, in_chans: int, image_size: int,
    num_classes: int,
) -> int:
    """Multiply-accumulates of one forward pass on one image in eval mode (FLOPs / 2, KW kernel assembly included),
    counted on the meta device so that nothing is allocated (on the CPU for a model that cannot run on meta)."""
    try:
        return _count_macs("meta", model_name, model_kwargs, kw, in_chans, image_size, num_classes)
    except (RuntimeError, NotImplementedError):  # an op without a meta implementation
        return _count_macs("cpu", model_name, model_kwargs, kw, in_chans, image_size, num_classes)


def _count_macs(
    device: str, model_name: str, model_kwargs: dict[str, Any], kw: KWConfig | None, in_chans: int, image_size: int,
    num_classes: int,
) -> int:
    with torch.random.fork_rng(devices=[]), torch.device(device):  # leaves the caller's RNG stream alone
        model = kwlab.create_model(model_name, kw=kw, num_classes=num_classes, in_chans=in_chans, **model_kwargs)
        image = torch.zeros(1, in_chans, image_size, image_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(image)
    return counter.get_total_flops() // 2


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated memory since the last reset; CPU: peak resident size of this process."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def describe_device(device: torch.device) -> str:
    """'cpu (N threads)' or 'cuda: <GPU name>'."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu ({torch.get_num_threads()} threads)"


def versions() -> dict[str, str]:
    """Versions of python, torch, timm and kwlab."""
    return {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
            "kwlab": kwlab.__version__}


def git_state() -> dict[str, Any]:
    """{commit, dirty} of the git checkout kwlab is imported from; both None when it is not one."""
    root = Path(kwlab.__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root:  # kwlab installed inside another repo
            return {"commit": None, "dirty": None}
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def build_summary(
    history: list[dict[str, Any]], counts: dict[str, int], macs: int, seed: int, wall_time_s: float, device: str
) -> dict[str, Any]:
    """summary.json's content for a finished trial."""
    return {
        **counts,
        "macs_per_image": macs,
        "best_val_top1": max(m["val_top1"] for m in history),
        "final_val_top1": history[-1]["val_top1"],
        "epochs": len(history),
        "seed": seed,
        "wall_time_s": round(wall_time_s, 3),
        "versions": versions(),
        "git": git_state(),
        "device": device,
        "status": "finished",
    }
