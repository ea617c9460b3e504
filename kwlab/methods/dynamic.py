"""What the dynamic convolutions (CondConv, DY-Conv, ODConv) share: the layer base, the layer selection, the
temperature schedule, the fast-path choice and the protocol adapter.

Each of them makes a layer's kernel a per-sample mixture of K whole kernels, W_b = sum_i alpha_b,i W_i (Yang et al.
2019; Chen et al. 2020; Li, Zhou & Yao 2022). In KernelWarehouse terms (kwlab.methods.kw.fastpath) that is m = 1
mixture over n = K cells whose cell is the whole kernel, so the KW fast paths apply as they are:

- `grouped`: every sample's kernel assembled in conv layout, one convolution with groups = B x groups; the fastest
  on large feature maps on the CPU measured (mkldnn runs it close to the dense rate), and the only path for grouped
  and depthwise convs;
- `batched`: the kernels assembled a block at a time and applied as batched matmuls; the fastest in between, and for
  1x1 convs;
- `mixed`: no per-sample kernel at all, y = sum_i W_i (alpha_i x): K dense products over the batch; the fastest on
  small feature maps, where assembling B kernels costs more than K products.

`choose_path` picks one per layer and input shape from a cost model fitted to measurements; `reference` is the plain
per-sample loop the tests check every path against. ODConv expresses its per-tap spatial attention through the same
paths (kwlab.methods.odconv).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.nn.modules.utils import _pair

from kwlab.config import Config
from kwlab.errors import KWLabError
from kwlab.methods.kw.fastpath import Geometry, compute_dtype, kw_conv, resolve_padding
from kwlab.methods.pricing import static_macs
from kwlab.methods.protocol import MeanRecorder, Method, Price, Schedule
from kwlab.methods.temperature import AnnealLength, LinearAnneal

PATHS = ("auto", "reference", "grouped", "batched", "mixed")
MemoryMode = Literal["fast", "lean"]
Pair = int | tuple[int, int]  # a size per spatial dim, or one for both


# ------------------------------------------------------------------------------------------------- temperature


class TemperatureSettings(AnnealLength):
    """The attention temperature T of DY-Conv and ODConv: logits are divided by T. T falls linearly, per iteration,
    from `start` to `end` over the anneal's length (`epochs`, both papers' rule with 10, or `fraction` of training),
    then stays `end`."""

    section: ClassVar[str] = "temperature"

    start: float = Field(30.0, gt=0, allow_inf_nan=False)
    end: float = Field(1.0, gt=0, allow_inf_nan=False)


class TemperedAttention(nn.Module):
    """Base of an attention whose logits are divided by a temperature T, kept as a buffer so that it is saved with the
    model, moves with `.to()` and is copied by an EMA."""

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("temperature", torch.tensor(float(temperature)))


def set_temperature(model: nn.Module, temperature: float) -> int:
    """Set T in every tempered attention of `model`; returns how many were set."""
    count = 0
    for module in model.modules():
        if isinstance(module, TemperedAttention):
            module.temperature.fill_(temperature)
            count += 1
    return count


@dataclass(frozen=True)
class TemperatureAnnealing(LinearAnneal):
    """T from `start` to `end` over S iterations (ODConv's `get_temperature`; DY-Conv anneals the same way)."""

    steps: int
    start: float = 30.0
    end: float = 1.0

    def apply(self, model: nn.Module, value: float) -> None:
        """Set T in every tempered attention."""
        set_temperature(model, value)


def init_attention(module: nn.Module) -> None:
    """ODConv's attention initialisation, used by every dynamic method here: linear (1x1) layers Kaiming normal
    (fan_out, ReLU) with zero biases; norms weight 1, bias 0."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


def hidden_width(in_channels: int, reduction: float, minimum: int) -> int:
    """Hidden width of an attention MLP: max(floor(C_in x reduction), minimum)."""
    return max(int(in_channels * reduction), minimum)


# ------------------------------------------------------------------------------------------------- layer selection


@dataclass(frozen=True)
class Selection:
    """Which conv layers of a model a method makes dynamic, and which conv and linear layers stay static."""

    dynamic: tuple[str, ...]
    static: tuple[str, ...]


def _probe_shape(model: nn.Module) -> tuple[int, int, int]:
    """The (C, H, W) of one input image: the model's timm input size, with the channels of its first convolution
    (a model built with another `in_chans` keeps the default config's 3)."""
    from kwlab.methods.kw.layouts import input_size

    size = input_size(model)
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    channels = getattr(model, "in_chans", None) or (first.in_channels if first is not None else size[0])
    return (int(channels), int(size[-2]), int(size[-1]))


def select_layers(model: nn.Module, keep_static: Callable[[str, str | None], bool] | None = None) -> Selection:
    """The generic rule of all three methods: every 2-d convolution but the first (the stem) is dynamic.

    One forward pass (on the model's device; free on the meta device) at the model's default input size finds the
    convolutions that run. Static: the first that reads the image, those whose output has a single position
    (squeeze-excite gates and heads on pooled features), a conv classifier, and subclasses of nn.Conv2d that compute
    something else (timm's Conv2dSame, StdConv2d) or pad other than with zeros. Linear layers (the classifier) stay
    static. `keep_static(name, family)` adds a method's own rule (family as kwlab.models.families.family_of says,
    e.g. 'resnet').
    """
    from kwlab.models.families import family_of

    if any(isinstance(m, DynamicConv) for m in model.modules()):
        raise KWLabError(f"{type(model).__name__} already has dynamic convolutions; convert a static model")
    convs = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    executed: list[tuple[str, bool]] = []  # (name, output has more than one position)

    def record(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
            executed.append((name, output.shape[-2] * output.shape[-1] > 1))

        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in convs.items()]
    training = model.training
    parameter = next(model.parameters())
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *_probe_shape(model), device=parameter.device, dtype=parameter.dtype))
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()

    family = family_of(model)
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    dynamic: list[str] = []
    seen: set[str] = set()
    for position, (name, spread) in enumerate(executed):
        if name in seen:  # a layer called twice keeps its first decision
            continue
        seen.add(name)
        module = convs[name]
        plain = type(module) is nn.Conv2d and module.padding_mode == "zeros"
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


