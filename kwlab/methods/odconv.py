"""ODConv (Li, Zhou & Yao, ICLR 2022, "Omni-Dimensional Dynamic Convolution"; code: OSVAI/ODConv).

Per layer, one attention reads the pooled input: GAP -> Linear C_in -> d without bias, d = max(floor(C_in x r), 16),
r = 1/16 -> BatchNorm -> ReLU, then four heads with bias whose logits are divided by the temperature T:
channel (C_in, sigmoid), filter (C_out, sigmoid), spatial (k x k, sigmoid, one map shared by all channels and kernels)
and kernel (K, softmax). A skipped head is 1: filter for depthwise convs (C_in = C_out = groups, the official test),
spatial for k = 1, kernel for K = 1. The output is

    y_b = a_f[b] * conv(a_c[b] * x_b, sum_i a_w[b,i] * a_s[b] * W_i)

(the official code's 1x1 convs of the attention are linear layers here: the same parameters on a pooled input).
Initialisation as the official code: kernels Kaiming normal (fan_out = C_out x k x k, ReLU), attention linears Kaiming
normal (fan_out), biases 0, BatchNorm 1 / 0. The parameter counts equal the official models' exactly
(tests/methods/test_odconv.py: ResNet18/50, MobileNetV2 1.0/0.5 at K = 1 and 4).

Computation. Nothing per sample is built for the channel and filter attentions: the channel attention scales the
input and the filter attention the output (B x C_in and B x C_out multiplies of activations; StyleGAN2's modulated
convolutions train the same way), and one convolution sits between them. Only the spatial and kernel attentions
shape a per-sample kernel. The spatial attention varies per kernel tap, so the kernels are stored tap-major, `weight`
(K, k, k, C_out, C_in/g): at tap t a sample's kernel is a_s[b,t] sum_i a_w[b,i] W_i[t], a mixture of that tap's K
one-by-one cells W_i[t], i.e. a KernelWarehouse layer with m = k x k mixtures (its taps) over n = K x k x k cells in
which each step mixes its own K cells (the engine's per-step cells, alpha (B, k x k, K)). Its exact algorithms, by
the engine's paths (the cost model picks per layer and input shape with `ODCONV_TAP_COSTS`):
- `grouped`: every sample's kernel a_s (sum_i a_w,i W_i) assembled in conv layout (K + 1 multiply-adds per weight
  and one transposing copy), one convolution with groups = B (the official code's computation, without its
  (B, K, ...) intermediate); the fastest on large feature maps, and the only path for depthwise convs;
- `batched`: each tap's kernel a_s,t sum_i a_w,i W_i[t] assembled from that tap's K cells (K multiply-adds per
  weight) in the layout the batched matmuls read, no copy; the fastest on the deep layers of large images;
- `mixed`: y = sum_(i,t) W_i[t] (a_w,i a_s,t x shifted to tap t): dense products over the batch, no per-sample
  kernel, at K times the convolution's work; the fastest on small feature maps (deep layers, small images);
- `combined` (1x1 convs with K > 1): K dense convolutions, then their a_w-weighted sum;
- `shared`: k = 1 and K = 1 has no per-sample kernel: one plain conv of a_c x, scaled by a_f.
`conv_kernels()` gives the conv layout (K, C_out, C_in/g, k, k) of the official code's `weight`.

Layer selection, the official code's: ResNet: every block conv (BasicBlock 3x3s, Bottleneck 1x1/3x3/1x1) is ODConv;
the stem, the 1x1 shortcut projections and the classifier stay static. MobileNetV2: every conv, depthwise convs and
the last 1x1 to 1280 included, but the stem; the classifier stays static. Other models: every conv but the stem
(see `kwlab.methods.selection.select_layers`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from kwlab.config import Config
from kwlab.methods import mixing
from kwlab.methods.attention import BatchNorm1dAnyBatch, TemperedAttention, attention_hidden, init_attention
from kwlab.methods.dynamic import DYNAMIC_PATH_COSTS, DynamicConv, DynamicMethod, MemoryMode, Pair, TemperatureSettings
from kwlab.methods.protocol import MeanRecorder, register_method
from kwlab.methods.selection import resnet_projection

# ODConv's 3x3 layers: the batched path assembles each tap from its K cells (K multiply-adds per weight, one small
# batched matmul per tap), and the grouped kernels are scaled per tap and transposed. Fitted on 2026-12-07 on a
# 2-core Intel Xeon (one thread) to forward+backward timings of every path of ODConv 1x and 4x on ResNet18 at 64 and
# 224 px (batch 16; other jobs loading the machine) and on the Fashion study's ResNet-8 at half width (14 px, batch
# 64; best of 9, twice, on a quiet machine), the dynamic convolutions' other constants kept: over 38 layer shapes
# `auto`'s paths take 1.0007x the fastest paths' total time, at worst 1.06x on one layer (1.12x and 3.1x with the
# earlier constants). The grouped path's kernels are cheap while all B fit in 4 MB: the 14 px model's layers.
ODCONV_TAP_COSTS = dataclasses.replace(DYNAMIC_PATH_COSTS, batched=2.5, assembly=8, assembly_lean=8, grouped=2.0,
                                       grouped_passes=1, grouped_traffic=(5.0, 280.0), batched_traffic=(42.0, 42.0),
                                       cache_bytes=1 << 22)


class ODConvSettings(Config):
    """The `odconv:` section: K kernels ("1x", "4x"), the attention's reduction r and minimum width, T's schedule."""

    section: ClassVar[str] = "odconv"

    kernels: int = Field(1, ge=1)  # K
    reduction: float = Field(0.0625, gt=0, le=1)  # r: attention width d = max(floor(C_in x r), min_hidden)
    min_hidden: int = Field(16, ge=1)
    temperature: TemperatureSettings = Field(default_factory=TemperatureSettings)
    memory: MemoryMode = "fast"  # fast | lean: whether the KW paths' backward may keep per-sample kernels


class AttentionHead(nn.Module):
    """One head: Linear(d, width) with bias, logits / T, then sigmoid or softmax; its output is what the recorder
    averages."""

    def __init__(self, hidden: int, width: int, function: str) -> None:
        super().__init__()
        self.fc = nn.Linear(hidden, width)
        self.function = function

    def forward(self, hidden: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        """(B, d) -> attention (B, width)."""
        logits = self.fc(hidden) / temperature.to(hidden.dtype)
        return torch.softmax(logits, dim=-1) if self.function == "softmax" else torch.sigmoid(logits)


class Attentions(NamedTuple):
    """One layer's four attentions; a skipped one is None (it is 1)."""

    channel: torch.Tensor  # (B, C_in)
    filter: torch.Tensor | None  # (B, C_out)
    spatial: torch.Tensor | None  # (B, k*k)
    kernel: torch.Tensor | None  # (B, K)


