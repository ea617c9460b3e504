"""What the dynamic convolutions (CondConv, DY-Conv, ODConv) share: the layer base, their temperature's settings,
their cost constants for the mixing engine and the protocol adapter.

Each of them makes a layer's kernel a per-sample mixture of K whole kernels, W_b = sum_i alpha_b,i W_i (Yang et al.
2019; Chen et al. 2020; Li, Zhou & Yao 2022). In the mixing engine's terms (kwlab.methods.mixing) that is m = 1
mixture over n = K cells whose cell is the whole kernel; the engine's paths apply as they are:

- `grouped`: every sample's kernel assembled in conv layout, one convolution with groups = B x groups; the fastest
  on large feature maps on the CPU measured (mkldnn runs it close to the dense rate), and the only path for grouped
  and depthwise convs;
- `batched`: the kernels assembled a block at a time and applied as batched matmuls; the fastest in between, and for
  1x1 convs;
- `mixed`: no per-sample kernel at all, y = sum_i W_i (alpha_i x): K dense products over the batch; the fastest on
  small feature maps, where assembling B kernels costs more than K products.

The engine's cost model (`path_costs`) picks one per layer and input shape with `DYNAMIC_PATH_COSTS`, fitted to
measurements; `reference` is the plain computation the tests check every path against. ODConv expresses its per-tap spatial
attention through the same paths (kwlab.methods.odconv). Layer selection: kwlab.methods.selection.
"""

from __future__ import annotations

import math
import re
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn
from torch.nn.modules.utils import _pair

from kwlab.config import Config
from kwlab.errors import KWLabError
from kwlab.methods import mixing
from kwlab.methods.attention import init_attention
from kwlab.methods.mixing.roofline import LayerWork
from kwlab.methods.pricing import input_elements, static_macs
from kwlab.methods.protocol import AttentionAxes, MeanRecorder, Method, Price, Schedule
from kwlab.methods.selection import Selection, select_layers
from kwlab.methods.temperature import AnnealLength, LinearAnneal

MemoryMode = Literal["fast", "lean"]
Pair = int | tuple[int, int]  # a size per spatial dim, or one for both


class TemperatureSettings(AnnealLength):
    """The attention temperature T of DY-Conv and ODConv: logits are divided by T. T falls linearly, per iteration,
    from `start` to `end` over the anneal's length (`epochs`, both papers' rule with 10, or `fraction` of training),
    then stays `end`."""

    section: ClassVar[str] = "temperature"

    start: float = Field(30.0, gt=0, allow_inf_nan=False)
    end: float = Field(1.0, gt=0, allow_inf_nan=False)


# The engine's cost constants for the dynamic convolutions, in units of one multiply-add of a static 3x3 convolution
# (forward and backward). Fitted on 2026-12-07 on a 2-core Intel Xeon (AVX-512; torch 2.14.1, one thread) to
# forward+backward timings of every path of every CondConv 8 and DY-Conv 4 layer shape of ResNet18 at 64 and 224 px
# (batch 16, best of 2-3, other jobs loading the machine at times) and of the Fashion study's ResNet-8 at half width
# (14 px, batch 64, best of 9, twice, on a quiet machine): 48 layer shapes, a coordinate search on the mean log
# slowdown of the chosen path against the fastest. `auto` then takes paths 1.003x the fastest in total time, at worst
# 1.21x on one layer (the constants fitted earlier on an AMD EPYC: 1.48x in total on this Xeon, mostly `grouped` on
# 256- and 512-channel layers at 224 px, 1.8-2.8x slower than `batched`). The grouped 1x1 convolution runs far below
# the dense rate, and `mixed` on 1x1 kernels needs no unfolded input. `combined` (K dense convolutions) won on 3 of
# the 48 shapes, by under 25%: the fit leaves it to 'measured', which times it. NOTE: not measured on an accelerator
# (no GPU was available for this work); CUDA uses the same constants until someone fits them there.
DYNAMIC_PATH_COSTS = mixing.PathCosts(batched=3.0, assembly=1, assembly_lean=1, batched_traffic=(50.0, 42.0),
                                      mixed=0.84, mixed_pointwise=1.4, mixing=0, mixed_traffic=113.0,
                                      output_traffic=113.0, grouped=1.7, grouped_pointwise=4.5,
                                      grouped_traffic=(60.0, 140.0), cache_bytes=1 << 24, combined=2.8,
                                      combined_traffic=50.0)


