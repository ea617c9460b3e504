"""The method protocol: what the recipe, the sweep's pricing, `kwlab info`, `kwlab bench` and the trial records ask
of a convolution method (static, kw, condconv, dyconv, odconv, or a user's plugin), so none of them asks "is this KW?".

A method is a `Method` subclass (an abstract base class) registered with `@register_method("name")`, which refuses
a class that leaves an abstract method undefined. Its settings are the trial config's section of the same name
(`kw:`, `odconv:`, ...), typed by `settings`. It must
- `convert` a model (a timm model or any nn.Module) in place;
- `price` a model before building it: parameters and MACs per image, analytically (see `Price`);
and it can
- give a `recorder` of per-trial statistics (mean attention or routing per layer, for heatmaps), and say how its
  rows and columns read (`attention_axes`);
- give its temperature `schedule`, if it has one (from its own settings);
- name a setting the report compares as alternatives against a reference value (`compared`, KW's attention
  function against caf);
- read a `kwlab bench` variant token of its own (`bench_settings`, e.g. '4x' for KW, 'condconv8');
- keep config keys that once lived at the trial config's top level (`top_level_keys`, KW's `temperature:`).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from kwlab.config import Config
from kwlab.errors import KWLabError
from kwlab.methods.mixing.roofline import LayerWork
from kwlab.registry import Registry


@dataclass(frozen=True)
class Price:
    """A model's cost, known before it is built.

    MACs per image follow one convention for every method: the multiply-accumulates of every conv and linear layer
    as the static model runs them, plus the method's attention (routing) layers, plus its mixing work (assembling
    per-sample kernels: n x K per KW layer and sample, K kernels x kernel size for the dynamic convolutions).
    `floor` is the fewest MACs per image of any exact algorithm of the mixing engine (per layer the cheapest of
    assembly then convolution, mixing then convolution and convolution then combination, kwlab.methods.mixing.floor,
    plus the attention); None where it equals `macs` (the static model). `layers` describes each dynamic layer that
    runs for the roofline (kwlab.methods.mixing.roofline).
    """

    params: int
    macs: int
    params_parts: dict[str, int] = field(default_factory=dict)  # e.g. warehouse, attention, other; sums to params
    macs_parts: dict[str, int] = field(default_factory=dict)  # conv, attention, mixing; sums to macs
    details: dict[str, Any] = field(default_factory=dict)  # the method's plan (e.g. KW's warehouses), JSON-ready
    floor: int | None = None  # MACs per image at the mixing engine's cheapest exact algorithm
    layers: tuple[LayerWork, ...] = ()  # the dynamic layers' work, per image

    @property
    def floor_macs(self) -> int:
        """`floor`, or `macs` where the method has no mixing."""
        return self.macs if self.floor is None else self.floor

    def to_dict(self) -> dict[str, Any]:
        """Flat keys as a trial records them: params_total, params_<part>, macs_per_image, macs_<part>."""
        return {"params_total": self.params, **{f"params_{k}": v for k, v in self.params_parts.items()},
                "macs_per_image": self.macs, **{f"macs_{k}": v for k, v in self.macs_parts.items()}}


class Recorder:
    """Collects a method's per-layer statistics while its `with` block runs forward passes (e.g. one validation
    pass); `arrays()` gives attention.npz's content: per group G, `G/alpha` (rows, columns), `G/layer` (rows,) and
    `G/mixture` (rows,)."""

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        return None

    def arrays(self) -> dict[str, np.ndarray]:
        """The recorded statistics (see the class doc)."""
        raise NotImplementedError


class MeanRecorder(Recorder):
    """Forward hooks summing the output of each hooked module, (B, rows, columns) or (B, columns), over the samples;
    `groups` maps a group name (a warehouse, or one method-wide group) to its (layer name, module) pairs, whose rows
    are stacked in the given order (every layer of a group has the same number of columns)."""

    def __init__(self, groups: Mapping[str, Sequence[tuple[str, nn.Module]]]) -> None:
        self.groups = {group: [name for name, _ in members] for group, members in groups.items()}
        self.sums: dict[str, torch.Tensor] = {}
        self.samples: dict[str, int] = {}
        self.handles = [module.register_forward_hook(self._hook(name))
                        for members in groups.values() for name, module in members]

    def _hook(self, name: str) -> Callable[[nn.Module, Any, torch.Tensor], None]:
        def add(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            values = output.detach().double()
            values = values.reshape(values.shape[0], -1, values.shape[-1]).sum(0)  # (B, rows, cols) -> (rows, cols)
            self.sums[name] = self.sums[name] + values if name in self.sums else values
            self.samples[name] = self.samples.get(name, 0) + output.shape[0]

        return add

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        for handle in self.handles:
            handle.remove()

    def arrays(self) -> dict[str, np.ndarray]:
        """Per group G: G/alpha (rows, columns) the mean output, G/layer and G/mixture naming each row."""
        arrays: dict[str, np.ndarray] = {}
        for group, names in self.groups.items():
            means = [self.sums[name] / self.samples[name] for name in names if name in self.sums]
            if not means:
                continue
            arrays[f"{group}/alpha"] = torch.cat(means).float().cpu().numpy()  # (rows of all layers, columns)
            arrays[f"{group}/layer"] = np.array([n for n, m in zip(names, means, strict=False) for _ in range(len(m))])
            arrays[f"{group}/mixture"] = np.concatenate([np.arange(len(m)) for m in means])
        return arrays


Schedule = Callable[[nn.Module, int], float]  # (model, iteration counted from 1) -> the temperature it set


@dataclass(frozen=True)
class AttentionAxes:
    """How a method's attention.npz reads, in words, for its heatmaps: what a row and a column of G/alpha are."""

    rows: str = "mixture"  # a row of a group (the figure groups rows by layer)
    columns: str = "cell"  # a column: what the rows mix
    columns_plural: str = "cells"
    sentence: str = "per group (rows: the mixtures of its layers, lines between layers; columns: what they mix)"


