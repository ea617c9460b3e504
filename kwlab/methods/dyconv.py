"""DY-Conv (Chen, Dai, Liu, Chen, Yuan & Liu, CVPR 2020, "Dynamic Convolution: Attention over Convolution Kernels").

A layer's kernel is W(x) = sum_k pi_k(x) W_k over K kernels (K = 4), with the attention
pi = softmax(FC(ReLU(FC(GAP(x)))) / T): hidden width max(floor(C_in x reduction), 1), reduction 1/4, both FCs with
bias. T falls linearly from 30 to 1 over the first 10 epochs (`temperature`), so that every kernel trains early.

Biases: the paper mixes one bias per kernel the same way. Where the replaced conv has a bias, kwlab does so too
(bias (K, C_out)); ResNet and MobileNetV2 convs have none (a BatchNorm follows, which would cancel it), and kwlab adds
none. No official code exists.

Initialisation (the paper gives none): each kernel Kaiming normal (fan_out, ReLU), the FCs Kaiming normal (fan_out)
with zero biases, as ODConv's code does.

Layer selection: every conv but the first, as in the paper; linear layers (the classifier) stay static. In a ResNet
this includes the 1x1 shortcut projections; in MobileNetV2 every block conv (depthwise included) and the 1x1 head.

Parameter counts (1000 classes, K = 4; tests/methods/test_dyconv.py) against the paper's, which publishes no code:
- DY-ResNet-18: kwlab 45,472,052 (1.859G MACs) vs 42.7M (1.85G). 45.47M is what the stated design gives: three
  more copies of the 11.16M conv weights outside the stem (+33.47M) plus 0.31M of attention. The obvious variants
  do not give the paper's figure either (shortcut projections static: 44.93M; layer4.0.conv1 static as well:
  41.38M), so its count is not reproducible from its description; kwlab keeps the stated design.
- DY-MobileNetV2 x1.0: kwlab 12,404,540 (311.9M MACs) vs 11.1M (312.9M). The kernels (8.76M) follow from the
  design; the difference sits in the attention (2.33M here): C_in/4 on the 576- and 960-channel inputs of the
  depthwise and projection convs costs about 1.14M each. The paper's figure is met within 0.05M if the 1x1 head
  (320 -> 1280) stays static (11.15M), or within 0.14M with a reduction of 1/8 (11.24M); the paper states neither,
  so kwlab keeps its stated rule and C/4 (`reduction` changes it).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from kwlab.config import Config
from kwlab.methods.attention import TemperedAttention, attention_hidden, init_attention
from kwlab.methods.dynamic import DynamicConv, DynamicMethod, MemoryMode, MixtureConv2d, Pair, TemperatureSettings
from kwlab.methods.protocol import register_method


class DyConvSettings(Config):
    """The `dyconv:` section: K kernels, the attention's reduction and the temperature schedule."""

    section: ClassVar[str] = "dyconv"

    kernels: int = Field(4, ge=1)  # K
    reduction: float = Field(0.25, gt=0, le=1)  # hidden width = max(floor(C_in x reduction), 1)
    temperature: TemperatureSettings = Field(default_factory=TemperatureSettings)
    memory: MemoryMode = "fast"  # fast | lean: whether backward may keep the per-sample kernels


class DyConvAttention(TemperedAttention):
    """pi = softmax(fc2(relu(fc1(pooled))) / T) over the K kernels."""

    def __init__(self, in_channels: int, kernels: int, hidden: int, temperature: float = 1.0) -> None:
        super().__init__(temperature)
        self.fc1 = nn.Linear(in_channels, hidden)
        self.fc2 = nn.Linear(hidden, kernels)
        init_attention(self)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, C_in) -> pi (B, K), rows summing to 1."""
        logits = self.fc2(F.relu(self.fc1(pooled)))
        return torch.softmax(logits / self.temperature.to(logits.dtype), dim=-1)


class DyConv2d(MixtureConv2d):
    """A DY-Conv layer with nn.Conv2d's constructor contract plus K, the reduction and the initial T."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Pair, stride: Pair = 1,
                 padding: Pair | str = 0, dilation: Pair = 1, groups: int = 1, bias: bool = False, *,
                 kernels: int = 4, reduction: float = 0.25, temperature: float = 1.0,
                 memory: MemoryMode = "fast") -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         kernels=kernels, memory=memory)
        self.attention = DyConvAttention(in_channels, kernels, attention_hidden(in_channels, reduction, 1), temperature)

    def mixture(self, pooled: torch.Tensor) -> torch.Tensor:
        """The kernel attention pi (B, K)."""
        return self.attention(pooled)


@register_method("dyconv")
class DyConv(DynamicMethod):
    """DY-Conv: kernels mixed per sample by a tempered softmax attention; settings: the `dyconv:` section."""

    settings = DyConvSettings

    def make_layer(self, conv: nn.Conv2d, settings: DyConvSettings, device: torch.device | str | None = None
                   ) -> DynamicConv:
        """A DyConv2d with `conv`'s shape; T starts at the schedule's start.

        NOTE: a fresh layer's T is `temperature.start` (the value training begins with), not 1.
        """
        return DyConv2d.from_conv(conv, device, kernels=settings.kernels, reduction=settings.reduction,
                                  temperature=settings.temperature.start, memory=settings.memory)

    def mixture_module(self, layer: DynamicConv) -> nn.Module:
        return layer.attention

    def describe(self, settings: DyConvSettings | None) -> str:
        """'DY-Conv 4 kernels'."""
        return f"DY-Conv {self.resolve(settings).kernels} kernels"
