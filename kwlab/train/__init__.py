"""One training trial: `run(cfg, trial_dir)` yields per-epoch metrics; `load_config` reads a YAML trial config."""

from kwlab.train.config import TrainConfig, load_config
from kwlab.train.recipe import run

__all__ = ["TrainConfig", "load_config", "run"]
