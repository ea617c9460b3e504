"""Where a result came from: library versions, the kwlab checkout's git state, the machine and the device."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

import kwlab


def versions(*extra: str) -> dict[str, str]:
    """Versions of python, torch, timm and kwlab, plus any `extra` installed distributions."""
    import timm

    return {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
            "kwlab": kwlab.__version__, **{name: metadata.version(name) for name in extra}}


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


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what the platform says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict[str, Any]:
    """The machine: architecture, processor, usable CPUs and CUDA devices."""
    return {"machine": platform.machine(), "processor": platform.processor(), "cpus": len(os.sched_getaffinity(0)),
            "cuda": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}


def describe_device(device: torch.device) -> str:
    """'cpu (N threads)' or 'cuda: <GPU name>'."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu ({torch.get_num_threads()} threads)"


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated memory since the last reset; CPU: peak resident size of this process."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
