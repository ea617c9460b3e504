"""`TrainConfig`: one trial's settings as typed, frozen sections (kwlab.config), validated on construction.

Precedence: defaults < YAML file < `--set key=value`. Unknown keys and wrong types are one-line KWLabErrors naming
the dotted key. The method's settings are the section named after it (`kw:`, `odconv:`, ...); `kw: null` trains the
static model.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from kwlab.config import Config, ConfigError, load_yaml
from kwlab.data import DataSpec
from kwlab.errors import KWLabError, not_one_of
from kwlab.best import MetricConfig, natural_goal
from kwlab.overrides import apply_overrides

# timm arguments the recipe sets itself from the data and the other sections
RESERVED_MODEL_KWARGS = ("num_classes", "in_chans", "drop_rate", "drop_path_rate", "kw", "pretrained")


class ModelConfig(Config):
    """Which timm model to build (kwlab's small models included) and the extra arguments passed to it."""

    name: str = "cifar_resnet8"
    kwargs: dict[str, Any] = Field(default_factory=dict)  # timm arguments, e.g. {"width": 1.0}
    drop_rate: float = Field(0.0, ge=0, lt=1)  # dropout before the classifier
    drop_path_rate: float = Field(0.0, ge=0, lt=1)  # stochastic depth (timm's drop_path_rate); 0: off
    init: Literal["reference", "timm"] = "reference"  # how a fresh model is initialised (see kwlab.models.init)
    init_from_reference: str | None = None  # a checkpoint saved by the KW reference code, loaded before training

    @field_validator("kwargs")
    @classmethod
    def _not_reserved(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        for arg in kwargs:
            if not isinstance(arg, str):
                raise ValueError(f"expected string argument names, got {arg!r}")
            if arg in RESERVED_MODEL_KWARGS:
                raise ConfigError((arg,), "set by the recipe (from data, model.drop_rate, model.drop_path_rate or "
                                          "the method); remove it")
        return kwargs


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return value


class OptimConfig(Config):
    """Optimizer, weight decay and the per-iteration cosine LR schedule with linear warm-up."""

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)  # peak learning rate, reached after the warm-up
    momentum: float = Field(0.9, ge=0, lt=1)  # SGD momentum; AdamW's beta1
    nesterov: bool = True  # SGD only
    weight_decay: float = Field(5e-4, ge=0)  # on conv/linear weights, warehouse cells and attention weights
    warmup_epochs: float = Field(1.0, ge=0)  # linear warm-up from 0, may be fractional; capped one step short
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0)  # max global gradient norm; None: no clipping
    min_lr: float = Field(0.0, ge=0)  # learning rate at the end of the cosine
    eps: float = Field(1e-8, gt=0)  # AdamW's epsilon
    reference_batch: int | None = Field(None, ge=1)  # lr is given at this batch, scaled linearly to batch_size
    ema_decay: float | None = Field(None, gt=0, lt=1)  # keep a timm ModelEmaV3 of the weights; None: no EMA

    _finite_values = field_validator("lr", "weight_decay", "warmup_epochs", "min_lr", "grad_clip")(
        lambda value: value if value is None else _finite(value))

    @model_validator(mode="after")
    def _min_below_peak(self) -> OptimConfig:
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr: expected a number <= optim.lr ({self.lr}), got {self.min_lr!r}")
        return self


class RuntimeConfig(Config):
    """Where and how to compute: none of it changes the recipe, only speed (and, on CUDA, bit-exactness)."""

    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda if available
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    channels_last: bool | str = "auto"  # auto (on CUDA) | true | false
    compile: bool = False  # torch.compile the model for training and evaluation
    # how each KW layer or dynamic convolution picks its engine path per input shape: auto (the cost model; a run
    # repeats bit for bit) | measured (the modelled candidates timed once per shape; faster where the model is off,
    # results may differ between runs at float tolerance)
    paths: Literal["auto", "measured"] = "auto"
    threads: int | None = Field(None, ge=1)  # torch intra-op CPU threads (set for the whole process); None: default
    sync_bn: bool = False  # several workers: BatchNorms normalise over the global batch (SyncBatchNorm)

    @field_validator("channels_last", mode="before")
    @classmethod
    def _auto_or_bool(cls, value: Any) -> bool | str:
        if value not in (True, False, "auto") or isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(not_one_of(value, ("auto", True, False)))
        return value


EPOCH_METRICS = ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5")  # recorded every epoch (+ ema_val_*)