@dataclass(frozen=True)
class ComparedSetting:
    """A setting of a method's section that the report compares as alternatives of one function against a reference
    value, with the settings that belong to it (KernelWarehouse: `attention` against 'caf', with `init`)."""

    key: str
    reference: str
    companions: tuple[str, ...] = ()


class Method(ABC):
    """Abstract base of a convolution method; a subclass registers itself with `@register_method(name)`."""

    name: ClassVar[str] = ""
    settings: ClassVar[type[Config] | None] = None  # the model of the method's config section; None: no section
    attention_axes: ClassVar[AttentionAxes] = AttentionAxes()
    compared: ClassVar[ComparedSetting | None] = None
    # trial-config keys once at the top level that belong to this method's section (top-level key -> its key there)
    top_level_keys: ClassVar[dict[str, str]] = {}
    # which of the KW reference's model files initialise a model of this method (`model.init: reference`): its KW
    # model files ("kw") or its static ones, which ODConv's official code follows too ("static")
    reference_model_files: ClassVar[str] = "static"

    @abstractmethod
    def convert(self, model: nn.Module, settings: Config | None) -> nn.Module:
        """Turn `model`'s layers into this method's layers in place and return it."""

    @abstractmethod
    def price(self, model: nn.Module, settings: Config | None, positions: Mapping[str, int]) -> Price:
        """Parameters and MACs per image of `model` (a static model, typically on the meta device) once converted;
        `positions` gives each conv and linear layer's output positions per image (`pricing.layer_positions`)."""

    def recorder(self, model: nn.Module) -> Recorder | None:
        """A recorder of per-layer statistics of a converted model, or None when the method has none."""
        return None

    def schedule(self, settings: Config | None, steps_per_epoch: int, total_steps: int) -> Schedule | None:
        """The temperature schedule the recipe steps every iteration (from the method's own settings), or None."""
        return None

    def bench_settings(self, token: str) -> dict[str, Any] | None:
        """The settings of a `kwlab bench --variants` token that names this method, or None for another method's:
        by default the method's own name with its default settings."""
        return {} if token == self.name else None

    def describe(self, settings: Config | None) -> str:
        """A few words for consoles, e.g. 'KW 1x stage'."""
        return self.name


METHODS: Registry[Method] = Registry("method", "method")


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator registering one instance of a Method subclass under `name`; a class that is not a Method, or
    leaves one of its abstract methods (convert, price, ...) undefined, is a one-line KWLabError."""

    def add(cls: type[Method]) -> type[Method]:
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise KWLabError(f"register_method({name!r}): {cls!r} is not a subclass of kwlab.methods.Method")
        if inspect.isabstract(cls):
            missing = ", ".join(sorted(cls.__abstractmethods__))
            raise KWLabError(f"register_method({name!r}): {cls.__name__} does not define {missing}, which every "
                             "method must")
        settings = cls.settings
        if settings is not None and not (isinstance(settings, type) and issubclass(settings, Config)):
            raise KWLabError(f"register_method({name!r}): {cls.__name__}.settings must be a kwlab.config.Config "
                             f"subclass or None, got {settings!r}")
        cls.name = name
        METHODS.register(name)(cls())
        return cls

    return add