# ------------------------------------------------------------------------------------------------- choosing a path

@dataclass(frozen=True)
class PathCosts:
    """Constants of `choose_path`'s cost model, in units of one multiply-add of a static 3x3 convolution (forward and
    backward), per sample: the cost of a multiply-add in the per-sample grouped convolution, in `batched`'s matmuls
    and in `mixed`'s dense products (for 3x3 and larger kernels; the grouped 1x1 convolution runs far below the dense
    rate, and `mixed` on 1x1 kernels needs no unfolded copy of the input); the cost of moving one per-sample kernel
    element through memory for `grouped` and for `batched`, while all B kernels of a layer fit in `cache_bytes` and
    once they do not; the cost of one element of `mixed`'s per-cell intermediates (mixed inputs, partial outputs)."""

    grouped: float = 1.45
    grouped_pointwise: float = 4.5
    batched: float = 3.55
    mixed: float = 2.0
    mixed_pointwise: float = 1.4
    grouped_traffic: tuple[float, float] = (85.0, 100.0)
    batched_traffic: tuple[float, float] = (50.0, 120.0)
    mixed_traffic: float = 113.0
    cache_bytes: int = 1 << 26


# Fitted to forward+backward timings of every path (one thread, best of 3 to 5) of CondConv 8, DY-Conv 4, ODConv 1x
# and 4x layers on ResNet18's shapes at 64x64 and 224x224 inputs, batch 16, on a 2-core AMD EPYC: over 57 layer x
# method pairs `auto` took the fastest path on 54 and was within 1.15x on the others. NOTE: not measured on an
# accelerator (no GPU was available for this work); CUDA uses the same constants until someone fits them there.
PATH_COSTS = PathCosts()


