"""CIFAR-style ResNets (He et al. 2016, Sec. 4.2) registered with timm, plus the helpers every kwlab small model shares.

The CIFAR variant keeps full resolution in the stem (3x3 conv, stride 1, no max-pool) and runs three stages of
BasicBlocks at widths 16/32/64 with strides 1/2/2, so depth = 6n + 2 for n blocks per stage. Shortcuts that change
shape are 1x1-conv + BN projections (the paper's option B). Module names mirror timm's ``resnet`` because the KW
converter matches on them: ``conv1``, ``bn1``, ``act1``, ``layer1..3``, ``global_pool``, ``fc``.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from kwlab.errors import KWLabError

__all__ = [
    "BasicBlock",
    "CifarResNet",
    "create_small_model",
    "init_small_model",
    "small_model_cfg",
]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def small_model_cfg(**overrides: Any) -> dict[str, Any]:
    """timm pretrained_cfg for a kwlab small model: 32x32 CIFAR-10 inputs, 10 classes and no weights to download."""
    return {
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": None,
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": CIFAR10_MEAN,
        "std": CIFAR10_STD,
        **overrides,
    }


def create_small_model(
    model_cls: type[nn.Module], variant: str, pretrained: bool, feature_cfg: dict[str, Any], **kwargs: Any
) -> nn.Module:
    """Build ``variant`` through timm's ``build_model_with_cfg`` (so ``features_only`` works), honouring timm's
    ``device``/``dtype`` options; raises KWLabError for ``pretrained=True`` since no weights exist."""
    if pretrained:
        raise KWLabError(f"{variant}: no pretrained weights exist for kwlab's small models; use pretrained=False")
    device = kwargs.pop("device", None)
    dtype = kwargs.pop("dtype", None)
    model = build_model_with_cfg(model_cls, variant, pretrained=False, feature_cfg=feature_cfg, **kwargs)
    return model.to(device=device, dtype=dtype)


def init_small_model(model: nn.Module, unused_kwargs: dict[str, Any]) -> None:
    """Kaiming-normal (fan_out, ReLU) init of every conv (He et al. 2015); BN keeps weight 1 / bias 0, with no
    zero-init of the last BN in a block, and Linear keeps PyTorch's default. Warns about ignored constructor options."""
    if unused_kwargs:
        warnings.warn(
            f"{type(model).__name__} ignores unsupported options {sorted(unused_kwargs)}", UserWarning, stacklevel=3
        )
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


class SmallClassifier(nn.Module):
    """timm's classifier interface shared by kwlab's small models: pool, dropout, then the `classifier_name` layer."""

    classifier_name: ClassVar[str]  # attribute holding the classifier: "fc", "classifier"

    def __init__(self, num_classes: int, in_chans: int, width: float, drop_rate: float) -> None:
        """Check the width multiplier and keep timm's standard attributes."""
        super().__init__()
        if width <= 0:
            raise KWLabError(f"width: {width!r} must be positive")
        self.num_classes, self.in_chans, self.drop_rate = num_classes, in_chans, drop_rate

    def get_classifier(self) -> nn.Module:
        """The final classifier layer."""
        return getattr(self, self.classifier_name)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a freshly initialised one for ``num_classes`` (0 gives pooled features)."""
        self.num_classes = num_classes
        setattr(self, self.classifier_name, nn.Linear(self.num_features, num_classes) if num_classes > 0
                else nn.Identity())

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The unpooled final feature map."""
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, dropout, then the classifier unless ``pre_logits``."""
        x = torch.flatten(self.global_pool(x), 1)
        x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.get_classifier()(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of images."""
        return self.forward_head(self.forward_features(x))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut, ReLU after the sum (He et al. 2016, Fig. 2 left)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, drop_path: float = 0.0) -> None:
        """Block mapping ``in_chs`` to ``out_chs`` at ``stride``; a 1x1-conv + BN projection if the shape changes;
        ``drop_path``: probability of dropping the residual branch per sample in training (stochastic depth)."""
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_chs, out_chs, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(
                nn.Conv2d(in_chs, out_chs, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_chs),
            )
            if stride != 1 or in_chs != out_chs
            else None
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual output ``relu(F(x) + shortcut(x))``."""
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        return self.act2(self.drop_path(x) + shortcut)


class CifarResNet(SmallClassifier):
    """ResNet-(6n+2) for small images: stride-1 3x3 stem, stages of n BasicBlocks at (16, 32, 64) x width."""

    kw_layout: ClassVar[str] = "resnet"
    classifier_name: ClassVar[str] = "fc"

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        width: float = 1.0,
        drop_rate: float = 0.0,
        depth: int = 20,
        drop_path_rate: float = 0.0,
        **kwargs: Any,
    ) -> None:
        """Build the net: ``depth`` must be 6n + 2 and stage widths are ``max(8, int(c * width))`` channels;
        ``drop_path_rate``: stochastic depth rising linearly from 0 at the first block to it at the last (timm's
        ResNet rule); other timm options are accepted but ignored with a warning: this net has no such layers."""
        super().__init__(num_classes, in_chans, width, drop_rate)
        if depth < 8 or (depth - 2) % 6:
            raise KWLabError(f"depth: {depth!r} is not of the form 6n + 2 with n >= 1")
        blocks_per_stage = (depth - 2) // 6
        total = 3 * blocks_per_stage
        rates = iter([drop_path_rate * index / max(total - 1, 1) for index in range(total)])
        widths = [max(8, int(c * width)) for c in (16, 32, 64)]

        self.conv1 = nn.Conv2d(in_chans, widths[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act1 = nn.ReLU(inplace=True)
        self.feature_info: list[dict[str, Any]] = []
        in_chs, reduction = widths[0], 1
        for index, (out_chs, stride) in enumerate(zip(widths, (1, 2, 2)), start=1):
            blocks = [BasicBlock(in_chs, out_chs, stride, next(rates))]
            blocks += [BasicBlock(out_chs, out_chs, 1, next(rates)) for _ in range(blocks_per_stage - 1)]
            self.add_module(f"layer{index}", nn.Sequential(*blocks))
            in_chs, reduction = out_chs, reduction * stride
            self.feature_info.append({"num_chs": out_chs, "reduction": reduction, "module": f"layer{index}"})
        self.num_features = in_chs
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        init_small_model(self, kwargs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled ``layer3`` feature map, at 1/4 of the input resolution."""
        x = self.act1(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))


default_cfgs = generate_default_cfgs(
    {
        name: small_model_cfg(first_conv="conv1", classifier="fc")
        for name in ("cifar_resnet8", "cifar_resnet20", "cifar_resnet56")
    }
)


def _create_cifar_resnet(variant: str, depth: int, pretrained: bool, **kwargs: Any) -> nn.Module:
    """Shared body of the registered ResNet entry points."""
    return create_small_model(
        CifarResNet, variant, pretrained, feature_cfg={"out_indices": (0, 1, 2)}, depth=depth, **kwargs
    )


@register_model
def cifar_resnet8(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-8 (n=1), about 0.08M parameters at width 1."""
    return _create_cifar_resnet("cifar_resnet8", 8, pretrained, **kwargs)


@register_model
def cifar_resnet20(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-20 (n=3), about 0.27M parameters at width 1."""
    return _create_cifar_resnet("cifar_resnet20", 20, pretrained, **kwargs)


@register_model
def cifar_resnet56(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-56 (n=9), about 0.86M parameters at width 1."""
    return _create_cifar_resnet("cifar_resnet56", 56, pretrained, **kwargs)
