"""In-memory datasets: hold val out of the training pool, subset, resize and normalise once, wrap as tensors."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from kwlab.data.augment import TensorDefaults, tensor_augment
from kwlab.data.holdout import holdout, size_or_default, stratified_subset
from kwlab.data.registry import DataSpec, Splits

Images = np.ndarray | torch.Tensor


class LabeledTensors(TensorDataset):
    """TensorDataset of (images N x C x H x W float, labels N int64) yielding (image, int label)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        super().__init__(images, labels)
        self.images, self.targets = images, labels

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.targets[index])


def _to_float(images: Images, scale: float) -> torch.Tensor:
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


def _take(images: Images, index: np.ndarray) -> Images:
    return images[torch.from_numpy(index)] if isinstance(images, torch.Tensor) else images[index]


def build_splits(
    name: str,
    pool: tuple[Images, np.ndarray | torch.Tensor],
    test: tuple[Images, np.ndarray | torch.Tensor],
    num_classes: int,
    spec: DataSpec,
    val_default: float | int,
    augment: TensorDefaults,
    scale: float = 255.0,
) -> Splits:
    """Splits of an in-memory set: val held out of `pool`, train subset, all normalised with the train statistics."""
    (x_pool, y_pool), (x_test, y_test) = pool, test
    y_pool, y_test = np.asarray(y_pool, dtype=np.int64), np.asarray(y_test, dtype=np.int64)
    val_size = size_or_default(spec.val_size, val_default)
    train, val = holdout(y_pool, val_size, spec.split_seed, "data.val_size", f"{name} training")
    if spec.train_size is not None:
        train = train[stratified_subset(y_pool[train], spec.train_size, spec.split_seed, name)]
    parts = {"train": (x_pool, train), "val": (x_pool, val), "test": (x_test, np.arange(len(y_test)))}
    x = {split: _to_float(_take(images, index), scale) for split, (images, index) in parts.items()}
    if spec.image_size is not None:
        x = {split: _resize(images, spec.image_size) for split, images in x.items()}
    y = {"train": y_pool[train], "val": y_pool[val], "test": y_test}
    channels = x["train"].shape[1]
    std, mean = torch.std_mean(x["train"].transpose(0, 1).reshape(channels, -1), dim=1)  # train part only
    std = std.clamp_min(1e-6)
    view = (1, channels, 1, 1)
    sets = {
        split: LabeledTensors(((images - mean.view(view)) / std.view(view)).contiguous(), torch.from_numpy(y[split]))
        for split, images in x.items()
    }
    # NOTE: crops pad with a black pixel's normalised value, (0 - mean) / std, not with 0: the same image
    # torchvision's pad-then-normalise pipeline gives, and the true background of digits and fashion_mnist
    fill = tuple(float(v) for v in -mean / std)
    return Splits(
        train=sets["train"],
        val=sets["val"],
        test=sets["test"],
        num_classes=num_classes,
        in_chans=channels,
        image_size=int(x["train"].shape[-1]),
        name=name,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        augment=tensor_augment(spec.augment, name, augment, fill),
    )