def choose_path(geometry: Geometry, positions: int, kernels: int, batch: int = 1, itemsize: int = 4,
                tap_cells: bool = False, kernel_passes: int = 1, costs: PathCosts = PATH_COSTS) -> str:
    """The cheapest path for a dynamic convolution with P = `positions` output positions per sample and K kernels.

    Per-sample costs, N = C_out x C_in x k x k the kernel size (see PathCosts for the constants):
    - grouped: P N at the grouped convolution's rate, plus K N to assemble the kernel and `kernel_passes` moves of
      each kernel element through memory (ODConv's spatial scaling and layout copy add one);
    - batched: P N as batched matmuls, plus the assembly (K N; 2 K k k N with per-tap cells, ODConv's
      block-diagonal attention over k x k cells per tap) and one move of the kernel;
    - mixed: K P N as dense products, plus its intermediates: n x P x (c_in' + C_out) elements for n cells of
      c_in' columns (n = K whole kernels of C_in x k x k columns, or K x k x k one-by-one cells of C_in).
    Grouped and depthwise convolutions take `grouped` (the only path for them).
    """
    if geometry.groups > 1:
        return "grouped"
    taps = math.prod(geometry.kernel)
    size = geometry.out_channels * geometry.in_channels * taps  # N
    spilled = batch * size * itemsize > costs.cache_bytes
    cells, columns = (kernels * taps, geometry.in_channels) if tap_cells else (kernels, geometry.in_channels * taps)
    grouped_rate, mixed_rate = (costs.grouped, costs.mixed) if taps > 1 else (costs.grouped_pointwise,
                                                                             costs.mixed_pointwise)
    candidates = {
        "grouped": positions * size * grouped_rate
        + (kernels + kernel_passes * costs.grouped_traffic[spilled]) * size,
        "batched": positions * size * costs.batched
        + ((2 * kernels * taps if tap_cells else kernels) + costs.batched_traffic[spilled]) * size,
        "mixed": kernels * positions * size * mixed_rate
        + costs.mixed_traffic * cells * positions * (columns + geometry.out_channels),
    }
    return min(candidates, key=candidates.__getitem__)


# ------------------------------------------------------------------------------------------------- the layers


def per_sample_conv(x: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, int],
                    padding: str | tuple[int, int], dilation: tuple[int, int], groups: int) -> torch.Tensor:
    """The plain computation: y_b = conv(x_b, W_b) + b_b, one convolution per sample (kernels (B, C_out, C_in/g, k, k),
    bias (B, C_out) or None). The ground truth of the tests."""
    outputs = [F.conv2d(x[b : b + 1], kernels[b], None if bias is None else bias[b], stride, padding, dilation, groups)
               for b in range(x.shape[0])]
    return torch.cat(outputs)


