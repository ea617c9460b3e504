"""MobileNetV2 (Sandler et al. 2018) adapted to 32x32 inputs and registered with timm.

The seven inverted-residual groups of the paper's Table 2 are kept, but the stem and the 24-channel group run at
stride 1 instead of 2, so a 32x32 input reaches the head at 4x4 (total stride 8, not 32). Module names mirror timm's
``mobilenetv2_100`` because the KW converter matches on them: ``conv_stem``, ``bn1``, ``blocks.<group>.<block>``
(``conv_dw``/``conv_pw`` in group 0, ``conv_pw``/``conv_dw``/``conv_pwl`` after), ``conv_head``, ``bn2``,
``global_pool``, ``classifier``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from timm.layers import BatchNormAct2d, DropPath, make_divisible
from timm.models import generate_default_cfgs, register_model
from torch import nn

from kwlab.errors import KWLabError
from kwlab.models.cifar_resnet import SmallClassifier, create_small_model, init_small_model, small_model_cfg

__all__ = [
    "MOBILENETV2_BLOCK_COUNTS",
    "CifarMobileNetV2",
    "DepthwiseSeparableConv",
    "InvertedResidual",
]

# (expansion t, output channels c, first-block stride s) per group: the paper's Table 2, 24-channel group at stride 1.
_GROUPS: tuple[tuple[int, int, int], ...] = (
    (1, 16, 1),
    (6, 24, 1),
    (6, 32, 2),
    (6, 64, 2),
    (6, 96, 1),
    (6, 160, 2),
    (6, 320, 1),
)
MOBILENETV2_BLOCK_COUNTS: tuple[int, ...] = (1, 2, 3, 4, 3, 3, 1)
"""Blocks per group (the paper's n), for the full-depth net."""


class DepthwiseSeparableConv(nn.Module):
    """Group-0 block without expansion: 3x3 depthwise conv, BN, ReLU6, linear 1x1 projection, BN."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, drop_path: float = 0.0) -> None:
        """Block mapping ``in_chs`` to ``out_chs``; identity skip when ``stride`` is 1 and the channels match, its
        residual branch dropped per sample with probability ``drop_path`` in training."""
        super().__init__()
        self.conv_dw = nn.Conv2d(in_chs, in_chs, kernel_size=3, stride=stride, padding=1, groups=in_chs, bias=False)
        self.bn1 = BatchNormAct2d(in_chs, act_layer=nn.ReLU6)
        self.conv_pw = nn.Conv2d(in_chs, out_chs, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.has_skip = stride == 1 and in_chs == out_chs
        self.drop_path = DropPath(drop_path) if drop_path > 0 and self.has_skip else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Block output, plus the input when ``has_skip``."""
        out = self.bn2(self.conv_pw(self.bn1(self.conv_dw(x))))
        return self.drop_path(out) + x if self.has_skip else out


class InvertedResidual(nn.Module):
    """Inverted residual: 1x1 expansion, BN, ReLU6, 3x3 depthwise conv, BN, ReLU6, linear 1x1 projection, BN."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, expansion: int, drop_path: float = 0.0) -> None:
        """Block expanding ``in_chs`` by ``expansion``; identity skip when ``stride`` is 1 and the channels match,
        its residual branch dropped per sample with probability ``drop_path`` in training."""
        super().__init__()
        mid_chs = in_chs * expansion
        self.conv_pw = nn.Conv2d(in_chs, mid_chs, kernel_size=1, bias=False)
        self.bn1 = BatchNormAct2d(mid_chs, act_layer=nn.ReLU6)
        self.conv_dw = nn.Conv2d(mid_chs, mid_chs, kernel_size=3, stride=stride, padding=1, groups=mid_chs, bias=False)
        self.bn2 = BatchNormAct2d(mid_chs, act_layer=nn.ReLU6)
        self.conv_pwl = nn.Conv2d(mid_chs, out_chs, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)
        self.has_skip = stride == 1 and in_chs == out_chs
        self.drop_path = DropPath(drop_path) if drop_path > 0 and self.has_skip else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Block output, plus the input when ``has_skip``."""
        out = self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))
        out = self.bn3(self.conv_pwl(out))
        return self.drop_path(out) + x if self.has_skip else out