class ODConvAttention(TemperedAttention):
    """GAP'd input -> Linear (no bias) -> BatchNorm -> ReLU -> the channel, filter, spatial and kernel heads."""

    def __init__(self, in_channels: int, out_channels: int, taps: int, kernels: int, hidden: int, depthwise: bool,
                 temperature: float = 1.0) -> None:
        super().__init__(temperature)
        self.fc = nn.Linear(in_channels, hidden, bias=False)
        # NOTE: the official BatchNorm2d raises on a training batch of one; this one uses its running statistics
        self.norm = BatchNorm1dAnyBatch(hidden)
        self.channel = AttentionHead(hidden, in_channels, "sigmoid")
        self.filter = None if depthwise else AttentionHead(hidden, out_channels, "sigmoid")
        self.spatial = None if taps == 1 else AttentionHead(hidden, taps, "sigmoid")
        self.kernel = None if kernels == 1 else AttentionHead(hidden, kernels, "softmax")
        init_attention(self)

    def forward(self, pooled: torch.Tensor) -> Attentions:
        """(B, C_in) -> the four attentions."""
        hidden = F.relu(self.norm(self.fc(pooled)))
        t = self.temperature
        return Attentions(self.channel(hidden, t), None if self.filter is None else self.filter(hidden, t),
                          None if self.spatial is None else self.spatial(hidden, t),
                          None if self.kernel is None else self.kernel(hidden, t))


