"""Layouts: where each replaceable layer of a model sits (stage, role), and which layers stay static.

`reference` layouts reproduce the released KernelWarehouse models (ResNet, MobileNetV2, ConvNeXt) on timm's module
names; `auto` is the generic rule for any other model (see `auto_layout`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from kwlab.methods.selection import input_size, trace


@dataclass(frozen=True)
class Placement:
    """A layer's stage and role; the sharing range l turns these into warehouse membership."""

    stage: str
    role: str
    alone: bool = False  # a warehouse of its own whatever the sharing range (e.g. a classifier made KW)


# candidate layer name -> its placement, or None where the layer stays a static torch layer
Assignment = dict[str, Placement | None]
Layout = Callable[[nn.Module, dict[str, nn.Module]], Assignment]
REFERENCE_LAYOUTS: dict[str, Layout] = {}


def reference_layout(name: str) -> Callable[[Layout], Layout]:
    """Register a reference layout for a model family."""

    def add(fn: Layout) -> Layout:
        REFERENCE_LAYOUTS.setdefault(name, fn)
        return fn

    return add


def _strided(module: nn.Module) -> bool:
    return any(s > 1 for s in getattr(module, "stride", (1,)))


@reference_layout("resnet")
def resnet_layout(model: nn.Module, candidates: dict[str, nn.Module]) -> Assignment:
    """ResNet: stages layer1..layerN; a stage's first block hands its first conv and downsample to the stage before."""
    assignment: Assignment = {}
    for name in candidates:
        match = re.fullmatch(r"layer(\d+)\.(\d+)\.(conv\d|downsample)(\.\d+)?", name)
        if not match:  # stem, classifier
            assignment[name] = None
            continue
        stage, block_index, part = int(match[1]) - 1, int(match[2]), match[3]
        block = model.get_submodule(f"layer{match[1]}.{match[2]}")
        bottleneck = hasattr(block, "conv3")
        if part == "downsample":
            # Its input channels are the previous stage's; a downsample that keeps the resolution stays static.
            downsamples = any(_strided(m) for m in block.modules() if m is not block)
            assignment[name] = Placement(str(stage - 1), "conv1") if downsamples and stage > 0 else None
        elif block_index == 0 and part == "conv1":
            if stage == 0:  # no previous stage: ResNet18-style keeps it, Bottleneck nets leave it static
                assignment[name] = None if bottleneck else Placement("0", "conv1")
            else:
                assignment[name] = Placement(str(stage - 1), "conv1")
        else:
            assignment[name] = Placement(str(stage), part)
    return assignment


# The seven inverted-residual groups of MobileNetV2 map to these stages; the last two merge.
MOBILENETV2_STAGES = (1, 2, 3, 4, 5, 6, 6)


@reference_layout("mobilenetv2")
def mobilenetv2_layout(model: nn.Module, candidates: dict[str, nn.Module]) -> Assignment:
    """MobileNetV2: stem alone; a group's first block joins the stage before when the stage changes; head joins 6."""
    assignment: Assignment = {}
    for name in candidates:
        match = re.fullmatch(r"blocks\.(\d+)\.(\d+)\.(conv_pw|conv_dw|conv_pwl)", name)
        if name == "conv_stem":
            assignment[name] = Placement("0", "stem")
        elif name == "conv_head":
            assignment[name] = Placement(str(MOBILENETV2_STAGES[-1]), "projection")
        elif match and int(match[1]) < len(MOBILENETV2_STAGES):
            group, index, part = int(match[1]), int(match[2]), match[3]
            stage = MOBILENETV2_STAGES[group]
            if index == 0 and group > 0 and stage != MOBILENETV2_STAGES[group - 1]:
                stage -= 1  # hand-over: the whole first block joins the previous stage
            expands = hasattr(model.get_submodule(f"blocks.{group}.{index}"), "conv_pwl")
            role = {"conv_dw": "depthwise", "conv_pwl": "projection"}.get(
                part, "expansion" if expands else "projection"
            )
            assignment[name] = Placement(str(stage), role)
        else:  # classifier
            assignment[name] = None
    return assignment


@reference_layout("convnext")
def convnext_layout(model: nn.Module, candidates: dict[str, nn.Module]) -> Assignment:
    """ConvNeXt: stem and each downsample conv alone; per stage the depthwise convs and the pointwise layers."""
    roles = {"conv_dw": "dwconv", "mlp.fc1": "pwconv1", "mlp.fc2": "pwconv2"}
    assignment: Assignment = {}
    for name in candidates:
        block = re.fullmatch(r"stages\.(\d+)\.blocks\.\d+\.(conv_dw|mlp\.fc1|mlp\.fc2)", name)
        downsample = re.fullmatch(r"stages\.(\d+)\.downsample\.\d+", name)
        if name.startswith("stem."):
            assignment[name] = Placement("stem", "stem")
        elif downsample:
            assignment[name] = Placement(f"downsample{downsample[1]}", "downsample")
        elif block:
            assignment[name] = Placement(block[1], roles[block[2]])
        else:  # head
            assignment[name] = None
    return assignment


def auto_layout(model: nn.Module, candidates: dict[str, nn.Module]) -> Assignment:
    """Generic rule: one traced forward pass (`trace`); a new feature resolution starts a new stage; stem and
    classifier stay.

    A layer's stage is the resolution of its output (tokens for linear layers). Static: the first layer that reads
    the image, the classifier, and layers whose output has a single position (squeeze-excite gates, MLP heads on
    pooled features: their few channels would shrink a shared warehouse's cells to a handful of channels). A
    layer's role is its name after the first numeric index ('blocks.3.attn.qkv' -> 'attn.qkv').
    """
    executed = []
    for name, shape in trace(model, candidates, input_size(model)):
        positions = tuple(shape[1:-1]) if isinstance(candidates[name], nn.Linear) else tuple(shape[2:])
        executed.append((name, positions if positions and max(positions) > 1 else None))

    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    assignment: Assignment = dict.fromkeys(candidates)
    levels: list[tuple[int, ...]] = []
    for position, (name, positions) in enumerate(executed):
        module = candidates[name]
        reads_image = position == 0 and getattr(module, "in_channels", None) == input_size(model)[0]
        if positions is None or assignment[name] is not None or module is classifier or reads_image:
            continue  # static, or a layer called twice keeps its first placement
        if positions not in levels:
            levels.append(positions)
        parts = name.split(".")
        first_index = next((i for i, p in enumerate(parts) if p.isdigit()), None)
        role = ".".join(p for p in parts[first_index + 1 :] if not p.isdigit()) if first_index is not None else name
        assignment[name] = Placement(str(levels.index(positions)), role or name)
    return assignment