class CifarMobileNetV2(SmallClassifier):
    """MobileNetV2 for small images: stride-1 stem, 7 inverted-residual groups (total stride 8), 1x1 head conv."""

    kw_layout: ClassVar[str] = "mobilenetv2"
    classifier_name: ClassVar[str] = "classifier"

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        width: float = 1.0,
        drop_rate: float = 0.0,
        block_counts: Sequence[int] = MOBILENETV2_BLOCK_COUNTS,
        drop_path_rate: float = 0.0,
        **kwargs: Any,
    ) -> None:
        """Build the net with ``block_counts[i]`` blocks in group i; channels are scaled by ``width`` and made
        divisible by 8, the head has ``1280 * max(1, width)`` channels; ``drop_path_rate``: stochastic depth of
        block i (of N) is rate x i / N, on blocks with a skip (timm's EfficientNet builder rule); other timm options
        are accepted but ignored with a warning: this net has no such layers."""
        super().__init__(num_classes, in_chans, width, drop_rate)
        if len(block_counts) != len(_GROUPS) or min(block_counts) < 1:
            raise KWLabError(f"block_counts: {tuple(block_counts)!r} must be {len(_GROUPS)} counts, each >= 1")

        stem_chs = make_divisible(32 * width)
        self.conv_stem = nn.Conv2d(in_chans, stem_chs, kernel_size=3, padding=1, bias=False)
        self.bn1 = BatchNormAct2d(stem_chs, act_layer=nn.ReLU6)
        self.feature_info: list[dict[str, Any]] = []
        groups: list[nn.Sequential] = []
        in_chs, reduction = stem_chs, 1
        total = sum(block_counts)
        rates = iter([drop_path_rate * index / total for index in range(total)])
        for index, ((expansion, chs, stride), count) in enumerate(zip(_GROUPS, block_counts)):
            out_chs = make_divisible(chs * width)
            blocks: list[nn.Module] = []
            for block_stride in [stride] + [1] * (count - 1):
                if expansion == 1:
                    blocks.append(DepthwiseSeparableConv(in_chs, out_chs, block_stride, next(rates)))
                else:
                    blocks.append(InvertedResidual(in_chs, out_chs, block_stride, expansion, next(rates)))
                in_chs = out_chs
            groups.append(nn.Sequential(*blocks))
            reduction *= stride
            # Like timm, expose the last group at each resolution as a feature level.
            if index + 1 == len(_GROUPS) or _GROUPS[index + 1][2] > 1:
                self.feature_info.append({"num_chs": out_chs, "reduction": reduction, "module": f"blocks.{index}"})
        self.blocks = nn.Sequential(*groups)
        self.num_features = make_divisible(1280 * max(1.0, width))
        self.conv_head = nn.Conv2d(in_chs, self.num_features, kernel_size=1, bias=False)
        self.bn2 = BatchNormAct2d(self.num_features, act_layer=nn.ReLU6)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        init_small_model(self, kwargs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled head-conv feature map, at 1/8 of the input resolution."""
        x = self.blocks(self.bn1(self.conv_stem(x)))
        return self.bn2(self.conv_head(x))


default_cfgs = generate_default_cfgs(
    {
        name: small_model_cfg(first_conv="conv_stem", classifier="classifier")
        for name in ("cifar_mobilenetv2", "cifar_mobilenetv2_tiny")
    }
)


def _create_cifar_mobilenetv2(variant: str, block_counts: Sequence[int], pretrained: bool, **kwargs: Any) -> nn.Module:
    """Shared body of the registered MobileNetV2 entry points."""
    feature_cfg = {"flatten_sequential": True, "out_indices": (0, 1, 2, 3)}
    return create_small_model(
        CifarMobileNetV2, variant, pretrained, feature_cfg=feature_cfg, block_counts=block_counts, **kwargs
    )


@register_model
def cifar_mobilenetv2(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Full-depth MobileNetV2 (n = 1, 2, 3, 4, 3, 3, 1), about 2.2M parameters at width 1."""
    return _create_cifar_mobilenetv2("cifar_mobilenetv2", MOBILENETV2_BLOCK_COUNTS, pretrained, **kwargs)


@register_model
def cifar_mobilenetv2_tiny(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """One block per group (all 7 groups kept): a cheap MobileNetV2 for CPU sweeps."""
    return _create_cifar_mobilenetv2("cifar_mobilenetv2_tiny", (1,) * len(_GROUPS), pretrained, **kwargs)