class TrainConfig(Config):
    """Everything one trial needs; sections may be given as mappings and are validated here.

    `method` names the convolution method (static, kw, condconv, dyconv, odconv or a registered plugin) and the
    section of the same name holds its settings (typed by the method); sections of other methods are dropped.
    Without `method`, the one method section given chooses it (none: the static model); a method section set to
    null (`kw: null`) means the static model.
    """

    model_config = ConfigDict(extra="allow")  # the chosen method's own section, validated by `_method_section`

    model: ModelConfig = Field(default_factory=ModelConfig)
    method: str = "static"
    data: DataSpec = Field(default_factory=DataSpec)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    metric: MetricConfig = Field(default_factory=MetricConfig)
    epochs: int = Field(15, ge=1)
    batch_size: int = Field(64, ge=1)
    seed: int = Field(0, ge=0)
    eval_batch_size: int = Field(512, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _method_section(cls, tree: Any) -> Any:
        """Settle the method and keep its settings section only, typed by the method's settings model."""
        if not isinstance(tree, dict):
            return tree
        from kwlab.methods import METHODS  # late: the methods import the config base, not this module

        tree = dict(tree)
        sections = [key for key in tree if key not in cls.model_fields and key in METHODS]
        method = tree.get("method")
        if method is None:
            given = [key for key in sections if tree[key] is not None]
            if len(given) > 1:
                raise ConfigError(("method",), f"the config has sections of {', '.join(given)}; say which method "
                                               "trains (method: NAME)")
            method = given[0] if given else "static"
        if not isinstance(method, str) or method not in METHODS:
            raise ConfigError(("method",), not_one_of(method, METHODS.names()))
        if method in tree and tree[method] is None:
            method = "static"  # a method's section set to null (`kw: null`) is the static model
        tree["method"] = method
        for name in METHODS.names():  # keys once at the top level that now live in a method's section
            for old, key in METHODS.get(name).top_level_keys.items():
                if old in tree and old not in cls.model_fields:
                    value = tree.pop(old)
                    if name == method:
                        section = dict(tree.get(method) or {})
                        if key in section:
                            raise ConfigError((old,), f"{method}.{key} is given too; give it once, as {method}.{key}")
                        tree[method] = {**section, key: value}
        for key in [k for k in tree if k not in cls.model_fields]:
            if key not in METHODS or (METHODS.get(key).settings is None and tree[key] not in (None, {})):
                allowed = ", ".join(dict.fromkeys([*cls.model_fields, *(n for n in METHODS.names()
                                                                        if METHODS.get(n).settings)]))
                raise ConfigError((key,), f"unknown key; allowed: {allowed}")
            if key != method:
                del tree[key]
        settings = METHODS.get(method).settings
        if settings is None:
            tree.pop(method, None)
        else:
            section = tree.get(method, {})
            try:
                tree[method] = settings.from_dict({} if section is None else section)
            except ConfigError as error:
                raise ConfigError((method, *error.loc), error.message) from None
        return tree

    @model_validator(mode="after")
    def _recorded_metric(self) -> TrainConfig:
        """The metric must be recorded every epoch, and its goal must be its own direction."""
        recorded = recorded_metrics(self)
        name, goal = self.metric.name, self.metric.goal
        if name not in recorded:
            test = (" (test metrics are measured once, at the end, and never pick an epoch or steer a sweep)"
                    if "test" in name else "")
            raise ConfigError(("metric", "name"), f"{name!r} is not recorded every epoch{test}; use one of "
                                                  f"{', '.join(recorded)}")
        if goal != natural_goal(name):
            raise ConfigError(("metric", "goal"), f"{name} is to {natural_goal(name)}, not to {goal}")
        return self

    @property
    def settings(self) -> Config | None:
        """The chosen method's settings section (None for a method without one, such as the static model)."""
        return (self.model_extra or {}).get(self.method)

    def digest(self, length: int = 8) -> str:
        """Short stable hash of the config (for default trial-directory names)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:length]


def recorded_metrics(cfg: TrainConfig) -> list[str]:
    """The metrics a trial of `cfg` records every epoch (what `metric.name` may name)."""
    ema = [f"ema_{name}" for name in EPOCH_METRICS if name.startswith("val_")] if cfg.optim.ema_decay else []
    return [*EPOCH_METRICS, *ema]


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML trial config, apply `--set key=value` overrides, validate; file problems name the file."""
    tree = load_yaml(path)
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise KWLabError(f"{path}: expected a mapping of config sections at the top level, got {type(tree).__name__}")
    return TrainConfig.from_dict(apply_overrides(tree, list(overrides)))