class DynamicConv(nn.Module):
    """Base of the dynamic convolution layers: nn.Conv2d's shape contract plus K kernels (`weight`, layout set by the
    subclass), the global average pool their attention reads, and the path the forward takes (`path`: 'auto' picks
    per input shape; tests and `kwlab bench` force one of PATHS)."""

    weight: nn.Parameter
    geometry: mixing.Geometry  # the engine's shape contract, its cells as the subclass stores its kernels

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Pair, stride: Pair = 1,
                 padding: Pair | str = 0, dilation: Pair = 1, groups: int = 1, *, kernels: int,
                 memory: MemoryMode = "fast") -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must divide by groups")
        if kernels < 1:
            raise ValueError(f"kernels: expected at least 1, got {kernels}")
        self.in_channels, self.out_channels, self.groups, self.kernels = in_channels, out_channels, groups, kernels
        self.kernel_size, self.stride, self.dilation = _pair(kernel_size), _pair(stride), _pair(dilation)
        self.padding = padding if isinstance(padding, str) else _pair(padding)
        self.memory = memory  # fast | lean: whether the engine's backward may keep per-sample kernels
        self.path = "auto"
        self.training_path: str | None = None  # the path of the last forward under autograd
        self.chosen: dict = {}  # the cost model's choice per memory mode and input (mixing.resolve_path)
        self.pads = mixing.resolve_padding(self.padding, self.kernel_size, self.dilation)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """One kernel's shape in conv layout, (C_out, C_in/g, k, k)."""
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    def reset_kernels(self) -> None:
        """Each of the K kernels Kaiming normal (fan_out = C_out x k x k, ReLU), as ODConv's code does."""
        fan_out = self.out_channels * math.prod(self.kernel_size)
        with torch.no_grad():
            self.weight.normal_(0.0, math.sqrt(2.0 / fan_out))

    @torch.no_grad()
    def reset_like_reference(self) -> None:
        """ODConv's code's initialisation (kwlab.models.init, `model.init: reference`): kernels as `reset_kernels`,
        attention as `init_attention`, biases 0; a fresh layer already has it."""
        self.reset_kernels()
        for child in self.children():
            init_attention(child)
        if getattr(self, "bias", None) is not None:
            self.bias.zero_()

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pool: (B, C_in, H, W) -> (B, C_in), the attention's input."""
        return x.mean(dim=(2, 3))

    def positions(self, x: torch.Tensor) -> int:
        """Output positions per sample for input x."""
        return math.prod(self.geometry.out_size(tuple(x.shape[2:])))

    def path_for(self, x: torch.Tensor) -> str:
        """The path the forward takes for input x (B, C_in, H, W): `path`, or the one 'auto' or 'measured' picks."""
        path = mixing.resolve_path(
            self.path, lambda: self.modelled(self.positions(x), x.shape[0], mixing.compute_dtype(x).itemsize),
            lambda path: self.engine_trial(x, path), x,
            (type(self), self.geometry, self.kernels, self.memory, self.bias is not None), self.chosen, self.memory)
        if torch.is_grad_enabled():
            self.training_path = path
        return path

    def modelled(self, positions: int, batch: int, itemsize: int) -> dict[str, float]:
        """The modelled cost of each path this layer can take for a batch of `batch` samples with P = `positions`
        output positions each (`mixing.path_costs`)."""
        raise NotImplementedError

    def engine_trial(self, x: torch.Tensor, path: str) -> None:
        """One call of this layer's convolution along `path` on x with made-up attentions, backward included where
        autograd records (what the 'measured' choice times; no .grad is touched)."""
        raise NotImplementedError

    def conv_kernels(self) -> torch.Tensor:
        """The K kernels in conv layout (K, C_out, C_in/g, k, k)."""
        raise NotImplementedError

    def mixing_counts(self) -> tuple[int, int]:
        """(n cells the engine mixes, whole kernels mixed per weight; 0 when the kernel is not per sample), as
        `mixing.floor_macs` counts them: K whole-kernel cells by default."""
        return self.kernels, self.kernels

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, device: torch.device | str | None = None, **options: Any) -> DynamicConv:
        """A layer of this class with `conv`'s shape, in its dtype, on its device (or on `device`)."""
        with torch.device(device if device is not None else conv.weight.device):
            layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                        conv.dilation, conv.groups, bias=conv.bias is not None, **options)
        return layer.to(dtype=conv.weight.dtype)

    def extra_repr(self) -> str:
        """Torch-style summary plus K."""
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}, kernels={self.kernels}")


