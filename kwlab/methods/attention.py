"""What the methods' attentions share: the hidden-width rule, a BatchNorm that takes a training batch of one, the
tempered attention of DY-Conv and ODConv, and ODConv's initialisation, which every dynamic convolution uses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kwlab.methods.temperature import Tempered


def attention_hidden(in_channels: int, reduction: float, minimum: int) -> int:
    """Hidden width of an attention MLP: max(int(C_in x reduction), minimum) (KW: minimum 16, ODConv: 16, DY-Conv:
    1)."""
    return max(int(in_channels * reduction), minimum)


class BatchNorm1dAnyBatch(nn.BatchNorm1d):
    """BatchNorm1d that normalises a training batch of one sample with its running statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Batch statistics as usual; a single sample in training mode uses the running ones instead."""
        if self.training and x.shape[0] == 1:
            # NOTE: the reference raises here (one value per channel); running statistics keep batch size 1 trainable.
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


class TemperedAttention(Tempered):
    """Base of an attention whose logits are divided by a temperature T (DY-Conv, ODConv), kept as a buffer."""

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def set_temperature(self, value: float) -> None:
        """Set T."""
        self.temperature.fill_(value)


def init_attention(module: nn.Module) -> None:
    """ODConv's attention initialisation, used by every dynamic convolution here: linear (1x1) layers Kaiming normal
    (fan_out, ReLU) with zero biases; norms weight 1, bias 0."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)
