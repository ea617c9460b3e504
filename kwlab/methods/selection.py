"""Layer selection: which layers of a model a method replaces, found from one traced forward pass.

`trace` is the one forward pass with hooks that the methods' selection rules, KernelWarehouse's `auto` layout and the
pricing (`kwlab.methods.pricing.layer_positions`) read: every hooked layer that runs, in order, with its output
shape. `select_layers` is the dynamic convolutions' rule (CondConv, DY-Conv, ODConv).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kwlab.errors import KWLabError


def input_size(model: nn.Module) -> tuple[int, ...]:
    """The (C, H, W) input a model expects, from its timm config (default 3x224x224)."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    return tuple(cfg.get("input_size", (3, 224, 224)))


def probe_shape(model: nn.Module) -> tuple[int, int, int]:
    """The (C, H, W) of one input image: the model's timm input size, with the channels of its first convolution
    (a model built with another `in_chans` keeps the default config's 3)."""
    size = input_size(model)
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    channels = getattr(model, "in_chans", None) or (first.in_channels if first is not None else size[0])
    return (int(channels), int(size[-2]), int(size[-1]))


def trace(model: nn.Module, layers: Mapping[str, nn.Module],
          input_shape: tuple[int, ...] | None = None) -> list[tuple[str, torch.Size]]:
    """(name, output shape) of every layer of `layers` in the order they run (a layer called twice appears twice),
    from one eval-mode forward pass without gradients of a batch of one `input_shape` image (default: the model's
    own, `probe_shape`), on the model's device and dtype (free on the meta device)."""
    executed: list[tuple[str, torch.Size]] = []

    def record(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
            executed.append((name, output.shape))

        return hook

    handles = [module.register_forward_hook(record(name)) for name, module in layers.items()]
    training = model.training
    parameter = next(model.parameters())
    shape = input_shape if input_shape is not None else probe_shape(model)
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *shape, device=parameter.device, dtype=parameter.dtype))
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return executed


@dataclass(frozen=True)
class Selection:
    """Which conv layers of a model a method makes dynamic, and which conv and linear layers stay static."""

    dynamic: tuple[str, ...]
    static: tuple[str, ...]


def select_layers(model: nn.Module, keep_static: Callable[[str, str | None], bool] | None = None,
                  converted: type[nn.Module] | None = None) -> Selection:
    """The generic rule of the dynamic convolutions: every 2-d convolution but the first (the stem) is dynamic.

    One traced forward pass at the model's default input size finds the convolutions that run. Static: the first
    that reads the image, those whose output has a single position (squeeze-excite gates and heads on pooled
    features), a conv classifier, and subclasses of nn.Conv2d that compute something else (timm's Conv2dSame,
    StdConv2d) or pad other than with zeros. Linear layers (the classifier) stay static. `keep_static(name, family)`
    adds a method's own rule (family as kwlab.models.families.family_of says, e.g. 'resnet'); a model that already
    has `converted` layers is refused.
    """
    from kwlab.models.families import family_of

    if converted is not None and any(isinstance(m, converted) for m in model.modules()):
        raise KWLabError(f"{type(model).__name__} already has dynamic convolutions; convert a static model")
    convs = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    family = family_of(model)
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    dynamic: list[str] = []
    seen: set[str] = set()
    for position, (name, shape) in enumerate(trace(model, convs)):
        if name in seen:  # a layer called twice keeps its first decision
            continue
        seen.add(name)
        module = convs[name]
        plain = type(module) is nn.Conv2d and module.padding_mode == "zeros"
        spread = shape[-2] * shape[-1] > 1
        stem = position == 0
        if stem or not plain or not spread or module is classifier or (keep_static and keep_static(name, family)):
            continue
        dynamic.append(name)
    chosen = set(dynamic)
    static = tuple(name for name, m in model.named_modules()
                   if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) and name not in chosen)
    return Selection(tuple(n for n, _ in model.named_modules() if n in chosen), static)


RESNET_DOWNSAMPLE = re.compile(r"layer\d+\.\d+\.downsample\.\d+")


def resnet_projection(name: str, family: str | None) -> bool:
    """A ResNet's 1x1 shortcut projection (timm: layerX.Y.downsample.0, or .1 after an average pool)."""
    return family == "resnet" and RESNET_DOWNSAMPLE.fullmatch(name) is not None