class MixtureConv2d(DynamicConv):
    """y_b = conv(x_b, sum_i alpha_b,i W_i) + sum_i alpha_b,i bias_i: CondConv's and DY-Conv's layer. Subclasses give
    the mixture weights alpha (B, K) from the pooled input (`mixture`).

    `weight` is (K, C_out, C_in/g, k, k); `weight.view(K, -1)` is timm's CondConv2d layout (K, C_out*C_in/g*k*k).
    `bias`, where the replaced conv had one, is one bias per kernel (K, C_out), mixed like the kernels.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Pair, stride: Pair = 1,
                 padding: Pair | str = 0, dilation: Pair = 1, groups: int = 1, bias: bool = False, *,
                 kernels: int, memory: MemoryMode = "fast") -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, kernels=kernels,
                         memory=memory)
        self.weight = nn.Parameter(torch.empty(kernels, *self.weight_shape))
        self.bias = nn.Parameter(torch.zeros(kernels, out_channels)) if bias else None
        self.reset_kernels()
        # whole-kernel cells: the engine's geometry for m = 1 mixture over n = K cells
        self.geometry = mixing.Geometry(in_channels, out_channels, groups, self.kernel_size, self.stride,
                                        self.dilation, self.pads, self.weight_shape)

    def mixture(self, pooled: torch.Tensor) -> torch.Tensor:
        """alpha (B, K) from the pooled input (B, C_in)."""
        raise NotImplementedError

    def conv_kernels(self) -> torch.Tensor:
        return self.weight

    def modelled(self, positions: int, batch: int, itemsize: int) -> dict[str, float]:
        return mixing.path_costs(self.geometry, positions, self.kernels, DYNAMIC_PATH_COSTS, batch=batch,
                                 itemsize=itemsize, memory=self.memory)

    def engine_trial(self, x: torch.Tensor, path: str) -> None:
        x = x.detach().requires_grad_(x.requires_grad)
        alpha = x.new_full((x.shape[0], self.kernels), 1 / self.kernels).requires_grad_(torch.is_grad_enabled())
        mixing.engine_trial(lambda: self.convolve(x, alpha, path), [x, alpha, self.weight, self.bias])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve every sample with its own mixed kernel, along the path for this shape."""
        alpha = self.mixture(self.pool(x))  # (B, K)
        return self.convolve(x, alpha, self.path_for(x))

    def convolve(self, x: torch.Tensor, alpha: torch.Tensor, path: str) -> torch.Tensor:
        """y_b = conv(x_b, sum_i alpha_b,i W_i) + mixed bias, along `path`."""
        out = mixing.convolve(x, alpha[:, None], self.weight.view(self.kernels, -1), self.geometry, path, self.memory)
        if self.bias is None:  # (K, N): n = K whole-kernel cells
            return out
        return out + (alpha.to(out.dtype) @ self.bias.to(out.dtype))[:, :, None, None]  # mixed bias (B, C_out)


# ------------------------------------------------------------------------------------------------- the method adapter


