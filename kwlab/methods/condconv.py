"""CondConv (Yang, Bender, Le & Ngiam, NeurIPS 2019, "CondConv: Conditionally Parameterized Convolutions").

A layer's kernel is W(x) = sum_i r_i(x) W_i over n experts with the routing r(x) = sigmoid(Linear(GAP(x))): no
normalisation across experts and no temperature. The computation equals timm's `timm.layers.CondConv2d` given the
same expert weights (`weight.view(n, -1)` is timm's (n, C_out*C_in/g*k*k) layout) and the same routing weights;
tests/methods/test_condconv.py checks it. Unlike timm's EfficientNet blocks, which compute one routing per block for
all its convs, every CondConv layer here has its own routing function, as in the paper.

Layer selection: every conv but the stem (see `kwlab.methods.selection.select_layers`); linear layers, the classifier
included, stay static. The paper converts hand-picked later blocks of each network and publishes no code for
ResNet18 or MobileNetV2, so kwlab uses DY-Conv's rule, which makes a comparison between the dynamic convolutions at
matched budgets one of like layers. In a ResNet this includes the 1x1 shortcut projections.

Initialisation: each expert Kaiming normal (fan_out, ReLU); the routing Linear Kaiming normal (fan_out), bias 0.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import nn

from kwlab.config import Config
from kwlab.methods.attention import init_attention
from kwlab.methods.dynamic import DynamicConv, DynamicMethod, MemoryMode, MixtureConv2d, Pair
from kwlab.methods.protocol import register_method


class CondConvSettings(Config):
    """The `condconv:` section: the number of experts n and the mixing engine's memory mode."""

    section: ClassVar[str] = "condconv"

    experts: int = Field(8, ge=1)  # n: expert kernels per layer (the paper's EfficientNet models use 8)
    memory: MemoryMode = "fast"  # fast | lean: whether backward may keep the per-sample kernels


class CondConvRouting(nn.Module):
    """r = sigmoid(Linear(pooled x)): one independent weight in (0, 1) per expert."""

    def __init__(self, in_channels: int, experts: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels, experts)
        init_attention(self)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, C_in) -> routing weights (B, n)."""
        return torch.sigmoid(self.fc(pooled))


class CondConv2d(MixtureConv2d):
    """A CondConv layer with nn.Conv2d's constructor contract plus `experts`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Pair, stride: Pair = 1,
                 padding: Pair | str = 0, dilation: Pair = 1, groups: int = 1, bias: bool = False, *,
                 experts: int = 8, memory: MemoryMode = "fast") -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         kernels=experts, memory=memory)
        self.routing = CondConvRouting(in_channels, experts)

    def mixture(self, pooled: torch.Tensor) -> torch.Tensor:
        """The routing weights r (B, n)."""
        return self.routing(pooled)


@register_method("condconv")
class CondConv(DynamicMethod):
    """CondConv: kernels mixed per sample by sigmoid routing; settings: the `condconv:` section."""

    settings = CondConvSettings
    count_key = "experts"

    def make_layer(self, conv: nn.Conv2d, settings: CondConvSettings, device: torch.device | str | None = None
                   ) -> DynamicConv:
        """A CondConv2d with `conv`'s shape."""
        return CondConv2d.from_conv(conv, device, experts=settings.experts, memory=settings.memory)

    def mixture_module(self, layer: DynamicConv) -> nn.Module:
        return layer.routing

    def describe(self, settings: CondConvSettings | None) -> str:
        """'CondConv 8 experts'."""
        return f"CondConv {self.resolve(settings).experts} experts"
