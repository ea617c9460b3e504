"""Which model family a network belongs to: the families the KernelWarehouse reference released models of (ResNet,
MobileNetV2, ConvNeXt), whose layouts, layer selections and initialisations kwlab reproduces."""

from __future__ import annotations

from torch import nn


def family_of(model: nn.Module) -> str | None:
    """'resnet', 'mobilenetv2' or 'convnext' (a model's `kw_layout` attribute, else timm's class), or None."""
    declared = getattr(model, "kw_layout", None)
    if declared:
        return declared
    from timm.models import ConvNeXt, EfficientNet, ResNet

    architecture = str(getattr(model, "pretrained_cfg", {}).get("architecture", ""))
    if isinstance(model, ResNet):
        return "resnet"
    if isinstance(model, ConvNeXt):
        return "convnext"
    if isinstance(model, EfficientNet) and architecture.startswith("mobilenetv2"):
        return "mobilenetv2"
    return None