class DynamicMethod(Method):
    """The protocol for a dynamic convolution: convert by the layer selection, price from meta-device layers, record
    the mean mixture weights, anneal the temperature if the settings have one. Subclasses set `settings` and define
    `make_layer`, `mixture_module` and, where the method has its own rule, `keep_static`."""

    count_key: ClassVar[str] = "kernels"  # the settings key of K, the kernels (experts) a layer mixes
    attention_axes = AttentionAxes(rows="layer", columns="expert (kernel) k", columns_plural="experts",
                                   sentence="per routing group (rows: its layers, or their mixtures; columns: the "
                                            "experts, i.e. the kernels a layer mixes)")

    def keep_static(self, name: str, family: str | None) -> bool:
        """The method's own rule on top of the generic selection (none by default)."""
        return False

    @abstractmethod
    def make_layer(self, conv: nn.Conv2d, settings: Config, device: torch.device | str | None = None) -> DynamicConv:
        """The dynamic layer replacing `conv` (in its dtype, on its device unless `device` is given)."""

    def resolve(self, settings: Config | None) -> Config:
        """The given settings, or the defaults."""
        assert self.settings is not None
        return settings if settings is not None else self.settings()

    def selection(self, model: nn.Module) -> Selection:
        """The layers this method makes dynamic (see `select_layers` and `keep_static`)."""
        return select_layers(model, self.keep_static, converted=DynamicConv)

    def convert(self, model: nn.Module, settings: Config | None) -> nn.Module:
        """Replace every selected conv by the method's dynamic layer, in place."""
        settings = self.resolve(settings)
        for name in self.selection(model).dynamic:
            model.set_submodule(name, self.make_layer(model.get_submodule(name), settings))
        return model

    def price(self, model: nn.Module, settings: Config | None, positions: Mapping[str, int]) -> Price:
        """Parameters from the layers built on the meta device (nothing allocated); MACs per image = the static
        model's conv and linear layers + each dynamic layer's attention linear layers (in x out) + its mixing
        (K kernels x kernel size); the floor takes each layer's cheapest exact algorithm (`mixing.floor_macs`)."""
        settings = self.resolve(settings)
        selection = self.selection(model)
        total = sum(p.numel() for p in model.parameters())
        replaced = kernel_params = attention_params = attention = assembly = saved = 0
        layers, work = [], []
        for name in selection.dynamic:
            conv = model.get_submodule(name)
            layer = self.make_layer(conv, settings, device="meta")
            replaced += sum(p.numel() for p in conv.parameters())
            own = sum(p.numel() for p in (layer.weight, getattr(layer, "bias", None)) if p is not None)
            att = sum(p.numel() for p in layer.parameters()) - own
            kernel_params += own
            attention_params += att
            linears = sum(m.in_features * m.out_features for m in layer.modules() if isinstance(m, nn.Linear))
            mix = layer.kernels * math.prod(layer.weight_shape)
            if positions.get(name, 0) > 0:  # a layer never run costs nothing
                attention += linears
                assembly += mix
                cells, kernels = layer.mixing_counts()
                static_work = positions[name] * layer.geometry.kernel_numel
                # what the cheapest exact algorithm saves on the convolution and the assembly
                saved += static_work + mix - mixing.floor_macs(layer.geometry, positions[name], cells, kernels)
                work.append(LayerWork(layer.geometry, positions[name], input_elements(conv, positions[name]), cells,
                                      kernels, layer.weight.numel(), linears))
            layers.append({"layer": name, "in": conv.in_channels, "out": conv.out_channels,
                           "kernel": list(conv.kernel_size), "groups": conv.groups, "kernels": layer.kernels,
                           "params": own, "attention_params": att})
        conv_macs = static_macs(model, positions)
        other = total - replaced
        macs = conv_macs + attention + assembly
        return Price(other + kernel_params + attention_params, macs,
                     {"kernels": kernel_params, "attention": attention_params, "other": other},
                     {"conv": conv_macs, "attention": attention, "mixing": assembly},
                     {"dynamic_layers": layers, "static_layers": list(selection.static)}, floor=macs - saved,
                     layers=tuple(work))

    def recorder(self, model: nn.Module) -> MeanRecorder:
        """Mean mixture weights per layer: group 'routing', rows = layers, columns = the K kernels."""
        return MeanRecorder({"routing": [(name, self.mixture_module(layer)) for name, layer in model.named_modules()
                                         if isinstance(layer, DynamicConv)]})

    def mixture_module(self, layer: DynamicConv) -> nn.Module:
        """The submodule whose output is the layer's (B, K) mixture weights."""
        raise NotImplementedError

    def schedule(self, settings: Config | None, steps_per_epoch: int, total_steps: int) -> Schedule | None:
        """T from `temperature` in the method's own section, for methods that have one; None otherwise."""
        temperature = getattr(self.resolve(settings), "temperature", None)
        if temperature is None:
            return None
        return LinearAnneal(temperature.steps(steps_per_epoch, total_steps), temperature.start, temperature.end)

    def bench_settings(self, token: str) -> dict[str, Any] | None:
        """The method's name with K, e.g. 'condconv8', 'dyconv4', 'odconv4x' (the name alone: the defaults)."""
        match = re.fullmatch(rf"{re.escape(self.name)}(\d*)x?", token)
        if match is None:
            return None
        if match[1] and int(match[1]) < 1:
            raise KWLabError(f"--variants: {token!r} needs at least one kernel")
        return {self.count_key: int(match[1])} if match[1] else {}
