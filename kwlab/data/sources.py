"""Datasets that need no files: sklearn's embedded `digits` and the seeded `synthetic` set for tests."""

from __future__ import annotations

import torch

from kwlab.data.augment import TensorDefaults
from kwlab.data.holdout import holdout, random_state, refuse_test_size, size_or_default
from kwlab.data.registry import DataSpec, Splits, register
from kwlab.data.tensors import build_splits

DIGITS_TEST_SIZE = 0.2  # of all 1797 images: 360
DIGITS_VAL_SIZE = 0.2  # of the remaining 1437: 288, leaving 1149 to train
# NOTE: digits are never flipped (a mirrored 2, 3, 4, 5, 7 or 9 is no digit), and not cropped by default either: the
# 8x8 bitmaps are scaled to the full height (every image has ink in rows 0 and 7), so even a 1-pixel shift (1/8 of
# the image) cuts a stroke off, a distortion no val or test image shows
DIGITS_AUGMENT = TensorDefaults(crop_padding=0, flip=False, mirror_symmetric=False)
SYNTHETIC_VAL_SIZE = 0.2
SYNTHETIC_AUGMENT = TensorDefaults(crop_padding=0, flip=False)  # class prototypes are fixed pixel patterns


@register("digits")
def load_digits_splits(spec: DataSpec, seed: int) -> Splits:
    """sklearn's 1797 8x8 digits (0..16, 1 channel, 10 classes) in a fixed three-way split: 1149 / 288 / 360."""
    from sklearn.datasets import load_digits  # sklearn is imported when digits are read

    bunch = load_digits()
    images, labels = bunch.images.reshape(-1, 1, 8, 8), bunch.target
    test_size = size_or_default(spec.test_size, DIGITS_TEST_SIZE)
    pool, test = holdout(labels, test_size, spec.split_seed, "data.test_size", "digits")
    return build_splits(
        "digits",
        (images[pool], labels[pool]),
        (images[test], labels[test]),
        10,
        spec,
        val_default=DIGITS_VAL_SIZE,
        augment=DIGITS_AUGMENT,
        scale=16.0,
    )


@register("synthetic")
def load_synthetic(spec: DataSpec, seed: int) -> Splits:
    """Gaussian images around one prototype per class (learnable): `length` train + val, length // 4 test."""
    refuse_test_size(spec, "synthetic", "length // 4 generated images")
    gen = torch.Generator().manual_seed(random_state(spec.split_seed))
    classes = spec.num_classes or 10
    n_pool, n_test = spec.length, max(1, spec.length // 4)
    prototypes = torch.randn(classes, *spec.shape, generator=gen)
    labels = (torch.arange(n_pool + n_test) % classes)[torch.randperm(n_pool + n_test, generator=gen)]
    images = prototypes[labels] + torch.randn(n_pool + n_test, *spec.shape, generator=gen)
    return build_splits(
        "synthetic",
        (images[:n_pool], labels[:n_pool]),
        (images[n_pool:], labels[n_pool:]),
        classes,
        spec,
        val_default=SYNTHETIC_VAL_SIZE,
        augment=SYNTHETIC_AUGMENT,
        scale=1.0,
    )
