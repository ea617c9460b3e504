"""Per-image transforms of lazily decoded sets (imagefolder): timm's training augmentation and eval resize/crop.

Defaults (each a null field of `data.augment`) follow the plain ImageNet recipe of torchvision's reference, which the
KernelWarehouse repository uses for MobileNetV2: RandomResizedCrop (area 0.08..1, aspect 3/4..4/3) + horizontal flip
for training, resize to size / 0.875 then centre crop for evaluation (256 -> 224), bilinear, no colour jitter,
RandAugment or random erasing. The reference's ResNet/ConvNeXt recipe is auto_augment 'rand-m9-mstd0.5-inc1',
random_erasing 0.25, interpolation bicubic, mixup 0.8, cutmix 1.0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from PIL import Image, ImageOps

from kwlab.data.augment import IN_MEMORY_ONLY, AugmentConfig, refuse_unused

CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
INTERPOLATION = "bilinear"
CROP_PCT = 224 / 256
FLIP = True

Transform = Callable[[object], object]  # PIL image -> (C, H, W) float tensor


def eval_transform(augment: AugmentConfig, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Transform:
    """Resize the shorter side to floor(size / crop_pct), centre crop size x size, to tensor, normalise."""
    from timm.data import create_transform

    return create_transform(
        size,
        is_training=False,
        crop_pct=CROP_PCT if augment.crop_pct is None else augment.crop_pct,
        interpolation=augment.interpolation or INTERPOLATION,
        mean=mean,
        std=std,
    )


def train_transform(augment: AugmentConfig, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Transform:
    """timm's training transform from `data.augment` (the eval transform when augmentation is off)."""
    refuse_unused(augment, IN_MEMORY_ONLY, "imagefolder", "it crops with crop_scale and crop_ratio")
    if not augment.enabled:
        return eval_transform(augment, size, mean, std)
    from timm.data import create_transform

    flip = FLIP if augment.flip is None else augment.flip
    transform = create_transform(
        size,
        is_training=True,
        scale=augment.crop_scale or CROP_SCALE,
        ratio=augment.crop_ratio or CROP_RATIO,
        hflip=0.5 if flip else 0.0,
        color_jitter=augment.color_jitter or None,  # None: no ColorJitter step at all (0 would add a no-op one)
        auto_augment=augment.auto_augment,
        interpolation=augment.interpolation or INTERPOLATION,
        re_prob=augment.random_erasing or 0.0,
        re_mode="pixel",  # per-pixel normal noise, as timm's train.py and the KernelWarehouse reference
        mean=mean,
        std=std,
    )
    for op in _augment_ops(transform):
        if op.name.startswith("Posterize"):
            op.aug_fn = posterize
    return transform


def posterize(image: Image.Image, bits: int, **_: object) -> Image.Image:
    """Keep the `bits` most significant bits of each channel; 0 bits gives a black image, 8 or more the image."""
    # NOTE: timm's RandAugment ('inc1' at high magnitude), AugMix and AutoAugment 'v0' ask for 0 bits, which
    # Pillow < 13 turned black and Pillow 13 refuses with a ValueError mid-epoch; kwlab keeps the black image the
    # reference trained with.
    if bits >= 8:
        return image
    if bits <= 0:
        return Image.new(image.mode, image.size)
    return ImageOps.posterize(image, bits)


def _augment_ops(transform: object) -> Iterator[object]:
    """Every timm AugmentOp of the auto-augment steps (RandAugment/AugMix `ops`, AutoAugment `policy`) in a Compose."""
    for step in getattr(transform, "transforms", ()):
        yield from getattr(step, "ops", ())
        for sub_policy in getattr(step, "policy", ()):
            yield from sub_policy