class DynamicConv(nn.Module):
    """Base of the dynamic convolution layers: nn.Conv2d's shape contract plus K kernels (`weight`, layout set by the
    subclass), the global average pool their attention reads, and the path the forward takes (`path`: 'auto' picks
    per input shape; tests and `kwlab bench` force one of PATHS)."""

    weight: nn.Parameter
    geometry: Geometry  # the KW fast paths' shape contract, its cells as the subclass stores its kernels

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
        self.memory = memory  # fast | lean: whether the KW paths' backward may keep per-sample kernels
        self.path = "auto"
        self.pads = resolve_padding(self.padding, self.kernel_size, self.dilation)

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
        """The path the forward takes for input x (B, C_in, H, W)."""
        if self.path not in PATHS:
            raise ValueError(f"dynamic conv path {self.path!r} is not one of {PATHS}")
        if self.path != "auto":
            return self.path
        return self.choose(self.positions(x), x.shape[0], compute_dtype(x).itemsize)

    def choose(self, positions: int, batch: int, itemsize: int) -> str:
        """The path for a batch of `batch` samples with P = `positions` output positions each."""
        raise NotImplementedError

    def conv_kernels(self) -> torch.Tensor:
        """The K kernels in conv layout (K, C_out, C_in/g, k, k)."""
        raise NotImplementedError

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
        # whole-kernel cells: the KW fast paths' geometry for m = 1 mixture over n = K cells
        self.geometry = Geometry(in_channels, out_channels, groups, self.kernel_size, self.stride, self.dilation,
                                 self.pads, self.weight_shape)

    def mixture(self, pooled: torch.Tensor) -> torch.Tensor:
        """alpha (B, K) from the pooled input (B, C_in)."""
        raise NotImplementedError

    def conv_kernels(self) -> torch.Tensor:
        return self.weight

    def choose(self, positions: int, batch: int, itemsize: int) -> str:
        return choose_path(self.geometry, positions, self.kernels, batch, itemsize)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve every sample with its own mixed kernel, along the path for this shape."""
        alpha = self.mixture(self.pool(x))  # (B, K)
        return self.convolve(x, alpha, self.path_for(x))

    def convolve(self, x: torch.Tensor, alpha: torch.Tensor, path: str) -> torch.Tensor:
        """y_b = conv(x_b, sum_i alpha_b,i W_i) + mixed bias, along `path`."""
        dtype = compute_dtype(x)
        x, alpha = x.to(dtype), alpha.to(dtype)
        cells = self.weight.view(self.kernels, -1)  # (K, N): n = K whole-kernel cells
        bias = None if self.bias is None else alpha @ self.bias.to(dtype)  # (B, C_out)
        if path == "reference":
            kernels = (alpha @ cells.to(dtype)).view(-1, *self.weight_shape)  # (B, C_out, C_in/g, k, k)
            return per_sample_conv(x, kernels, bias, self.stride, self.padding, self.dilation, self.groups)
        if path == "grouped":
            out = kw_conv(x, alpha[:, None], cells.to(dtype), self.geometry, path, self.memory)
        else:  # batched and mixed cast the cells a block at a time
            out = kw_conv(x, alpha[:, None], cells, self.geometry, path, self.memory)
        return out if bias is None else out + bias[:, :, None, None]


# ------------------------------------------------------------------------------------------------- the method adapter


class DynamicMethod(Method):
    """The protocol for a dynamic convolution: convert by the layer selection, price from meta-device layers, record
    the mean mixture weights, anneal the temperature if the settings have one. Subclasses set `settings` and define
    `make_layer`, `mixture_module` and, where the method has its own rule, `keep_static`."""

    def keep_static(self, name: str, family: str | None) -> bool:
        """The method's own rule on top of the generic selection (none by default)."""
        return False

    def make_layer(self, conv: nn.Conv2d, settings: Config, device: torch.device | str | None = None) -> DynamicConv:
        """The dynamic layer replacing `conv` (in its dtype, on its device unless `device` is given)."""
        raise NotImplementedError

    def resolve(self, settings: Config | None) -> Config:
        """The given settings, or the defaults."""
        assert self.settings is not None
        return settings if settings is not None else self.settings()

    def selection(self, model: nn.Module) -> Selection:
        """The layers this method makes dynamic (see `select_layers` and `keep_static`)."""
        return select_layers(model, self.keep_static)

    def convert(self, model: nn.Module, settings: Config | None) -> nn.Module:
        """Replace every selected conv by the method's dynamic layer, in place."""
        settings = self.resolve(settings)
        for name in self.selection(model).dynamic:
            model.set_submodule(name, self.make_layer(model.get_submodule(name), settings))
        return model

    def price(self, model: nn.Module, settings: Config | None, positions: Mapping[str, int]) -> Price:
        """Parameters from the layers built on the meta device (nothing allocated); MACs per image = the static
        model's conv and linear layers + each dynamic layer's attention linear layers (in x out) + its mixing
        (K kernels x kernel size)."""
        settings = self.resolve(settings)
        selection = self.selection(model)
        total = sum(p.numel() for p in model.parameters())
        replaced = kernel_params = attention_params = attention = mixing = 0
        layers = []
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
                mixing += mix
            layers.append({"layer": name, "in": conv.in_channels, "out": conv.out_channels,
                           "kernel": list(conv.kernel_size), "groups": conv.groups, "kernels": layer.kernels,
                           "params": own, "attention_params": att})
        conv_macs = static_macs(model, positions)
        other = total - replaced
        return Price(other + kernel_params + attention_params, conv_macs + attention + mixing,
                     {"kernels": kernel_params, "attention": attention_params, "other": other},
                     {"conv": conv_macs, "attention": attention, "mixing": mixing},
                     {"dynamic_layers": layers, "static_layers": list(selection.static)})

    def recorder(self, model: nn.Module) -> MeanRecorder:
        """Mean mixture weights per layer: group 'routing', rows = layers, columns = the K kernels."""
        return MeanRecorder({"routing": [(name, self.mixture_module(layer)) for name, layer in model.named_modules()
                                         if isinstance(layer, DynamicConv)]})

    def mixture_module(self, layer: DynamicConv) -> nn.Module:
        """The submodule whose output is the layer's (B, K) mixture weights."""
        raise NotImplementedError

    def schedule(self, settings: Config | None, temperature: Config, steps_per_epoch: int,
                 total_steps: int) -> Schedule | None:
        """T from `temperature` in the method's own section, for methods that have one; None otherwise."""
        temperature = getattr(self.resolve(settings), "temperature", None)
        if temperature is None:
            return None
        return TemperatureAnnealing(temperature.steps(steps_per_epoch, total_steps), temperature.start, temperature.end)
