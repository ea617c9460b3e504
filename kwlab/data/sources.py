"""Datasets that need no files: sklearn's embedded `digits` and the seeded `synthetic` set for tests."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits

from kwlab.data.registry import DataSpec, Splits, register
from kwlab.data.tensors import build_splits, random_state, stratified_split


@register("digits")
def load_digits_splits(spec: DataSpec, seed: int) -> Splits:
    """sklearn's 1797 8x8 digits (values 0..16, 1 channel, 10 classes), seeded stratified val split."""
    bunch = load_digits()
    images, labels = bunch.images.reshape(-1, 1, 8, 8), bunch.target
    train, val = stratified_split(labels, spec.val_size, seed, "digits")
    return build_splits(
        "digits", (images[train], labels[train]), (images[val], labels[val]), 10, spec, seed, scale=16.0
    )


@register("synthetic")
def load_synthetic(spec: DataSpec, seed: int) -> Splits:
    """Seeded Gaussian images of spec.shape around one random prototype per class (learnable), balanced labels."""
    gen = torch.Generator().manual_seed(random_state(seed))
    classes = spec.num_classes or 10
    n_train, n_val = spec.length, max(1, spec.length // 4)
    prototypes = torch.randn(classes, *spec.shape, generator=gen)
    labels = (torch.arange(n_train + n_val) % classes)[torch.randperm(n_train + n_val, generator=gen)]
    images = prototypes[labels] + torch.randn(n_train + n_val, *spec.shape, generator=gen)
    return build_splits(
        "synthetic",
        (images[:n_train], labels[:n_train]),
        (images[n_train:], labels[n_train:]),
        classes,
        spec,
        seed,
        scale=1.0,
    )