class ODConv2d(DynamicConv):
    """An ODConv layer with nn.Conv2d's constructor contract plus K, r, the minimum width and the initial T.

    `weight` is tap-major, (K, k, k, C_out, C_in/g) (see the module doc); `bias`, where the replaced conv had one, is
    a plain (C_out) bias added after the filter attention (NOTE: the official layer has none).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Pair, stride: Pair = 1,
                 padding: Pair | str = 0, dilation: Pair = 1, groups: int = 1, bias: bool = False, *,
                 kernels: int = 1, reduction: float = 0.0625, min_hidden: int = 16, temperature: float = 1.0,
                 memory: MemoryMode = "fast") -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, kernels=kernels,
                         memory=memory)
        self.taps = math.prod(self.kernel_size)
        depthwise = in_channels == groups and in_channels == out_channels
        self.attention = ODConvAttention(in_channels, out_channels, self.taps, kernels,
                                         attention_hidden(in_channels, reduction, min_hidden), depthwise, temperature)
        self.weight = nn.Parameter(torch.empty(kernels, *self.kernel_size, out_channels, in_channels // groups))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.reset_kernels()
        # one-by-one cells (C_out, C_in/g): the KW geometry of m = k*k mixtures over n = K*k*k cells
        self.geometry = mixing.Geometry(in_channels, out_channels, groups, self.kernel_size, self.stride,
                                        self.dilation, self.pads, (out_channels, in_channels // groups, 1, 1))

    def conv_kernels(self) -> torch.Tensor:
        """The K kernels in conv layout (K, C_out, C_in/g, k, k) (a view)."""
        return self.weight.permute(0, 3, 4, 1, 2)

    def modelled(self, positions: int, batch: int, itemsize: int) -> dict[str, float]:
        if self.kernels == 1 and self.taps == 1:  # nothing is per-sample but the scalings
            return {"shared": 0.0}
        spatial = self.taps > 1
        return mixing.path_costs(self.geometry, positions, self.kernels * self.taps, ODCONV_TAP_COSTS if spatial
                                 else DYNAMIC_PATH_COSTS, kernels=self.kernels, batch=batch, itemsize=itemsize,
                                 memory=self.memory)

    def engine_trial(self, x: torch.Tensor, path: str) -> None:
        x, grad, head = x.detach().requires_grad_(x.requires_grad), torch.is_grad_enabled(), self.attention

        def constant(width: int, value: float) -> torch.Tensor:
            return x.new_full((x.shape[0], width), value).requires_grad_(grad)

        att = Attentions(constant(self.in_channels, 1.0),
                         None if head.filter is None else constant(self.out_channels, 1.0),
                         None if head.spatial is None else constant(self.taps, 0.5),
                         None if head.kernel is None else constant(self.kernels, 1 / self.kernels))
        mixing.engine_trial(lambda: self.convolve(x, att, path), [x, *att, self.weight, self.bias])

    def mixing_counts(self) -> tuple[int, int]:
        """K x k x k tap cells over K whole kernels; none per sample for k = 1, K = 1 (the scalings alone)."""
        if self.kernels == 1 and self.taps == 1:
            return 1, 0
        return self.kernels * self.taps, self.kernels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = a_f * conv(a_c * x, sum_i a_w,i a_s W_i) (+ bias), along the path for this shape."""
        attentions = self.attention(self.pool(x))
        return self.convolve(x, attentions, self.path_for(x))

    def convolve(self, x: torch.Tensor, att: Attentions, path: str) -> torch.Tensor:
        """The convolution given the attentions, along `path`."""
        dtype = mixing.compute_dtype(x)
        x = x.to(dtype)
        if path == "reference":
            return self.reference(x, att)
        x = x * att.channel.to(dtype)[:, :, None, None]  # the channel attention scales the input
        # (K, k*k, C_out*C_in/g) -> each tap's K cells, (k*k, K, C_out*C_in/g)
        cells = self.weight.view(self.kernels, self.taps, -1).transpose(0, 1)
        inputs = tuple(None if a is None else a.to(dtype) for a in (self.weight, att.kernel, att.spatial))
        out = mixing.convolve(x, self.tap_mixture(att), cells, self.geometry, path, self.memory,
                              functools.partial(self.sample_kernels, x.shape[0]), inputs)
        if att.filter is not None:  # the filter attention scales the output
            out = out * att.filter.to(dtype)[:, :, None, None]
        return out if self.bias is None else out + self.bias.to(dtype)[:, None, None]

    def sample_kernels(self, batch: int, weight: torch.Tensor, kernel: torch.Tensor | None,
                       spatial: torch.Tensor | None) -> torch.Tensor:
        """Every sample's kernel a_s (sum_i a_w,i W_i) in conv layout, (B, C_out, C_in/g, k, k), from the tap-major
        `weight` and the kernel and spatial attentions (None where skipped), all in the compute dtype."""
        cells = weight.view(self.kernels, -1)  # (K, k*k*C_out*C_in/g)
        mixed = kernel @ cells if kernel is not None else cells.expand(batch, -1)
        mixed = mixed.view(batch, self.taps, -1)  # (B, k*k, C_out*C_in/g)
        if spatial is not None:
            mixed = mixed * spatial[:, :, None]
        # (B, k*k, C_out*C_in/g) -> (B, C_out*C_in/g, k*k): conv layout, taps last (one copy)
        return mixed.transpose(1, 2).reshape(batch, *self.weight_shape)

    def tap_mixture(self, att: Attentions) -> torch.Tensor:
        """alpha (B, k*k, K) over each tap's K cells: alpha[b, t, i] = a_w[b,i] a_s[b,t] (1 where skipped)."""
        batch = len(att.channel)
        kernel = att.kernel[:, None, :] if att.kernel is not None else att.channel.new_ones(batch, 1, 1)  # (B, 1, K)
        return kernel if att.spatial is None else kernel * att.spatial[:, :, None]  # (B, k*k, K)

    def reference(self, x: torch.Tensor, att: Attentions) -> torch.Tensor:
        """The formula, one sample at a time: the ground truth of the tests."""
        batch, dtype = x.shape[0], x.dtype
        kernels = self.conv_kernels().to(dtype)  # (K, C_out, C_in/g, k, k)
        a_w = att.kernel if att.kernel is not None else x.new_ones(batch, 1)
        a_s = att.spatial if att.spatial is not None else x.new_ones(batch, self.taps)
        mixed = (a_w.to(dtype)[:, :, None, None, None, None] * kernels[None]).sum(1)  # (B, C_out, C_in/g, k, k)
        mixed = mixed * a_s.to(dtype).view(batch, 1, 1, *self.kernel_size)
        out = mixing.reference_conv(x * att.channel.to(dtype)[:, :, None, None], mixed, self.geometry)
        if att.filter is not None:
            out = out * att.filter.to(dtype)[:, :, None, None]
        return out if self.bias is None else out + self.bias.to(dtype)[:, None, None]


