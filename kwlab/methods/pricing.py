"""Analytic pricing helpers shared by the methods: where each conv and linear layer sits in the feature map, and
what the static model's conv and linear layers cost. A meta-device traced forward pass gives the shapes; nothing
is allocated or computed."""

from __future__ import annotations

import math
from collections.abc import Mapping

from torch import nn

from kwlab.methods.selection import trace

LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def layer_positions(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Output positions per image of every conv and linear layer (tokens for a linear layer), from one traced
    forward pass of `model`, which must be on the meta device, on a (1, *input_shape) input."""
    if not next(model.parameters()).is_meta:
        raise ValueError("layer_positions: build the model on the meta device (with torch.device('meta'))")
    layers = {n: m for n, m in model.named_modules() if isinstance(m, LAYER_TYPES)}
    positions: dict[str, int] = {}
    for name, shape in trace(model, layers, input_shape):
        module = layers[name]
        channels = module.out_features if isinstance(module, nn.Linear) else module.out_channels
        positions.setdefault(name, math.prod(shape) // channels)  # batch of one
    return positions


def layer_macs(weight_numel: int, positions: int) -> int:
    """MACs of a conv or linear layer on one image: every weight meets every output position once."""
    return weight_numel * positions


def input_elements(module: nn.Module, positions: int) -> int:
    """C_in x input positions per image of a conv or linear layer with `positions` output positions: its strides
    times them (exact for 'same' padding, within the border otherwise)."""
    channels = module.in_features if isinstance(module, nn.Linear) else module.in_channels
    return channels * positions * math.prod(getattr(module, "stride", (1,)))


def static_macs(model: nn.Module, positions: Mapping[str, int]) -> int:
    """MACs per image of `model`'s conv and linear layers as they are (a layer never run costs nothing)."""
    return sum(layer_macs(math.prod(m.weight.shape), positions.get(name, 0))
               for name, m in model.named_modules() if isinstance(m, LAYER_TYPES))
