"""In-memory datasets: seeded stratified subsets and splits, resize and normalise once, wrap as tensors."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from torch.utils.data import TensorDataset

from kwlab.data.registry import DataSpec, Splits
from kwlab.errors import KWLabError


class LabeledTensors(TensorDataset):
    """TensorDataset of (images N x C x H x W float, labels N int64) yielding (image, int label)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        super().__init__(images, labels)
        self.images, self.targets = images, labels

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.targets[index])


def random_state(seed: int) -> int:
    """Map any integer seed to the range numpy/sklearn accept."""
    return seed % 2**32


def stratified_split(labels: np.ndarray, val_size: float | int, seed: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified (train, val) index split; sorted so the order of the source is kept."""
    try:
        train, val = train_test_split(
            np.arange(len(labels)), test_size=val_size, stratify=labels, random_state=random_state(seed)
        )
    except ValueError as err:
        raise KWLabError(f"data.val_size: {val_size!r} cannot split the {len(labels)} {name} images ({err})") from None
    return np.sort(train), np.sort(val)


def stratified_subset(labels: np.ndarray, size: int, seed: int, name: str) -> np.ndarray:
    """Seeded stratified subset of `size` indices (all of them when size == len)."""
    if size > len(labels):
        raise KWLabError(f"data.train_size: {size} exceeds the {len(labels)} training images of {name}")
    if size == len(labels):
        return np.arange(len(labels))
    try:
        keep, _ = train_test_split(
            np.arange(len(labels)), train_size=size, stratify=labels, random_state=random_state(seed)
        )
    except ValueError as err:
        raise KWLabError(f"data.train_size: {size} cannot be a stratified subset of {name} ({err})") from None
    return np.sort(keep)


def _to_float(images: np.ndarray | torch.Tensor, scale: float) -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        return images.float() / scale
    return torch.from_numpy(np.array(images, dtype=np.float32)) / scale  # np.array copies: sources may be read-only


def _resize(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    parts = [
        F.interpolate(images[i : i + chunk], size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        for i in range(0, len(images), chunk)
    ]
    return torch.cat(parts) if parts else images.new_zeros((0, images.shape[1], size, size))


def build_splits(
    name: str,
    train: tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor],
    val: tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor],
    num_classes: int,
    spec: DataSpec,
    seed: int,
    scale: float = 255.0,
) -> Splits:
    """Subset train (spec.train_size), scale to [0, 1], resize, normalise per channel with train mean/std."""
    (x_train, y_train), (x_val, y_val) = train, val
    y_train, y_val = np.asarray(y_train, dtype=np.int64), np.asarray(y_val, dtype=np.int64)
    if spec.train_size is not None:
        keep = stratified_subset(y_train, spec.train_size, seed, name)
        x_train = x_train[torch.from_numpy(keep)] if isinstance(x_train, torch.Tensor) else x_train[keep]
        y_train = y_train[keep]
    xt, xv = _to_float(x_train, scale), _to_float(x_val, scale)
    if spec.image_size is not None:
        xt, xv = _resize(xt, spec.image_size), _resize(xv, spec.image_size)
    channels = xt.shape[1]
    std, mean = torch.std_mean(xt.transpose(0, 1).reshape(channels, -1), dim=1)
    std = std.clamp_min(1e-6)
    view = (1, channels, 1, 1)
    xt = (xt - mean.view(view)) / std.view(view)
    xv = (xv - mean.view(view)) / std.view(view)
    return Splits(
        train=LabeledTensors(xt.contiguous(), torch.from_numpy(y_train)),
        val=LabeledTensors(xv.contiguous(), torch.from_numpy(y_val)),
        num_classes=num_classes,
        in_chans=channels,
        image_size=int(xt.shape[-1]),
        name=name,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
    )
