"""`model.init: reference`: initialise a freshly built model the way the KernelWarehouse reference code initialises
its models, instead of timm's way.

The reference's model files (OSVAI/KernelWarehouse models/*.py; KW models, then the static ones) initialise:
- ResNet (kw_resnet.py; resnet.py): static convs Kaiming normal (fan-out, ReLU); norms weight 1, bias 0; the fc
  PyTorch's default in the KW model, N(0, 0.01) with bias 0 in the static one;
- MobileNetV2 (kw_mobilenetv2.py, kw1d2x_mobilenetv2.py; mobilenetv2.py): static convs Kaiming normal (fan-out,
  PyTorch's fan: not divided by the groups), bias 0; norms weight 1, bias 0; linears N(0, 0.01), bias 0;
- ConvNeXt (kw_convnext.py; convnext.py): convs and linears truncated normal (std 0.02), bias 0; norms weight 1,
  bias 0; layer scale 1e-6 (timm's default too);
and every KW layer's own slice of its warehouse gets Kaiming normal (fan-out) over the slice taken together
(`Warehouse.init_slice`), its bias 0; the attention is built with the reference's init already (KWAttention).

Where timm departs (what `init: timm` keeps): ResNet's `zero_init_last` zeroes the last BN weight of every block;
MobileNetV2's convs divide the fan-out by the groups (sqrt(C) times the reference's std on a C-channel depthwise
conv, 31x at 960) and its classifier is uniform in +-1/sqrt(C_out); ConvNeXt agrees with the reference. Models of
other families keep timm's initialisation except for their KW layers.
"""

from __future__ import annotations

import torch
from torch import nn

from kwlab.models.families import family_of

NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)
CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@torch.no_grad()
def init_like_reference(model: nn.Module, *, kernel_warehouse: bool) -> nn.Module:
    """Initialise the torch layers of a freshly built model like the reference's model files (see the module doc);
    call it before a method converts the model. `kernel_warehouse`: the model is about to become a KW model (the
    reference's KW model files decide; else its static ones, which ODConv's official code follows too)."""
    family = family_of(model)
    if family not in ("resnet", "mobilenetv2", "convnext"):
        # NOTE: models without a reference counterpart (ViT, ...) keep timm's init; only their KW layers follow
        # the reference (reset_dynamic_like_reference)
        return model
    for module in model.modules():
        if isinstance(module, NORMS):
            if getattr(module, "weight", None) is not None:
                nn.init.ones_(module.weight)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, CONVS + (nn.Linear,)):
            _init_layer(module, family, kernel_warehouse=kernel_warehouse)
    return model


def _init_layer(module: nn.Module, family: str, *, kernel_warehouse: bool) -> None:
    """One static conv or linear layer under `family`'s rule."""
    if family == "convnext":
        nn.init.trunc_normal_(module.weight, std=0.02)  # timm's trunc_normal_ cuts at +-2 (absolute), as torch's
    elif isinstance(module, nn.Linear):
        if family == "resnet" and kernel_warehouse:
            module.reset_parameters()  # kw_resnet.py leaves its fc at PyTorch's default
            return
        nn.init.normal_(module.weight, 0.0, 0.01)
    else:
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if module.bias is not None:
        nn.init.zeros_(module.bias)


@torch.no_grad()
def reset_dynamic_like_reference(model: nn.Module) -> int:
    """Give every dynamic layer of a converted model its reference initialisation (layers that define
    `reset_like_reference`, e.g. KW layers: own warehouse slice and bias); returns how many were reset."""
    layers = [m for m in model.modules() if hasattr(m, "reset_like_reference")]
    for layer in layers:
        layer.reset_like_reference()
    return len(layers)
