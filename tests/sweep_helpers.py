"""Helpers for the end-to-end sweep tests: run the CLI as a user does and write small specs on digits subsets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[1]
# Debian's dataset-fashion-mnist (CI installs it); the tests that read it skip, saying why, when it is absent
FASHION_MISSING = pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file(),
                                     reason="Fashion-MNIST absent: apt-get install dataset-fashion-mnist")
# A trial of a second or two: KW 1x on 300 digits, a half-width ResNet-8, no warm-up.
TINY = {"method": "kw", "epochs": 1, "data": {"name": "digits", "train_size": 300}, "optim": {"warmup_epochs": 0},
        "model": {"kwargs": {"width": 0.5}}}


def kwlab_cli(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None,
              timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the installed CLI in a fresh process, as a user would."""
    return subprocess.run([sys.executable, "-m", "kwlab.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def start_cli(*args: str, cwd: Path = ROOT) -> subprocess.Popen:
    """Start the CLI in the background in its own process group (so a test can Ctrl-C it like a terminal), with
    SIGINT at its default: a suite started in the background (`pytest &`, nohup) ignores SIGINT, and a child would
    inherit that and never see the test's Ctrl-C."""
    return subprocess.Popen([sys.executable, "-m", "kwlab.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def write_spec(folder: Path, name: str, **spec: Any) -> Path:
    """A spec file `name`.yaml in `folder` on the TINY base (override `base` to change it)."""
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "base": TINY, "seeds": [0], **spec}, sort_keys=False))
    return path