@register_method("odconv")
class ODConv(DynamicMethod):
    """ODConv: four attentions over the kernel space; settings: the `odconv:` section."""

    settings = ODConvSettings

    def keep_static(self, name: str, family: str | None) -> bool:
        """The official ResNets keep the 1x1 shortcut projections static."""
        return resnet_projection(name, family)

    def make_layer(self, conv: nn.Conv2d, settings: ODConvSettings, device: torch.device | str | None = None
                   ) -> DynamicConv:
        """An ODConv2d with `conv`'s shape; T starts at the schedule's start.

        NOTE: a fresh layer's T is `temperature.start` (the official training sets it before the first step).
        """
        return ODConv2d.from_conv(conv, device, kernels=settings.kernels, reduction=settings.reduction,
                                  min_hidden=settings.min_hidden, temperature=settings.temperature.start,
                                  memory=settings.memory)

    def recorder(self, model: nn.Module) -> MeanRecorder:
        """Mean attention per layer: group 'kernel' (K > 1; rows = layers, columns = the K kernels) and, per kernel
        size, group 'spatial_kxk' (rows = layers, columns = the taps). With K = 1 the kernel attention is 1 and the
        spatial map is the attention with one width across layers; the channel and filter attentions have a width
        per layer (C_in, C_out) and do not form one layers x columns table."""
        groups: dict[str, list[tuple[str, nn.Module]]] = {}
        for name, layer in model.named_modules():
            if not isinstance(layer, ODConv2d):
                continue
            if layer.attention.kernel is not None:
                groups.setdefault("kernel", []).append((name, layer.attention.kernel))
            if layer.attention.spatial is not None:
                size = "x".join(map(str, layer.kernel_size))
                groups.setdefault(f"spatial_{size}", []).append((f"{name}.attention.spatial", layer.attention.spatial))
        return MeanRecorder(groups)

    def describe(self, settings: ODConvSettings | None) -> str:
        """'ODConv 4x'."""
        return f"ODConv {self.resolve(settings).kernels}x"
