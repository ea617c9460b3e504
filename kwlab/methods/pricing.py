"""Analytic pricing helpers shared by the methods: where each conv and linear layer sits in the feature map, and
what the static model's conv and linear layers cost. A meta-device forward pass gives the shapes; nothing is
allocated or computed."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def layer_positions(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Output positions per image of every conv and linear layer (tokens for a linear layer), from one forward pass
    of `model`, which must be on the meta device, on a (1, *input_shape) input."""
    positions: dict[str, int] = {}

    def record(name: str):
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            channels = module.out_features if isinstance(module, nn.Linear) else module.out_channels
            positions.setdefault(name, output.numel() // channels)  # batch of one

        return hook

    meta = model
    if not next(meta.parameters()).is_meta:
        raise ValueError("layer_positions: build the model on the meta device (with torch.device('meta'))")
    handles = [m.register_forward_hook(record(n)) for n, m in meta.named_modules() if isinstance(m, LAYER_TYPES)]
    training = meta.training
    try:
        with torch.no_grad():
            meta.eval()(torch.zeros(1, *input_shape, device="meta"))
    finally:
        meta.train(training)
        for handle in handles:
            handle.remove()
    return positions


def layer_macs(weight_numel: int, positions: int) -> int:
    """MACs of a conv or linear layer on one image: every weight meets every output position once."""
    return weight_numel * positions


def static_macs(model: nn.Module, positions: Mapping[str, int]) -> int:
    """MACs per image of `model`'s conv and linear layers as they are (a layer never run costs nothing)."""
    return sum(layer_macs(math.prod(m.weight.shape), positions.get(name, 0))
               for name, m in model.named_modules() if isinstance(m, LAYER_TYPES))
