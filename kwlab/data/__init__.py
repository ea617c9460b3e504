"""Offline datasets: `load(DataSpec(name=...), seed)` -> `Splits` (train, val, test); nothing is ever downloaded."""

from __future__ import annotations

from kwlab.data.registry import DataSpec, Splits, available, load, register

# importing the loader modules registers their datasets
from kwlab.data import cifar, idx, imagefolder, sources  # noqa: E402,F401  isort: skip

__all__ = ["DataSpec", "Splits", "available", "load", "register"]
